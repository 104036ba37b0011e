import type { Db } from './db.ts';

export type OutboxTarget = 'slack' | 'pagerduty';

export interface OutboxRow {
  id: number;
  incidentId: number | null;
  target: OutboxTarget;
  kind: string;
  mergeKey: string | null;
  payload: Record<string, unknown>;
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAttemptAt: number;
  createdAt: number;
  deliveredAt: number | null;
  lastError: string | null;
  result: Record<string, unknown> | null;
  /** A process died while delivering it, so it may already have arrived. */
  uncertain: boolean;
}

interface OutboxRecord {
  id: number;
  incident_id: number | null;
  target: OutboxTarget;
  kind: string;
  merge_key: string | null;
  payload: string;
  status: OutboxRow['status'];
  attempts: number;
  next_attempt_at: number;
  created_at: number;
  delivered_at: number | null;
  last_error: string | null;
  result: string | null;
  uncertain: number;
}

function toRow(record: OutboxRecord): OutboxRow {
  return {
    id: record.id,
    incidentId: record.incident_id,
    target: record.target,
    kind: record.kind,
    mergeKey: record.merge_key,
    payload: JSON.parse(record.payload) as Record<string, unknown>,
    status: record.status,
    attempts: record.attempts,
    nextAttemptAt: record.next_attempt_at,
    createdAt: record.created_at,
    deliveredAt: record.delivered_at,
    lastError: record.last_error,
    result: record.result ? (JSON.parse(record.result) as Record<string, unknown>) : null,
    uncertain: record.uncertain === 1,
  };
}

export interface NewOutboxMessage {
  incidentId: number | null;
  target: OutboxTarget;
  kind: string;
  /** Messages with the same merge key collapse into the one still pending. */
  mergeKey?: string;
  payload?: Record<string, unknown>;
}

/**
 * Queues a message. When a pending message has the same merge key, nothing
 * is added: that message renders the latest state when it is delivered.
 * Returns the id of the queued or merged message.
 */
export function enqueue(db: Db, message: NewOutboxMessage, now: number): number {
  if (message.mergeKey) {
    const existing = db
      .prepare("SELECT id FROM outbox WHERE merge_key = ? AND status = 'pending' AND in_flight = 0")
      .get(message.mergeKey) as { id: number } | undefined;
    if (existing) return existing.id;
  }
  const result = db
    .prepare(
      `INSERT INTO outbox (incident_id, target, kind, merge_key, payload, status, next_attempt_at, created_at)
       VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)`,
    )
    .run(message.incidentId, message.target, message.kind, message.mergeKey ?? null, JSON.stringify(message.payload ?? {}), now, now);
  return Number(result.lastInsertRowid);
}

/**
 * Lists the first pending message of each (incident, target) queue, when it is due.
 * Later messages of a queue wait for the first, so each queue is delivered in order.
 */
export function listDeliverable(db: Db, now: number, limit = 50): OutboxRow[] {
  const records = db
    .prepare(
      `SELECT o.* FROM outbox o
       JOIN (SELECT min(id) AS id FROM outbox WHERE status = 'pending'
             GROUP BY coalesce(incident_id, -id), target) head ON head.id = o.id
       WHERE o.next_attempt_at <= ?
       ORDER BY o.id LIMIT ?`,
    )
    .all(now, limit) as OutboxRecord[];
  return records.map(toRow);
}

/** When the next pending message falls due, or undefined when the outbox is empty. */
export function nextDueAt(db: Db): number | undefined {
  const row = db.prepare("SELECT min(next_attempt_at) AS at FROM outbox WHERE status = 'pending'").get() as { at: number | null };
  return row.at ?? undefined;
}

/** Marks a message as being delivered, so later changes queue a new render instead of merging into it. */
export function markInFlight(db: Db, id: number): void {
  db.prepare('UPDATE outbox SET in_flight = 1 WHERE id = ?').run(id);
}

/** Clears in-flight marks left by a process that died mid-delivery; those messages are sent again. */
export function resetInFlight(db: Db): number {
  return db.transaction(() => {
    let reset = 0;
    const rows = db.prepare("SELECT id FROM outbox WHERE in_flight = 1 AND status = 'pending'").all() as Array<{ id: number }>;
    for (const row of rows) {
      db.prepare('UPDATE outbox SET uncertain = 1 WHERE id = ?').run(row.id);
      // Same rule as a retry: a newer render of the same target replaces this one.
      scheduleRetry(db, row.id, 0, 'interrupted by a restart');
      reset++;
    }
    return reset;
  })();
}

export function markDelivered(db: Db, id: number, now: number, result?: Record<string, unknown>): void {
  db.prepare("UPDATE outbox SET status = 'delivered', in_flight = 0, delivered_at = ?, attempts = attempts + 1, result = ? WHERE id = ?").run(
    now,
    result ? JSON.stringify(result) : null,
    id,
  );
}

export function markFailed(db: Db, id: number, error: string): void {
  db.prepare("UPDATE outbox SET status = 'failed', in_flight = 0, attempts = attempts + 1, last_error = ? WHERE id = ?").run(error, id);
}

/**
 * Schedules another attempt. When a newer message with the same merge key
 * was queued meanwhile, this one is retired instead: the newer one renders
 * the same target with later state.
 */
export function scheduleRetry(db: Db, id: number, nextAttemptAt: number, error: string): void {
  db.transaction(() => {
    const newer = db
      .prepare(
        `SELECT n.id FROM outbox o JOIN outbox n ON n.merge_key = o.merge_key
         WHERE o.id = ? AND n.id <> o.id AND n.status = 'pending' AND n.in_flight = 0`,
      )
      .get(id) as { id: number } | undefined;
    if (newer) {
      db.prepare("UPDATE outbox SET status = 'delivered', in_flight = 0, attempts = attempts + 1, last_error = ?, result = ? WHERE id = ?").run(
        error,
        JSON.stringify({ mergedInto: newer.id }),
        id,
      );
      return;
    }
    db.prepare('UPDATE outbox SET in_flight = 0, attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?').run(nextAttemptAt, error, id);
  })();
}

export function listOutbox(db: Db, incidentId: number, target?: OutboxTarget): OutboxRow[] {
  const records = (
    target
      ? db.prepare('SELECT * FROM outbox WHERE incident_id = ? AND target = ? ORDER BY id').all(incidentId, target)
      : db.prepare('SELECT * FROM outbox WHERE incident_id = ? ORDER BY id').all(incidentId)
  ) as OutboxRecord[];
  return records.map(toRow);
}

export function countPending(db: Db): number {
  return (db.prepare("SELECT count(*) AS n FROM outbox WHERE status = 'pending'").get() as { n: number }).n;
}
