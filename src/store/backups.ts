import type { Db } from './db.ts';

export type BackupKind = 'database' | 'env';
export type BackupStatus = 'good' | 'failed' | 'pruned';

export interface NewBackup {
  kind: BackupKind;
  path: string;
  createdAt: number;
  sizeBytes?: number;
  sha256?: string;
  status: 'good' | 'failed';
  error?: string;
}

export interface BackupRow {
  id: number;
  kind: BackupKind;
  path: string;
  createdAt: number;
  sizeBytes: number | null;
  sha256: string | null;
  status: BackupStatus;
  error: string | null;
}

interface BackupRecord {
  id: number;
  kind: BackupKind;
  path: string;
  created_at: number;
  size_bytes: number | null;
  sha256: string | null;
  status: BackupStatus;
  error: string | null;
}

function toBackup(record: BackupRecord): BackupRow {
  return {
    id: record.id,
    kind: record.kind,
    path: record.path,
    createdAt: record.created_at,
    sizeBytes: record.size_bytes,
    sha256: record.sha256,
    status: record.status,
    error: record.error,
  };
}

/** Records a finished backup attempt, good or failed, and returns its id. */
export function recordBackup(db: Db, backup: NewBackup): number {
  const result = db
    .prepare(
      `INSERT INTO backups (kind, path, created_at, size_bytes, sha256, status, error)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(
      backup.kind,
      backup.path,
      backup.createdAt,
      backup.sizeBytes ?? null,
      backup.sha256 ?? null,
      backup.status,
      backup.error ?? null,
    );
  return Number(result.lastInsertRowid);
}

export function getBackup(db: Db, id: number): BackupRow | undefined {
  const record = db.prepare('SELECT * FROM backups WHERE id = ?').get(id) as
    | BackupRecord
    | undefined;
  return record ? toBackup(record) : undefined;
}

export interface BackupFilter {
  kind?: BackupKind;
  status?: BackupStatus;
  limit?: number;
}

/** Backups matching the filter, newest first (default limit 100). */
export function listBackups(db: Db, filter: BackupFilter = {}): BackupRow[] {
  const conditions: string[] = [];
  const values: Array<string | number> = [];
  if (filter.kind) {
    conditions.push('kind = ?');
    values.push(filter.kind);
  }
  if (filter.status) {
    conditions.push('status = ?');
    values.push(filter.status);
  }
  const where = conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : '';

  const records = db
    .prepare(`SELECT * FROM backups ${where} ORDER BY created_at DESC, id DESC LIMIT ?`)
    .all(...values, filter.limit ?? 100) as BackupRecord[];
  return records.map(toBackup);
}

/** Finds the newest backup of a kind whose copy was checked good and is not pruned. */
export function newestGoodBackup(db: Db, kind: BackupKind): BackupRow | undefined {
  const record = db
    .prepare(
      "SELECT * FROM backups WHERE kind = ? AND status = 'good' ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .get(kind) as BackupRecord | undefined;
  return record ? toBackup(record) : undefined;
}

/** Good database backups for the restore picker, newest first. */
export function recentBackups(db: Db, limit = 10, kind: BackupKind = 'database'): BackupRow[] {
  return listBackups(db, { kind, status: 'good', limit });
}

/** Marks good backups as pruned after their files were removed; returns how many changed. */
export function markPruned(db: Db, ids: number[]): number {
  const update = db.prepare("UPDATE backups SET status = 'pruned' WHERE id = ? AND status = 'good'");
  const markAll = db.transaction((list: number[]) => {
    let changed = 0;
    for (const id of list) changed += update.run(id).changes;
    return changed;
  });
  return markAll(ids);
}

/** Backups made since `since`, counted by kind and outcome; a pruned copy counts as good. */
export function countBackupsSince(db: Db, since: number): Record<BackupKind, { good: number; failed: number }> {
  const rows = db
    .prepare(
      `SELECT kind, SUM(status != 'failed') AS good, SUM(status = 'failed') AS failed
         FROM backups WHERE created_at >= ? GROUP BY kind`,
    )
    .all(since) as Array<{ kind: BackupKind; good: number; failed: number }>;
  const counts: Record<BackupKind, { good: number; failed: number }> = { database: { good: 0, failed: 0 }, env: { good: 0, failed: 0 } };
  for (const row of rows) counts[row.kind] = { good: row.good, failed: row.failed };
  return counts;
}
