import { randomBytes } from 'node:crypto';
import {
  chownSync,
  chmodSync,
  constants,
  copyFileSync,
  existsSync,
  renameSync,
  statSync,
  unlinkSync,
  type Stats,
} from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import type { Clock } from '../bot/clock.ts';
import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { scrubText } from '../bot/redact.ts';
import { backupDatabase, integrityProblem, verifyBackup, type BackupVerification, type DatabaseBackup } from './backup.ts';
import { fsyncDir, fsyncFile, parseBackupFileName, removeQuietly, sha256File } from './backup-files.ts';
import { describeCommandResult, runCommand } from './command.ts';
import { commandEnv } from './command-env.ts';
import { checkHealth, type HealthResult } from './health.ts';
import type { ActionOutcome } from './types.ts';

export { runRestoreTest, type RestoreTestReport, type RestoreTestOutcome } from './restore-test.ts';

// Each step of the restore runbook is its own function, so a responder
// confirms them one at a time: verify, safety backup, stop, replace,
// migrate, start, smoke test.

export interface VerifyOutcome extends ActionOutcome {
  verification: BackupVerification;
}

/**
 * Checks the backup chosen for a restore: checksum (when the record has
 * one) and integrity. With `backupDir`, the file must also be one of the
 * bot's backups in that folder. Throws ActionError `backup_invalid`.
 */
export async function verifyChosenBackup(options: {
  backupPath: string;
  expectedSha256?: string;
  backupDir?: string;
}): Promise<VerifyOutcome> {
  const backupPath = resolve(options.backupPath);
  if (options.backupDir) {
    const inside = relative(resolve(options.backupDir), backupPath);
    const named = parseBackupFileName(basename(backupPath))?.kind === 'database';
    if (inside.startsWith('..') || inside.includes('/') || !named) {
      throw new ActionError(
        'backup_invalid',
        `${backupPath} is not a database backup in ${options.backupDir}; choose one from the list`,
        { backupPath },
      );
    }
  }

  const verification = await verifyBackup(backupPath, options.expectedSha256);
  if (!verification.ok) {
    throw new ActionError(
      'backup_invalid',
      `backup ${backupPath} cannot be restored: ${verification.reason}; choose another backup`,
      { backupPath, reason: verification.reason },
    );
  }
  return {
    summary: `Backup ${basename(backupPath)} passed checksum and integrity checks`,
    facts: [
      ['Size', formatBytes(verification.sizeBytes ?? 0)],
      ['SHA-256', `${verification.sha256?.slice(0, 12)}…`],
    ],
    verification,
  };
}

export interface SafetyBackupOutcome extends ActionOutcome {
  backup: DatabaseBackup;
}

/** Backs up the current database before it is replaced, so the restore can be undone. */
export async function takeSafetyBackup(options: {
  databasePath: string;
  backupDir: string;
  clock: Clock;
  logger?: Logger;
}): Promise<SafetyBackupOutcome> {
  const backup = await backupDatabase(options);
  return {
    summary: `Safety backup ${basename(backup.path)} of the current database written`,
    facts: [
      ['Path', backup.path],
      ['Size', formatBytes(backup.sizeBytes)],
      ['SHA-256', `${backup.sha256.slice(0, 12)}…`],
    ],
    backup,
  };
}

export interface CommandStepOptions {
  logger: Logger;
  cwd?: string;
  /** Variables added to the command's environment (which leaves out the bot's secrets). */
  env?: Record<string, string>;
  timeoutMs?: number;
}

export interface CommandOutcome extends ActionOutcome {
  exitCode: number;
  durationMs: number;
  output: string;
}

async function runStep(
  label: string,
  argv: string[],
  options: CommandStepOptions,
  defaultTimeoutMs: number,
): Promise<CommandOutcome> {
  const timeoutMs = options.timeoutMs ?? defaultTimeoutMs;
  const result = await runCommand(argv, {
    timeoutMs,
    logger: options.logger,
    cwd: options.cwd,
    env: commandEnv(options.env),
  });
  const tail = lastLines(result.output, 5);
  if (result.exitCode !== 0) {
    throw new ActionError(
      'command_failed',
      `${label} command ${describeCommandResult(result, timeoutMs)}` +
        (tail.length > 0 ? `; last output: ${tail.join(' | ')}` : ''),
      { program: scrubText(argv[0]), exitCode: result.exitCode, signal: result.signal, output: tail },
    );
  }
  return {
    summary: `${label} command finished`,
    facts: [
      ['Command', scrubText(argv.join(' '))],
      ['Result', `exit 0 in ${result.durationMs} ms`],
    ],
    exitCode: 0,
    durationMs: result.durationMs,
    output: result.output,
  };
}

/** Stops the app (for example `systemctl stop gunicorn`) before its database is replaced. */
export function stopApp(argv: string[], options: CommandStepOptions): Promise<CommandOutcome> {
  return runStep('Stop', argv, options, 120_000);
}

/** Starts the app again after the restore. */
export function startApp(argv: string[], options: CommandStepOptions): Promise<CommandOutcome> {
  return runStep('Start', argv, options, 120_000);
}

/** Runs the migrations (for example `python manage.py migrate --noinput`); lists how many applied. */
export async function runMigrations(argv: string[], options: CommandStepOptions): Promise<CommandOutcome> {
  const outcome = await runStep('Migrate', argv, options, 600_000);
  const applied = outcome.output.split('\n').filter((line) => /^\s*Applying \S+\.\.\. OK/.test(line));
  outcome.summary = applied.length > 0 ? `${applied.length} migrations applied` : 'No migrations to apply';
  outcome.facts.push(['Migrations applied', String(applied.length)]);
  return outcome;
}

/**
 * Polls the app's health URL every 500 ms until it returns 2xx or
 * `timeoutMs` (default 60 s) has passed; throws ActionError `smoke_test_failed`.
 */
export async function smokeTest(
  healthUrl: string,
  options: { timeoutMs?: number } = {},
): Promise<ActionOutcome> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = performance.now() + timeoutMs;
  let attempts = 0;
  let result: HealthResult;
  for (;;) {
    attempts += 1;
    // AbortSignal.timeout needs an integer number of milliseconds.
    const remaining = Math.max(1, Math.floor(deadline - performance.now()));
    result = await checkHealth(healthUrl, { timeoutMs: Math.min(5000, remaining) });
    if (result.ok || performance.now() + SMOKE_INTERVAL_MS >= deadline) break;
    await sleep(SMOKE_INTERVAL_MS);
  }

  if (!result.ok) {
    throw new ActionError('smoke_test_failed', `smoke test failed after ${attempts} attempts: ${result.error}`, {
      status: result.status,
      attempts,
    });
  }
  return {
    summary: `Health check passed with HTTP ${result.status}`,
    facts: [['Health check', `${result.status} in ${result.durationMs} ms after ${attempts} attempts`]],
  };
}

/** File operations of replaceDatabase; tests swap single ones to inject failures. */
export interface ReplaceFileSystem {
  copyFile(from: string, to: string): void;
  fsyncFile(path: string): void;
  rename(from: string, to: string): void;
  fsyncDir(dir: string): void;
  unlink(path: string): void;
}

const realFileSystem: ReplaceFileSystem = {
  copyFile: (from, to) => copyFileSync(from, to, constants.COPYFILE_EXCL),
  fsyncFile,
  rename: renameSync,
  fsyncDir,
  unlink: unlinkSync,
};

export interface ReplaceOutcome extends ActionOutcome {
  databasePath: string;
  sha256: string;
  /** Side files of the old database (-wal, -shm, -journal) that were removed. */
  removedSideFiles: string[];
}

const SMOKE_INTERVAL_MS = 500;

/** SQLite files that belong to a database and would be applied to the replacement. */
const SIDE_SUFFIXES = ['-wal', '-shm', '-journal'];

/**
 * Replaces a SQLite database with a backup, atomically. The backup is
 * copied to a temporary file in the target folder, synced and checked.
 * The old -wal/-shm/-journal files are moved aside, because SQLite would
 * otherwise replay them onto the new file. Then one rename puts the copy in
 * place. The app must be stopped first. On failure the ActionError says in
 * `details.inPlace` whether the old or the new database is in place; it is
 * never a mixture.
 */
export async function replaceDatabase(options: {
  backupPath: string;
  databasePath: string;
  expectedSha256?: string;
  logger?: Logger;
  fileSystem?: Partial<ReplaceFileSystem>;
}): Promise<ReplaceOutcome> {
  const fs = { ...realFileSystem, ...options.fileSystem };
  const backupPath = resolve(options.backupPath);
  const databasePath = resolve(options.databasePath);
  const folder = dirname(databasePath);
  const old = checkReplaceInputs(backupPath, databasePath);
  const tempPath = join(folder, `.${basename(databasePath)}.restore-${randomBytes(6).toString('hex')}`);
  const failOld = (step: string, error: unknown, code = 'restore_failed') =>
    oldInPlace(code, databasePath, step, error, old !== undefined);

  try {
    fs.copyFile(backupPath, tempPath);
    if (old) keepOwnership(tempPath, old);
    fs.fsyncFile(tempPath);
  } catch (error) {
    removeQuietly(tempPath);
    throw failOld('copying the backup into the database folder', error);
  }

  const problem = integrityProblem(tempPath);
  const sha256 = await sha256File(tempPath);
  if (problem || (options.expectedSha256 && options.expectedSha256 !== sha256)) {
    removeQuietly(tempPath);
    const reason = problem ?? `checksum mismatch: expected ${options.expectedSha256?.slice(0, 12)}…`;
    throw failOld('checking the copy', new Error(reason), 'restore_backup_invalid');
  }

  const moved: Array<{ from: string; aside: string }> = [];
  try {
    for (const suffix of SIDE_SUFFIXES) {
      const from = `${databasePath}${suffix}`;
      if (!existsSync(from)) continue;
      const aside = `${tempPath}.old${suffix}`;
      fs.rename(from, aside);
      moved.push({ from, aside });
    }
    fs.rename(tempPath, databasePath);
  } catch (error) {
    const notRestored = putBack(fs, moved);
    removeQuietly(tempPath);
    const failure = failOld('renaming the copy over the database', error);
    failure.details.sideFilesNotRestored = notRestored;
    throw failure;
  }

  try {
    fs.fsyncDir(folder);
  } catch (error) {
    throw new ActionError(
      'restore_not_durable',
      `the restored database is in place at ${databasePath}, but syncing ${folder} failed ` +
        `(${reasonOf(error)}); it may revert after a power loss, so run the restore again before starting the app`,
      { inPlace: 'new', databasePath, step: 'syncing the folder' },
    );
  }

  const removed: string[] = [];
  const leftovers: string[] = [];
  for (const { from, aside } of moved) {
    try {
      fs.unlink(aside);
      removed.push(from);
    } catch {
      leftovers.push(aside);
    }
  }
  options.logger?.info({ databasePath, backupPath, sha256, removedSideFiles: removed.length }, 'database replaced');

  const facts: Array<[string, string]> = [
    ['Database', databasePath],
    ['From backup', basename(backupPath)],
    ['SHA-256', `${sha256.slice(0, 12)}…`],
  ];
  if (removed.length > 0) facts.push(['Old side files removed', removed.map((path) => basename(path)).join(', ')]);
  if (leftovers.length > 0) facts.push(['Left to delete by hand', leftovers.join(', ')]);
  return {
    summary: `Database replaced with ${basename(backupPath)}`,
    facts,
    databasePath,
    sha256,
    removedSideFiles: removed,
  };
}

function checkReplaceInputs(backupPath: string, databasePath: string): Stats | undefined {
  if (backupPath === databasePath) {
    throw new ActionError(
      'restore_same_file',
      `backup and database are the same file (${databasePath}); choose a backup from the backup folder`,
      { inPlace: 'old', databasePath },
    );
  }
  try {
    if (!statSync(backupPath).isFile()) throw Object.assign(new Error('not a file'), { code: 'EISDIR' });
  } catch (error) {
    throw new ActionError(
      'backup_missing',
      `backup ${backupPath} cannot be read (${reasonOf(error)}); the old database is still in place`,
      { inPlace: 'old', backupPath },
    );
  }
  if (!existsSync(dirname(databasePath))) {
    throw new ActionError(
      'restore_dir_missing',
      `database folder ${dirname(databasePath)} does not exist; check the database path`,
      { inPlace: 'old', databasePath },
    );
  }
  try {
    return statSync(databasePath);
  } catch {
    return undefined;
  }
}

function keepOwnership(path: string, old: Stats): void {
  chmodSync(path, old.mode & 0o7777);
  try {
    chownSync(path, old.uid, old.gid);
  } catch {
    // Only root may give a file away; the mode is kept either way.
  }
}

/** Moves side files back after a failed rename; returns the ones that could not be. */
function putBack(fs: ReplaceFileSystem, moved: Array<{ from: string; aside: string }>): string[] {
  const failed: string[] = [];
  for (const { from, aside } of moved) {
    try {
      fs.rename(aside, from);
    } catch {
      failed.push(aside);
    }
  }
  return failed;
}

function oldInPlace(code: string, databasePath: string, step: string, error: unknown, hadOld: boolean): ActionError {
  const state = hadOld
    ? 'the old database is still in place, unchanged'
    : 'no database was there before and none was created';
  return new ActionError(code, `restore of ${databasePath} failed while ${step} (${reasonOf(error)}); ${state}`, {
    inPlace: 'old',
    databasePath,
    step,
  });
}

function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  return scrubText(code ? `${code}: ${(error as Error).message}` : (error as Error).message);
}

function lastLines(text: string, count: number): string[] {
  return text
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '')
    .slice(-count);
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
