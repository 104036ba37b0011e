import { createHash, randomBytes } from 'node:crypto';
import {
  accessSync,
  closeSync,
  constants,
  createReadStream,
  fsyncSync,
  linkSync,
  openSync,
  renameSync,
  statSync,
  statfsSync,
  unlinkSync,
  existsSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { ActionError } from '../bot/errors.ts';

export type BackupFileKind = 'database' | 'env';

/** Backup files the bot writes; prune removes nothing else. */
export const BACKUP_NAME_PATTERNS: Record<BackupFileKind, RegExp> = {
  database: /^db-(\d{4})-(\d{2})-(\d{2})-(\d{2})(\d{2})(\d{2})\.sqlite3$/,
  env: /^env-(\d{4})-(\d{2})-(\d{2})-(\d{2})(\d{2})(\d{2})\.env\.enc$/,
};

/** Temporary files of an unfinished backup: a leading dot and a random suffix. */
export const TEMP_NAME_PATTERN =
  /^\.(?:db|env)-\d{4}-\d{2}-\d{2}-\d{6}\.(?:sqlite3|env\.enc)\.tmp-[0-9a-f]{12}$/;

const PREFIX: Record<BackupFileKind, string> = { database: 'db', env: 'env' };
const SUFFIX: Record<BackupFileKind, string> = { database: '.sqlite3', env: '.env.enc' };

/** `db-2026-03-29-020000.sqlite3` or `env-2026-03-29-020000.env.enc`, in UTC. */
export function backupFileName(kind: BackupFileKind, atMs: number): string {
  const iso = new Date(atMs).toISOString();
  const stamp = `${iso.slice(0, 10)}-${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}`;
  return `${PREFIX[kind]}-${stamp}${SUFFIX[kind]}`;
}

/** Parses the kind and UTC time from a backup file name; returns undefined for any other name. */
export function parseBackupFileName(
  name: string,
): { kind: BackupFileKind; createdAt: number } | undefined {
  for (const kind of ['database', 'env'] as const) {
    const match = BACKUP_NAME_PATTERNS[kind].exec(name);
    if (!match) continue;

    const [year, month, day, hour, minute, second] = match.slice(1).map(Number);
    const createdAt = Date.UTC(year, month - 1, day, hour, minute, second);
    // Rejects names such as db-2026-02-31-250000.sqlite3 that Date.UTC would roll over.
    if (backupFileName(kind, createdAt) !== name) return undefined;
    return { kind, createdAt };
  }
  return undefined;
}

export function tempPathFor(finalPath: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.tmp-${randomBytes(6).toString('hex')}`);
}

/**
 * Checks that the backup folder exists, is a folder, is writable and has room
 * for `neededBytes`. Throws ActionError naming the folder and the reason.
 */
export function checkBackupDir(backupDir: string, neededBytes = 0): void {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(backupDir).isDirectory();
  } catch (error) {
    throw backupDirError(backupDir, error);
  }
  if (!isDirectory) {
    throw new ActionError(
      'backup_dir_not_directory',
      `backup folder ${backupDir} is not a folder; set BACKUP_DIR to a folder`,
      { backupDir },
    );
  }

  try {
    accessSync(backupDir, constants.W_OK);
  } catch (error) {
    throw backupDirError(backupDir, error);
  }

  const stats = statfsSync(backupDir);
  const freeBytes = Number(stats.bavail) * Number(stats.bsize);
  if (freeBytes < neededBytes) {
    throw new ActionError(
      'backup_dir_full',
      `backup folder ${backupDir} is full: ${freeBytes} bytes free, the backup needs about ${neededBytes}; ` +
        'free space or move BACKUP_DIR',
      { backupDir, freeBytes, neededBytes },
    );
  }
}

/** Maps a file-system error on the backup folder to an ActionError with the reason. */
export function backupDirError(backupDir: string, error: unknown): ActionError {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  const details = { backupDir, errno: code };
  if (code === 'ENOENT') {
    return new ActionError(
      'backup_dir_missing',
      `backup folder ${backupDir} does not exist; create it or set BACKUP_DIR to an existing folder`,
      details,
    );
  }
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new ActionError(
      'backup_dir_read_only',
      `backup folder ${backupDir} is not writable (${code}); fix its permissions or mount`,
      details,
    );
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new ActionError(
      'backup_dir_full',
      `backup folder ${backupDir} is full (${code}); free space or move BACKUP_DIR`,
      details,
    );
  }
  if (code === 'ENOTDIR') {
    return new ActionError(
      'backup_dir_not_directory',
      `backup folder ${backupDir} is not a folder; set BACKUP_DIR to a folder`,
      details,
    );
  }
  return new ActionError(
    'backup_write_failed',
    `writing to backup folder ${backupDir} failed (${code || (error as Error).message})`,
    details,
  );
}

/** Creates an empty file that must not exist yet, mode 0600. */
export function createExclusive(path: string): void {
  closeSync(openSync(path, 'wx', 0o600));
}

export function fsyncFile(path: string): void {
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Makes a rename or unlink in `dir` durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Moves a finished temporary file to its final name without replacing an
 * existing file. A hard link fails with EEXIST when the name is taken; file
 * systems without hard links fall back to a check and a rename.
 */
export function publishWithoutReplacing(tempPath: string, finalPath: string): void {
  try {
    linkSync(tempPath, finalPath);
    unlinkSync(tempPath);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      throw new ActionError(
        'backup_exists',
        `backup ${finalPath} already exists and was kept; run the backup again in a second`,
        { path: finalPath },
      );
    }
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'EOPNOTSUPP') {
      throw error;
    }
    if (existsSync(finalPath)) {
      throw new ActionError('backup_exists', `backup ${finalPath} already exists and was kept`, {
        path: finalPath,
      });
    }
    renameSync(tempPath, finalPath);
  }
  fsyncDir(dirname(finalPath));
}

export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
