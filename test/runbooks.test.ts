import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { loadRunbooks, RunbookLoadError } from '../src/runbooks/loader.ts';
import { tempDir } from './helpers/engine.ts';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (error) {
    if (error instanceof RunbookLoadError) return error.problems;
    throw error;
  }
  return [];
}

describe('runbook loader', () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir('runbooks-');
  });
  afterEach(() => dir.remove());

  it('built-in secret-key runbook has seven steps', () => {
    expect(loadRunbooks().find('secret-key')!.steps).toHaveLength(7);
  });

  it('built-in sentry-dsn runbook has three steps', () => {
    expect(loadRunbooks().find('sentry-dsn')!.steps).toHaveLength(3);
  });

  it('alias finds its runbook', () => {
    expect(loadRunbooks().find('django-secret-key')!.id).toBe('secret-key');
  });

  it('extra folder overrides a built-in runbook', () => {
    writeFileSync(join(dir.path, 'secret-key.yml'), 'id: secret-key\ntitle: Our own\nseverity: high\nsteps:\n  - id: one\n    title: Only step\n');
    const runbook = loadRunbooks(dir.path).find('secret-key')!;
    expect(runbook.title).toBe('Our own');
    expect(runbook.steps).toHaveLength(1);
  });

  it('extra folder adds a runbook', () => {
    writeFileSync(join(dir.path, 'phishing.yaml'), 'id: phishing\ntitle: Phishing mail\nseverity: medium\nsteps:\n  - id: report\n    title: Report it\n');
    expect(loadRunbooks(dir.path).find('phishing')!.title).toBe('Phishing mail');
  });

  it('broken runbook names the file, field and problem', () => {
    const file = join(dir.path, 'bad.yml');
    writeFileSync(file, 'id: bad\ntitle: Bad\nseverity: urgent\nsteps:\n  - id: one\n    title: One\n    deadline: 15 minutes\n');
    const problems = problemsOf(() => loadRunbooks(dir.path));
    expect(problems.some((problem) => problem.startsWith(`${file}: severity:`))).toBe(true);
    expect(problems.some((problem) => problem.includes('steps.0.deadline') && problem.includes('invalid duration "15 minutes"'))).toBe(true);
  });

  it('invalid YAML is reported with the file', () => {
    const file = join(dir.path, 'broken.yml');
    writeFileSync(file, 'id: [unclosed\n');
    expect(problemsOf(() => loadRunbooks(dir.path))[0]).toContain(`${file}: not valid YAML`);
  });

  it('unknown field is rejected', () => {
    writeFileSync(join(dir.path, 'typo.yml'), 'id: typo\ntitle: Typo\nseverity: low\nstepz: []\nsteps:\n  - id: one\n    title: One\n');
    expect(problemsOf(() => loadRunbooks(dir.path)).some((problem) => problem.includes('stepz'))).toBe(true);
  });

  it('reminder after the deadline is rejected', () => {
    writeFileSync(join(dir.path, 'late.yml'), 'id: late\ntitle: Late\nseverity: low\nsteps:\n  - id: one\n    title: One\n    deadline: 10m\n    reminders: [15m]\n');
    expect(problemsOf(() => loadRunbooks(dir.path)).some((problem) => problem.includes('steps.0.reminders.0'))).toBe(true);
  });

  it('reserved word cannot name a runbook', () => {
    writeFileSync(join(dir.path, 'list.yml'), 'id: list\ntitle: List\nseverity: low\nsteps:\n  - id: one\n    title: One\n');
    expect(problemsOf(() => loadRunbooks(dir.path)).some((problem) => problem.includes('"list" is a command'))).toBe(true);
  });

  it('missing runbooks folder is reported', () => {
    const missing = join(dir.path, 'nope');
    expect(problemsOf(() => loadRunbooks(missing))[0]).toContain(`${missing}: cannot read the runbooks folder`);
  });

  it('duplicate step ids are rejected', () => {
    writeFileSync(join(dir.path, 'dup.yml'), 'id: dup\ntitle: Dup\nseverity: low\nsteps:\n  - id: one\n    title: One\n  - id: one\n    title: Again\n');
    expect(problemsOf(() => loadRunbooks(dir.path)).some((problem) => problem.includes('duplicate step id "one"'))).toBe(true);
  });
});
