import type { Clock } from '../bot/clock.ts';
import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { backupDatabase, pruneBackups, verifyBackup, type PrunableRecord } from './backup.ts';
import { backupEnvFile } from './env-backup.ts';
import { formatBytes } from './restore.ts';
import type { ActionOutcome } from './types.ts';

/** The record of backups that a run writes to; the bot's store implements it. */
export interface BackupLedger {
  record(backup: { kind: 'database' | 'env'; path: string; createdAt: number; sizeBytes?: number; sha256?: string; status: 'good' | 'failed'; error?: string }): number;
  records(): PrunableRecord[];
  markPruned(ids: number[]): void;
}

export interface BackupRunOptions {
  databasePath: string;
  backupDir: string;
  /** The Django app's .env; backed up encrypted when a key is configured. */
  envFile?: string;
  encryptionKey?: string;
  retentionDays: number;
  clock: Clock;
  logger: Logger;
  ledger: BackupLedger;
}

/**
 * Backs up the database and the encrypted .env, verifies each copy, records
 * it, and prunes what is older than the retention. A failure of one part
 * does not stop the others. Afterwards the run throws ActionError listing
 * every failure with its path and reason; nothing good is removed.
 */
export async function runBackup(options: BackupRunOptions): Promise<ActionOutcome> {
  const { clock, logger, ledger } = options;
  const facts: Array<[string, string]> = [];
  const failures: string[] = [];

  try {
    const copy = await backupDatabase({ databasePath: options.databasePath, backupDir: options.backupDir, clock, logger });
    const check = await verifyBackup(copy.path, copy.sha256);
    if (!check.ok) throw new ActionError('backup_check_failed', `the copy ${copy.path} failed its check: ${check.reason}`);
    ledger.record({ kind: 'database', path: copy.path, createdAt: copy.createdAt, sizeBytes: copy.sizeBytes, sha256: copy.sha256, status: 'good' });
    facts.push(['Database', `${copy.path} (${formatBytes(copy.sizeBytes)}, sha256 ${copy.sha256.slice(0, 12)}…, integrity ok, ${copy.durationMs} ms)`]);
  } catch (error) {
    const reason = messageOf(error);
    ledger.record({ kind: 'database', path: options.databasePath, createdAt: clock.now(), status: 'failed', error: reason });
    failures.push(`database backup failed: ${reason}`);
  }

  if (options.envFile && options.encryptionKey) {
    try {
      const copy = await backupEnvFile({ envFile: options.envFile, backupDir: options.backupDir, encryptionKey: options.encryptionKey, clock, logger });
      const check = await verifyBackup(copy.path, copy.sha256);
      if (!check.ok) throw new ActionError('backup_check_failed', `the encrypted copy ${copy.path} failed its check: ${check.reason}`);
      ledger.record({ kind: 'env', path: copy.path, createdAt: copy.createdAt, sizeBytes: copy.sizeBytes, sha256: copy.sha256, status: 'good' });
      facts.push(['Encrypted .env', `${copy.path} (${formatBytes(copy.sizeBytes)}, AES-256-GCM, key id ${copy.keyId})`]);
    } catch (error) {
      const reason = messageOf(error);
      ledger.record({ kind: 'env', path: options.envFile, createdAt: clock.now(), status: 'failed', error: reason });
      failures.push(`.env backup failed: ${reason}`);
    }
  } else {
    facts.push(['Encrypted .env', 'not backed up: set DJANGO_ENV_FILE and BACKUP_ENCRYPTION_KEY']);
  }

  try {
    const pruned = pruneBackups({ backupDir: options.backupDir, retentionDays: options.retentionDays, now: clock.now(), records: ledger.records() });
    const removedIds = pruned.removed.map((entry) => entry.recordId).filter((id): id is number => id !== undefined);
    ledger.markPruned([...removedIds, ...pruned.prunedRecordIds]);
    facts.push(['Retention', `${pruned.removed.length} backup${pruned.removed.length === 1 ? '' : 's'} older than ${options.retentionDays} days removed`]);
    for (const problem of pruned.errors) failures.push(`pruning ${problem.path} failed: ${problem.reason}`);
  } catch (error) {
    failures.push(`pruning failed: ${messageOf(error)}`);
  }

  if (failures.length > 0) throw new ActionError('backup_failed', failures.join('; '), { facts });
  return { summary: 'Backup written, checked and recorded', facts };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
