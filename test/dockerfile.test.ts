import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

// No Docker engine runs here, so the Dockerfile is checked by parsing it.
const text = readFileSync(fileURLToPath(new URL('../Dockerfile', import.meta.url)), 'utf8');

interface Instruction {
  keyword: string;
  args: string;
}

function instructions(): Instruction[] {
  const joined = text.replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const [keyword, ...rest] = line.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

function stages(): Instruction[][] {
  const result: Instruction[][] = [];
  for (const instruction of instructions()) {
    if (instruction.keyword === 'FROM') result.push([]);
    result.at(-1)?.push(instruction);
  }
  return result;
}

describe('Dockerfile', () => {
  it('has a build stage and a runtime stage', () => {
    expect(stages()).toHaveLength(2);
  });

  it('runtime stage copies from the build stage', () => {
    const runtime = stages()[1];
    expect(runtime.some((step) => step.keyword === 'COPY' && step.args.includes('--from=build'))).toBe(true);
  });

  it('runs as a non-root user', () => {
    const users = stages()[1].filter((step) => step.keyword === 'USER').map((step) => step.args);
    expect(users.at(-1)).toBe('runbook');
  });

  it('keeps the database on a volume', () => {
    const runtime = stages()[1];
    const volume = runtime.find((step) => step.keyword === 'VOLUME')!.args;
    const env = runtime.find((step) => step.keyword === 'ENV')!.args;
    expect(volume).toContain('/data');
    expect(env).toContain('DATABASE_PATH=/data/');
  });

  it('has a health check against /healthz', () => {
    const check = stages()[1].find((step) => step.keyword === 'HEALTHCHECK');
    expect(check?.args).toContain('/healthz');
  });

  it('starts the bot as npm start does', () => {
    const cmd = stages()[1].find((step) => step.keyword === 'CMD')!.args;
    const start = (JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { scripts: { start: string } }).scripts.start;
    expect(JSON.parse(cmd)).toEqual(start.split(' '));
  });

  it('compiles the app in the build stage', () => {
    expect(stages()[0].some((step) => step.keyword === 'RUN' && step.args.includes('node scripts/build.mjs'))).toBe(true);
  });

  it('keeps only production packages', () => {
    expect(stages()[0].some((step) => step.keyword === 'RUN' && step.args.includes('npm prune --omit=dev'))).toBe(true);
  });
});
