import { lstatSync, readFileSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import Database from 'better-sqlite3';

import type { Clock } from '../bot/clock.ts';
import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import {
  BACKUP_NAME_PATTERNS,
  type BackupFileKind,
  TEMP_NAME_PATTERN,
  backupDirError,
  backupFileName,
  checkBackupDir,
  createExclusive,
  fsyncFile,
  parseBackupFileName,
  publishWithoutReplacing,
  removeQuietly,
  sha256File,
  tempPathFor,
} from './backup-files.ts';
import { envBackupLayoutProblem } from './env-backup.ts';

export {
  backupEnvFile,
  decryptEnvBackup,
  parseEncryptionKey,
  type EnvBackup,
} from './env-backup.ts';
export { backupFileName, parseBackupFileName } from './backup-files.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
/** Pages copied per backup step: 1,000 pages is 4 MiB with SQLite's default page size. */
const PAGES_PER_STEP = 1000;
/** After this many restarts caused by other writers, the rest is copied in one step. */
const MAX_RESTARTS = 3;
const ALL_PAGES = 0x7fffffff;

export interface DatabaseBackup {
  kind: 'database';
  path: string;
  createdAt: number;
  sizeBytes: number;
  sha256: string;
  durationMs: number;
  /** How often a write by another connection made SQLite start the copy again. */
  restarts: number;
}

/**
 * Backs up a SQLite database with SQLite's online backup API into
 * `BACKUP_DIR/db-YYYY-MM-DD-HHMMSS.sqlite3` (UTC). The source is opened read-only, so its
 * journal mode stays as it is (Django's rollback journal is not switched to WAL).
 * The copy is written under a temporary name, checked with
 * `PRAGMA integrity_check`, synced and then given its final name; an existing
 * backup is never replaced.
 */
export async function backupDatabase(options: {
  databasePath: string;
  backupDir: string;
  clock: Clock;
  logger?: Logger;
  /** Abort when the copy takes longer (default 10 minutes). */
  maxDurationMs?: number;
}): Promise<DatabaseBackup> {
  const { databasePath, backupDir, clock } = options;
  const sourceBytes = checkSourceDatabase(databasePath);
  checkBackupDir(backupDir, sourceBytes + 64 * 1024);

  const createdAt = clock.now();
  const finalPath = join(backupDir, backupFileName('database', createdAt));
  const tempPath = tempPathFor(finalPath);
  try {
    createExclusive(tempPath);
  } catch (error) {
    throw backupDirError(backupDir, error);
  }

  try {
    const restarts = await copyWithBackupApi(databasePath, tempPath, backupDir, options.maxDurationMs);
    const problem = integrityProblem(tempPath);
    if (problem) {
      throw new ActionError(
        'backup_integrity_failed',
        `the copy of ${databasePath} failed PRAGMA integrity_check (${problem}); the source may be damaged`,
        { databasePath, problem },
      );
    }

    const sizeBytes = statSync(tempPath).size;
    const sha256 = await sha256File(tempPath);
    fsyncFile(tempPath);
    publishWithoutReplacing(tempPath, finalPath);

    const backup: DatabaseBackup = {
      kind: 'database',
      path: finalPath,
      createdAt,
      sizeBytes,
      sha256,
      durationMs: clock.now() - createdAt,
      restarts,
    };
    options.logger?.info(
      { path: finalPath, sizeBytes, sha256, durationMs: backup.durationMs, restarts },
      'database backup written',
    );
    return backup;
  } catch (error) {
    removeQuietly(tempPath);
    if (error instanceof ActionError) throw error;
    throw backupDirError(backupDir, error);
  }
}

/** Checks that the database exists and is a file; returns its size. */
function checkSourceDatabase(databasePath: string): number {
  try {
    const stats = statSync(databasePath);
    if (!stats.isFile()) {
      throw new ActionError(
        'database_not_file',
        `database ${databasePath} is not a file; set the path of the SQLite file`,
        { databasePath },
      );
    }
    return stats.size;
  } catch (error) {
    if (error instanceof ActionError) throw error;
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ActionError(
      code === 'ENOENT' ? 'database_missing' : 'database_unreadable',
      code === 'ENOENT'
        ? `database ${databasePath} does not exist; check the database path setting`
        : `database ${databasePath} cannot be read (${code})`,
      { databasePath, errno: code },
    );
  }
}

async function copyWithBackupApi(
  databasePath: string,
  tempPath: string,
  backupDir: string,
  maxDurationMs = 10 * 60 * 1000,
): Promise<number> {
  let source: Database.Database;
  try {
    source = new Database(databasePath, { readonly: true, fileMustExist: true, timeout: 5000 });
  } catch (error) {
    throw sourceError(databasePath, error);
  }

  const deadline = performance.now() + maxDurationMs;
  let restarts = 0;
  let lastRemaining = Number.POSITIVE_INFINITY;
  try {
    await source.backup(tempPath, {
      progress: ({ remainingPages }) => {
        if (performance.now() > deadline) {
          throw new ActionError(
            'backup_timed_out',
            `backup of ${databasePath} took longer than ${maxDurationMs} ms and was stopped`,
            { databasePath, maxDurationMs },
          );
        }
        if (remainingPages > lastRemaining) restarts += 1;
        lastRemaining = remainingPages;
        // Under steady writes from another process the copy could restart
        // forever. After a few restarts the rest is copied in one step under
        // the read lock, and writers wait on their busy timeout meanwhile.
        return restarts >= MAX_RESTARTS ? ALL_PAGES : PAGES_PER_STEP;
      },
    });
  } catch (error) {
    if (error instanceof ActionError) throw error;
    const code = (error as { code?: string }).code ?? '';
    if (code.startsWith('SQLITE_FULL')) {
      throw new ActionError('backup_dir_full', `backup folder ${backupDir} is full; free space or move BACKUP_DIR`, {
        backupDir,
      });
    }
    if (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN')) {
      throw backupDirError(backupDir, Object.assign(new Error(code), { code: 'EROFS' }));
    }
    throw sourceError(databasePath, error);
  } finally {
    source.close();
  }
  return restarts;
}

function sourceError(databasePath: string, error: unknown): ActionError {
  const code = (error as { code?: string }).code ?? 'unknown';
  const reason =
    code === 'SQLITE_NOTADB'
      ? 'it is not a SQLite database'
      : code.startsWith('SQLITE_CORRUPT')
        ? 'the database file is damaged'
        : code.startsWith('SQLITE_BUSY')
          ? 'another process held a lock for longer than 5 s'
          : (error as Error).message;
  return new ActionError('database_unreadable', `database ${databasePath} cannot be backed up: ${reason}`, {
    databasePath,
    sqliteCode: code,
  });
}

/** Runs `PRAGMA integrity_check` on a database file; returns the first problems or undefined. */
export function integrityProblem(path: string): string | undefined {
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    const rows = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    const messages = rows.map((row) => row.integrity_check);
    if (messages.length === 1 && messages[0] === 'ok') return undefined;
    return messages.slice(0, 3).join('; ');
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    if (code === 'SQLITE_NOTADB') return 'not a SQLite database: the file header is damaged';
    if (code.startsWith('SQLITE_CORRUPT')) return `database disk image is malformed (${code})`;
    return (error as Error).message;
  } finally {
    db?.close();
  }
}

export interface BackupVerification {
  ok: boolean;
  path: string;
  kind: BackupFileKind | 'unknown';
  sizeBytes?: number;
  sha256?: string;
  /** Reason the backup is unusable, when `ok` is false. */
  reason?: string;
}

/**
 * Verifies a backup file: the SHA-256 when one is expected, then the content
 * (`PRAGMA integrity_check` for a database copy, the header layout for an
 * encrypted env backup). A bad file does not throw: `reason` describes what is wrong.
 */
export async function verifyBackup(path: string, expectedSha256?: string): Promise<BackupVerification> {
  const kind: BackupVerification['kind'] = parseBackupFileName(basename(path))?.kind ?? 'unknown';
  let sizeBytes: number;
  try {
    const stats = statSync(path);
    if (!stats.isFile()) return { ok: false, path, kind, reason: 'not a file' };
    sizeBytes = stats.size;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { ok: false, path, kind, reason: code === 'ENOENT' ? 'file not found' : `cannot read (${code})` };
  }

  const sha256 = await sha256File(path);
  const result = { path, kind, sizeBytes, sha256 };
  if (expectedSha256 && expectedSha256.toLowerCase() !== sha256) {
    return {
      ...result,
      ok: false,
      reason: `checksum mismatch: expected SHA-256 ${expectedSha256.slice(0, 12)}…, file has ${sha256.slice(0, 12)}…`,
    };
  }

  const problem =
    kind === 'env' ? envBackupLayoutProblem(readFileSync(path)) : integrityProblem(path);
  if (problem) return { ...result, ok: false, reason: problem };
  return { ...result, ok: true };
}

export interface PrunableRecord {
  id: number;
  kind: BackupFileKind;
  path: string;
  createdAt: number;
  status: 'good' | 'failed' | 'pruned';
}

export interface PruneReport {
  removed: Array<{ path: string; kind: BackupFileKind; createdAt: number; recordId?: number }>;
  /** Files kept because each is the newest good backup of its kind. */
  keptNewest: string[];
  /** Records older than the retention whose files are gone: mark them pruned. */
  prunedRecordIds: number[];
  /** Leftover temporary files of interrupted backups that were removed. */
  removedTemp: string[];
  errors: Array<{ path: string; reason: string }>;
}

/**
 * Removes backups older than `retentionDays`. Only files named like the
 * bot's backups are touched, and the newest good backup of each kind stays
 * even when it is older than the retention (for example after the bot was
 * down for weeks). Without records, the newest file of each kind counts as
 * the newest good one.
 */
export function pruneBackups(options: {
  backupDir: string;
  retentionDays: number;
  now: number;
  records: PrunableRecord[];
}): PruneReport {
  const { backupDir, retentionDays, now, records } = options;
  if (!Number.isFinite(retentionDays) || retentionDays <= 0) {
    throw new ActionError(
      'invalid_retention',
      `retention of ${retentionDays} days is invalid; set a positive number of days, for example 30`,
      { retentionDays },
    );
  }

  let names: string[];
  try {
    names = readdirSync(backupDir);
  } catch (error) {
    throw backupDirError(backupDir, error);
  }

  const cutoff = now - retentionDays * DAY_MS;
  const recordsByPath = new Map(records.map((record) => [resolve(record.path), record]));
  const keep = newestGoodPaths(backupDir, names, records);
  const report: PruneReport = { removed: [], keptNewest: [...keep], prunedRecordIds: [], removedTemp: [], errors: [] };

  for (const name of names) {
    const path = resolve(backupDir, name);
    if (TEMP_NAME_PATTERN.test(name)) {
      removeStaleTemp(path, now, report);
      continue;
    }
    const parsed = parseBackupFileName(name);
    if (!parsed || keep.has(path) || !isRegularFile(path)) continue;

    const record = recordsByPath.get(path);
    const createdAt = record?.createdAt ?? parsed.createdAt;
    if (createdAt >= cutoff) continue;

    try {
      unlinkSync(path);
      report.removed.push({ path, kind: parsed.kind, createdAt, recordId: record?.id });
      if (record) report.prunedRecordIds.push(record.id);
    } catch (error) {
      report.errors.push({ path, reason: (error as NodeJS.ErrnoException).code ?? String(error) });
    }
  }

  const present = new Set(names.map((name) => resolve(backupDir, name)));
  for (const record of records) {
    const path = resolve(record.path);
    const gone = !present.has(path) && !report.removed.some((item) => item.path === path);
    if (gone && record.status === 'good' && record.createdAt < cutoff && !keep.has(path)) {
      report.prunedRecordIds.push(record.id);
    }
  }
  return report;
}

/** Finds the newest good backup of each kind whose file still exists. */
function newestGoodPaths(backupDir: string, names: string[], records: PrunableRecord[]): Set<string> {
  const present = new Set(names.map((name) => resolve(backupDir, name)));
  const keep = new Set<string>();
  for (const kind of ['database', 'env'] as const) {
    const good = records
      .filter((record) => record.kind === kind && record.status === 'good')
      .filter((record) => present.has(resolve(record.path)))
      .sort((a, b) => b.createdAt - a.createdAt || b.id - a.id);
    if (good.length > 0) {
      keep.add(resolve(good[0].path));
      continue;
    }
    const newestFile = names
      .filter((name) => BACKUP_NAME_PATTERNS[kind].test(name))
      .sort()
      .at(-1);
    if (newestFile) keep.add(resolve(backupDir, newestFile));
  }
  return keep;
}

function removeStaleTemp(path: string, now: number, report: PruneReport): void {
  try {
    if (now - lstatSync(path).mtimeMs < DAY_MS) return;
    unlinkSync(path);
    report.removedTemp.push(path);
  } catch (error) {
    report.errors.push({ path, reason: (error as NodeJS.ErrnoException).code ?? String(error) });
  }
}

function isRegularFile(path: string): boolean {
  try {
    return lstatSync(path).isFile();
  } catch {
    return false;
  }
}
