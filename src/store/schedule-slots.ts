import type { Db } from './db.ts';

export type SlotStatus = 'running' | 'succeeded' | 'failed';

export interface SlotRow {
  schedule: string;
  /** Scheduled local time in the configured zone, for example `2026-03-29T02:00`. */
  slot: string;
  claimedAt: number;
  status: SlotStatus;
  finishedAt: number | null;
  error: string | null;
}

interface SlotRecord {
  schedule: string;
  slot: string;
  claimed_at: number;
  status: SlotStatus;
  finished_at: number | null;
  error: string | null;
}

function toSlot(record: SlotRecord): SlotRow {
  return {
    schedule: record.schedule,
    slot: record.slot,
    claimedAt: record.claimed_at,
    status: record.status,
    finishedAt: record.finished_at,
    error: record.error,
  };
}

/**
 * Claims one run of a schedule. The primary key (schedule, slot) makes the
 * insert succeed for exactly one caller, also across processes that share the
 * database file, so only the caller that gets `true` may run the slot.
 */
export function claimSlot(db: Db, schedule: string, slot: string, now: number): boolean {
  const result = db
    .prepare(
      "INSERT OR IGNORE INTO schedule_slots (schedule, slot, claimed_at, status) VALUES (?, ?, ?, 'running')",
    )
    .run(schedule, slot, now);
  return result.changes === 1;
}

/**
 * Records how a claimed slot ended. Only a running slot changes, so a second
 * call cannot overwrite the first result. Returns false when no running slot matched.
 */
export function finishSlot(
  db: Db,
  schedule: string,
  slot: string,
  status: 'succeeded' | 'failed',
  error?: string,
  finishedAt?: number,
): boolean {
  const result = db
    .prepare(
      `UPDATE schedule_slots SET status = ?, error = ?, finished_at = ?
       WHERE schedule = ? AND slot = ? AND status = 'running'`,
    )
    .run(status, error ?? null, finishedAt ?? null, schedule, slot);
  return result.changes === 1;
}

/** Finds the most recently claimed slot of a schedule; undefined when it never ran. */
export function lastSlot(db: Db, schedule: string): SlotRow | undefined {
  const record = db
    .prepare(
      'SELECT * FROM schedule_slots WHERE schedule = ? ORDER BY claimed_at DESC, slot DESC LIMIT 1',
    )
    .get(schedule) as SlotRecord | undefined;
  return record ? toSlot(record) : undefined;
}

export function getSlot(db: Db, schedule: string, slot: string): SlotRow | undefined {
  const record = db
    .prepare('SELECT * FROM schedule_slots WHERE schedule = ? AND slot = ?')
    .get(schedule, slot) as SlotRecord | undefined;
  return record ? toSlot(record) : undefined;
}
