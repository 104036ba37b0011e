import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { configTable } from '../scripts/config-table.ts';

const readme = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8');
const packageJson = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { scripts: Record<string, string> };

describe('README', () => {
  it('configuration table matches the schema', () => {
    const table = readme.split('<!-- config-table:start -->')[1]?.split('<!-- config-table:end -->')[0]?.trim();
    expect(table).toBe(configTable());
  });

  it('shows the start and test commands that package.json defines', () => {
    expect(readme).toContain('npm start ');
    expect(readme).toContain('npm test ');
    expect(packageJson.scripts.start).toBeDefined();
    expect(packageJson.scripts.test).toBeDefined();
  });

  it('CI runs the README test command', () => {
    const ci = readFileSync(fileURLToPath(new URL('../.ci/run', import.meta.url)), 'utf8');
    expect(ci).toMatch(/^npm test\b/m);
  });
});
