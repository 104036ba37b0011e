import type { Db } from './db.ts';

export interface TimerRow {
  id: number;
  incidentId: number | null;
  stepId: string | null;
  kind: string;
  dueAt: number;
  status: 'pending' | 'fired' | 'cancelled';
  firedAt: number | null;
  lateMs: number | null;
  payload: Record<string, unknown>;
}

interface TimerRecord {
  id: number;
  incident_id: number | null;
  step_id: string | null;
  kind: string;
  due_at: number;
  status: TimerRow['status'];
  fired_at: number | null;
  late_ms: number | null;
  payload: string;
}

function toTimer(record: TimerRecord): TimerRow {
  return {
    id: record.id,
    incidentId: record.incident_id,
    stepId: record.step_id,
    kind: record.kind,
    dueAt: record.due_at,
    status: record.status,
    firedAt: record.fired_at,
    lateMs: record.late_ms,
    payload: JSON.parse(record.payload) as Record<string, unknown>,
  };
}

export interface NewTimer {
  incidentId: number | null;
  stepId?: string | null;
  kind: string;
  dueAt: number;
  payload?: Record<string, unknown>;
}

export function insertTimer(db: Db, timer: NewTimer): number {
  const result = db
    .prepare("INSERT INTO timers (incident_id, step_id, kind, due_at, status, payload) VALUES (?, ?, ?, ?, 'pending', ?)")
    .run(timer.incidentId, timer.stepId ?? null, timer.kind, timer.dueAt, JSON.stringify(timer.payload ?? {}));
  return Number(result.lastInsertRowid);
}

/** Pending timers due before `until`, earliest first. */
export function listPendingTimers(db: Db, until: number): TimerRow[] {
  const records = db
    .prepare("SELECT * FROM timers WHERE status = 'pending' AND due_at <= ? ORDER BY due_at, id")
    .all(until) as TimerRecord[];
  return records.map(toTimer);
}

/** Pending timers with an id above `afterId` due before `until`: the ones armed since the last look. */
export function listPendingTimersAfter(db: Db, afterId: number, until: number): TimerRow[] {
  const records = db
    .prepare("SELECT * FROM timers WHERE status = 'pending' AND id > ? AND due_at <= ? ORDER BY id")
    .all(afterId, until) as TimerRecord[];
  return records.map(toTimer);
}

export function maxTimerId(db: Db): number {
  return (db.prepare('SELECT coalesce(max(id), 0) AS id FROM timers').get() as { id: number }).id;
}

export function getTimer(db: Db, id: number): TimerRow | undefined {
  const record = db.prepare('SELECT * FROM timers WHERE id = ?').get(id) as TimerRecord | undefined;
  return record ? toTimer(record) : undefined;
}

/**
 * Claims a pending timer for firing. Returns false when it already fired or
 * was cancelled, so a timer fires at most once even when two paths race.
 */
export function claimTimer(db: Db, id: number, firedAt: number, lateMs: number): boolean {
  const result = db
    .prepare("UPDATE timers SET status = 'fired', fired_at = ?, late_ms = ? WHERE id = ? AND status = 'pending'")
    .run(firedAt, lateMs, id);
  return result.changes === 1;
}

export function cancelIncidentTimers(db: Db, incidentId: number, stepId?: string, kinds?: string[]): number {
  let sql = "UPDATE timers SET status = 'cancelled' WHERE status = 'pending' AND incident_id = ?";
  const params: unknown[] = [incidentId];
  if (stepId !== undefined) {
    sql += ' AND step_id = ?';
    params.push(stepId);
  }
  if (kinds && kinds.length > 0) {
    sql += ` AND kind IN (${kinds.map(() => '?').join(', ')})`;
    params.push(...kinds);
  }
  return db.prepare(sql).run(...params).changes;
}

export function listIncidentTimers(db: Db, incidentId: number): TimerRow[] {
  const records = db.prepare('SELECT * FROM timers WHERE incident_id = ? ORDER BY due_at, id').all(incidentId) as TimerRecord[];
  return records.map(toTimer);
}
