import { existsSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import Database from 'better-sqlite3';

import type { Clock } from '../bot/clock.ts';
import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { integrityProblem, verifyBackup } from './backup.ts';
import { describeCommandResult, runCommand } from './command.ts';
import { commandEnv } from './command-env.ts';
import { replaceDatabase } from './restore.ts';
import type { ActionOutcome } from './types.ts';

/** Set for the migrate and smoke commands: the staging copy they must use. */
export const STAGING_PATH_VARIABLE = 'RESTORE_TEST_DATABASE_PATH';
/** Replaced by the staging path in command arguments and `env` values. */
export const STAGING_PATH_PLACEHOLDER = '{stagingPath}';

/** Column names tried, in order, for the time of the newest row of `countTable`. */
const TIME_COLUMNS = ['created_at', 'created', 'date_joined', 'timestamp', 'updated_at', 'date'];

export interface CommandReport {
  exitCode: number | null;
  durationMs: number;
  passed: boolean;
  /** "exited with status 1", "timed out after 600000 ms and was stopped". */
  result: string;
  lastLines: string[];
}

export interface RestoreTestReport {
  passed: boolean;
  backupPath: string;
  stagingPath: string;
  startedAt: number;
  durationMs: number;
  integrity: 'ok' | string;
  users?: number;
  activeSuperusers?: number;
  table?: { name: string; rows: number; newestIds: number[]; newestAt?: string };
  migrate?: CommandReport;
  smoke?: CommandReport;
  /** Reasons the test failed. */
  problems: string[];
  /** Findings that do not fail the test, such as no active superuser. */
  warnings: string[];
}

export interface RestoreTestOutcome extends ActionOutcome {
  report: RestoreTestReport;
}

interface RestoreTestOptions {
  backupPath: string;
  stagingPath: string;
  productionPath: string;
  /** Table whose row count and newest rows are reported, for example `blog_post`. */
  countTable?: string;
  migrateArgv?: string[];
  smokeArgv?: string[];
  expectedSha256?: string;
  /** Working folder of the commands, usually the Django project. */
  cwd?: string;
  /** Extra variables for the commands; `{stagingPath}` in values is replaced. */
  env?: Record<string, string>;
  commandTimeoutMs?: number;
  clock: Clock;
  logger: Logger;
}

/**
 * Restores a backup into a staging copy and checks it as the monthly
 * restore test requires: integrity, Django user counts, the newest rows of
 * `countTable`, migrations and a smoke command against the copy, and the
 * time it all took. Rejects a staging path that is the production
 * database. A failed check does not throw: the report says what failed.
 */
export async function runRestoreTest(options: RestoreTestOptions): Promise<RestoreTestOutcome> {
  const stagingPath = resolve(options.stagingPath);
  rejectUnsafeStaging(stagingPath, resolve(options.productionPath), resolve(options.backupPath));
  if (options.countTable !== undefined) checkIdentifier(options.countTable);

  const startedAt = options.clock.now();
  const report: RestoreTestReport = {
    passed: false,
    backupPath: resolve(options.backupPath),
    stagingPath,
    startedAt,
    durationMs: 0,
    integrity: 'not checked',
    problems: [],
    warnings: [],
  };

  const productionBefore = fileState(options.productionPath);
  await restoreAndInspect(options, report);
  if (report.problems.length === 0) await runCommands(options, report);
  if (fileState(options.productionPath) !== productionBefore) {
    report.problems.push(
      `the production database ${options.productionPath} changed during the test; ` +
        `make the commands use ${STAGING_PATH_VARIABLE}`,
    );
  }

  report.durationMs = options.clock.now() - startedAt;
  report.passed = report.problems.length === 0;
  options.logger.info(
    { passed: report.passed, stagingPath, durationMs: report.durationMs, problems: report.problems.length },
    'restore test finished',
  );
  return { summary: summarize(report), facts: reportFacts(report), report };
}

function rejectUnsafeStaging(stagingPath: string, productionPath: string, backupPath: string): void {
  for (const [other, label] of [
    [productionPath, 'the production database'],
    [backupPath, 'the backup itself'],
  ] as const) {
    if (sameFile(stagingPath, other)) {
      throw new ActionError(
        'restore_test_unsafe_target',
        `restore test rejected: staging path ${stagingPath} is ${label} (${other}); ` +
          'set the staging path to a separate file',
        { stagingPath, productionPath },
      );
    }
  }
}

/** True when both paths name one file, through symlinks and hard links too. */
function sameFile(a: string, b: string): boolean {
  if (canonicalPath(a) === canonicalPath(b)) return true;
  if (!existsSync(a) || !existsSync(b)) return false;
  const first = statSync(a);
  const second = statSync(b);
  return first.dev === second.dev && first.ino === second.ino;
}

function canonicalPath(path: string): string {
  if (existsSync(path)) return realpathSync(path);
  const folder = dirname(path);
  return existsSync(folder) ? join(realpathSync(folder), basename(path)) : path;
}

function checkIdentifier(name: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new ActionError(
      'invalid_input',
      `table name "${name}" is invalid; use a table name such as blog_post (letters, digits, _)`,
      { countTable: name },
    );
  }
}

async function restoreAndInspect(options: RestoreTestOptions, report: RestoreTestReport): Promise<void> {
  const verification = await verifyBackup(options.backupPath, options.expectedSha256);
  if (!verification.ok) {
    report.integrity = verification.reason ?? 'failed';
    report.problems.push(`backup failed verification: ${verification.reason}`);
    return;
  }

  try {
    await replaceDatabase({
      backupPath: options.backupPath,
      databasePath: report.stagingPath,
      expectedSha256: options.expectedSha256,
      logger: options.logger,
    });
  } catch (error) {
    report.problems.push(`restore into staging failed: ${(error as Error).message}`);
    return;
  }

  const problem = integrityProblem(report.stagingPath);
  report.integrity = problem ?? 'ok';
  if (problem) {
    report.problems.push(`staging copy failed integrity_check: ${problem}`);
    return;
  }
  countRows(report, options.countTable);
}

function countRows(report: RestoreTestReport, countTable: string | undefined): void {
  const db = new Database(report.stagingPath, { readonly: true, fileMustExist: true });
  try {
    const tables = new Set(
      (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as Array<{ name: string }>).map(
        (row) => row.name,
      ),
    );
    if (tables.has('auth_user')) {
      report.users = count(db, 'SELECT COUNT(*) AS n FROM auth_user');
      report.activeSuperusers = count(
        db,
        'SELECT COUNT(*) AS n FROM auth_user WHERE is_superuser = 1 AND is_active = 1',
      );
      if (report.activeSuperusers === 0) report.warnings.push('no active superuser: nobody can sign in to the admin');
    } else {
      report.problems.push('table auth_user not found: this is not a Django database');
    }

    if (countTable === undefined) return;
    if (!tables.has(countTable)) {
      report.problems.push(`table ${countTable} not found in the restored database`);
      return;
    }
    report.table = describeTable(db, countTable);
  } finally {
    db.close();
  }
}

function count(db: Database.Database, sql: string): number {
  return (db.prepare(sql).get() as { n: number }).n;
}

function describeTable(db: Database.Database, table: string): NonNullable<RestoreTestReport['table']> {
  // The name was checked against sqlite_master and the identifier pattern, so quoting is safe.
  const quoted = `"${table}"`;
  const rows = count(db, `SELECT COUNT(*) AS n FROM ${quoted}`);
  const columns = (db.prepare(`PRAGMA table_info(${quoted})`).all() as Array<{ name: string }>).map(
    (column) => column.name,
  );

  let newestIds: number[] = [];
  try {
    newestIds = (db.prepare(`SELECT rowid AS id FROM ${quoted} ORDER BY rowid DESC LIMIT 3`).all() as Array<{
      id: number;
    }>).map((row) => row.id);
  } catch {
    // A WITHOUT ROWID table has no rowid, so only the count is reported.
  }

  const timeColumn = TIME_COLUMNS.find((name) => columns.includes(name));
  const newestAt = timeColumn
    ? ((db.prepare(`SELECT MAX("${timeColumn}") AS at FROM ${quoted}`).get() as { at: unknown }).at ?? undefined)
    : undefined;
  return { name: table, rows, newestIds, newestAt: newestAt === undefined ? undefined : String(newestAt) };
}

async function runCommands(options: RestoreTestOptions, report: RestoreTestReport): Promise<void> {
  const substitute = (value: string) => value.split(STAGING_PATH_PLACEHOLDER).join(report.stagingPath);
  const env: Record<string, string> = { [STAGING_PATH_VARIABLE]: report.stagingPath };
  for (const [name, value] of Object.entries(options.env ?? {})) env[name] = substitute(value);

  for (const [key, argv, label] of [
    ['migrate', options.migrateArgv, 'migrations'],
    ['smoke', options.smokeArgv, 'smoke command'],
  ] as const) {
    if (!argv || argv.length === 0) {
      report.warnings.push(`${label} not configured; skipped`);
      continue;
    }
    const timeoutMs = options.commandTimeoutMs ?? 600_000;
    const result = await runCommand(argv.map(substitute), {
      timeoutMs,
      logger: options.logger,
      cwd: options.cwd,
      env: commandEnv(env),
    });
    const passed = result.exitCode === 0;
    report[key] = {
      exitCode: result.exitCode,
      durationMs: result.durationMs,
      passed,
      result: describeCommandResult(result, timeoutMs),
      lastLines: result.output.split('\n').filter((line) => line.trim() !== '').slice(-5),
    };
    if (!passed) {
      report.problems.push(`${label} ${describeCommandResult(result, timeoutMs)}`);
      return;
    }
  }
}

/** Size and modification time, to notice a command that wrote to production. */
function fileState(path: string): string {
  try {
    const stats = statSync(path);
    return `${stats.size}:${stats.mtimeMs}`;
  } catch {
    return 'missing';
  }
}

function summarize(report: RestoreTestReport): string {
  const seconds = (report.durationMs / 1000).toFixed(1);
  if (report.passed) return `Restore test passed in ${seconds} s`;
  return `Restore test failed in ${seconds} s: ${report.problems[0]}`;
}

function reportFacts(report: RestoreTestReport): Array<[string, string]> {
  const facts: Array<[string, string]> = [
    ['Backup', basename(report.backupPath)],
    ['Integrity', report.integrity],
  ];
  if (report.users !== undefined) facts.push(['Users', String(report.users)]);
  if (report.activeSuperusers !== undefined) facts.push(['Active superusers', String(report.activeSuperusers)]);
  if (report.table) {
    const newest = report.table.newestAt ? `, newest ${report.table.newestAt}` : '';
    facts.push([`Rows in ${report.table.name}`, `${report.table.rows}${newest}`]);
  }
  if (report.migrate) facts.push(['Migrations', report.migrate.result]);
  if (report.smoke) facts.push(['Smoke command', report.smoke.result]);
  facts.push(['Time taken', `${(report.durationMs / 1000).toFixed(1)} s`]);
  for (const warning of report.warnings) facts.push(['Warning', warning]);
  for (const problem of report.problems.slice(1)) facts.push(['Problem', problem]);
  return facts;
}
