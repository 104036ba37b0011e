import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { parse as parseYaml, YAMLParseError } from 'yaml';

import { runbookSchema, type Runbook } from './schema.ts';

export const BUILTIN_RUNBOOKS_DIR = fileURLToPath(new URL('./builtin/', import.meta.url));

/** Words of `/incident` that are commands, so no runbook may use them as an id or alias. */
export const RESERVED_WORDS = ['help', 'list', 'schedules', 'rotated'] as const;

export class RunbookLoadError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid runbooks:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'RunbookLoadError';
  }
}

export interface RunbookCatalog {
  /** Runbooks in display order, each once. */
  all: Runbook[];
  /** Finds a runbook by id or alias. */
  find(word: string): Runbook | undefined;
}

/**
 * Loads the built-in runbooks, then the files in `extraDir`, whose runbooks
 * add to or replace built-in ones with the same id. Throws RunbookLoadError
 * naming each file, field and problem.
 */
export function loadRunbooks(extraDir?: string): RunbookCatalog {
  const problems: string[] = [];
  const byId = new Map<string, Runbook>();
  for (const dir of [BUILTIN_RUNBOOKS_DIR, extraDir].filter((d): d is string => Boolean(d))) {
    for (const file of listYamlFiles(dir, problems)) {
      const runbook = parseRunbookFile(file, problems);
      if (runbook) byId.set(runbook.id, runbook);
    }
  }
  const all = [...byId.values()];
  const byWord = indexWords(all, problems);
  if (problems.length > 0) throw new RunbookLoadError(problems);
  return { all, find: (word) => byWord.get(word.toLowerCase()) };
}

function listYamlFiles(dir: string, problems: string[]): string[] {
  try {
    return readdirSync(dir)
      .filter((name) => /\.ya?ml$/.test(name))
      .sort()
      .map((name) => join(dir, name));
  } catch (error) {
    problems.push(`${dir}: cannot read the runbooks folder (${(error as NodeJS.ErrnoException).code ?? error}); check RUNBOOKS_DIR`);
    return [];
  }
}

/** Parses and validates one runbook file, adding problems that name the file and field. */
export function parseRunbookFile(file: string, problems: string[]): Runbook | undefined {
  let document: unknown;
  try {
    document = parseYaml(readFileSync(file, 'utf8'));
  } catch (error) {
    const detail = error instanceof YAMLParseError ? error.message.split('\n')[0] : String(error);
    problems.push(`${file}: not valid YAML: ${detail}`);
    return undefined;
  }
  const parsed = runbookSchema.safeParse(document);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const field = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
      problems.push(`${file}: ${field}: ${issue.message}`);
    }
    return undefined;
  }
  return parsed.data;
}

function indexWords(runbooks: Runbook[], problems: string[]): Map<string, Runbook> {
  const byWord = new Map<string, Runbook>();
  for (const runbook of runbooks) {
    for (const word of [runbook.id, ...runbook.aliases]) {
      if ((RESERVED_WORDS as readonly string[]).includes(word)) {
        problems.push(`runbook ${runbook.id}: "${word}" is a command of /incident and cannot name a runbook`);
        continue;
      }
      const other = byWord.get(word);
      if (other && other.id !== runbook.id) {
        problems.push(`runbook ${runbook.id}: "${word}" already names runbook ${other.id}; choose another alias`);
        continue;
      }
      byWord.set(word, runbook);
    }
  }
  return byWord;
}

