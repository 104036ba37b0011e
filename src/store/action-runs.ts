import type { Db } from './db.ts';

export type ActionRunStatus = 'requested' | 'running' | 'succeeded' | 'failed' | 'interrupted' | 'superseded';

export interface ActionRunRow {
  id: number;
  incidentId: number;
  stepId: string;
  action: string;
  status: ActionRunStatus;
  requestedBy: string;
  approvedBy: string | null;
  requestedAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  inputs: Record<string, string>;
  result: Record<string, unknown> | null;
  error: string | null;
}

interface ActionRunRecord {
  id: number;
  incident_id: number;
  step_id: string;
  action: string;
  status: ActionRunStatus;
  requested_by: string;
  approved_by: string | null;
  requested_at: number;
  started_at: number | null;
  finished_at: number | null;
  inputs: string;
  result: string | null;
  error: string | null;
}

function toRow(record: ActionRunRecord): ActionRunRow {
  return {
    id: record.id,
    incidentId: record.incident_id,
    stepId: record.step_id,
    action: record.action,
    status: record.status,
    requestedBy: record.requested_by,
    approvedBy: record.approved_by,
    requestedAt: record.requested_at,
    startedAt: record.started_at,
    finishedAt: record.finished_at,
    inputs: JSON.parse(record.inputs) as Record<string, string>,
    result: record.result ? (JSON.parse(record.result) as Record<string, unknown>) : null,
    error: record.error,
  };
}

/**
 * Inserts a run in state `requested` or `running`. Returns undefined when a
 * live or successful run of the same (incident, step, action) exists: the
 * partial unique index makes this hold across clicks, retries and processes.
 */
export function insertRun(
  db: Db,
  run: { incidentId: number; stepId: string; action: string; status: 'requested' | 'running'; requestedBy: string; approvedBy?: string | null; at: number; inputs: Record<string, string> },
): number | undefined {
  const result = db
    .prepare(
      `INSERT INTO action_runs (incident_id, step_id, action, status, requested_by, approved_by, requested_at, started_at, inputs)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT DO NOTHING`,
    )
    .run(
      run.incidentId,
      run.stepId,
      run.action,
      run.status,
      run.requestedBy,
      run.approvedBy ?? null,
      run.at,
      run.status === 'running' ? run.at : null,
      JSON.stringify(run.inputs),
    );
  return result.changes === 1 ? Number(result.lastInsertRowid) : undefined;
}

/** Finds the live or successful run of an action, if any. */
export function findActiveRun(db: Db, incidentId: number, stepId: string, action: string): ActionRunRow | undefined {
  const record = db
    .prepare(
      `SELECT * FROM action_runs WHERE incident_id = ? AND step_id = ? AND action = ?
       AND status IN ('requested', 'running', 'succeeded')`,
    )
    .get(incidentId, stepId, action) as ActionRunRecord | undefined;
  return record ? toRow(record) : undefined;
}

export function latestRun(db: Db, incidentId: number, stepId: string): ActionRunRow | undefined {
  const record = db
    .prepare('SELECT * FROM action_runs WHERE incident_id = ? AND step_id = ? ORDER BY id DESC LIMIT 1')
    .get(incidentId, stepId) as ActionRunRecord | undefined;
  return record ? toRow(record) : undefined;
}

export function getRun(db: Db, id: number): ActionRunRow | undefined {
  const record = db.prepare('SELECT * FROM action_runs WHERE id = ?').get(id) as ActionRunRecord | undefined;
  return record ? toRow(record) : undefined;
}

/** Moves a requested run to running with its approver; false when it was not requested. */
export function approveRun(db: Db, id: number, approvedBy: string, at: number): boolean {
  return (
    db
      .prepare("UPDATE action_runs SET status = 'running', approved_by = ?, started_at = ? WHERE id = ? AND status = 'requested'")
      .run(approvedBy, at, id).changes === 1
  );
}

export function finishRun(db: Db, id: number, outcome: { status: 'succeeded' | 'failed'; at: number; result?: Record<string, unknown>; error?: string }): boolean {
  return (
    db
      .prepare("UPDATE action_runs SET status = ?, finished_at = ?, result = ?, error = ? WHERE id = ? AND status = 'running'")
      .run(outcome.status, outcome.at, outcome.result ? JSON.stringify(outcome.result) : null, outcome.error ?? null, id).changes === 1
  );
}

/** Marks every run left `running` by a process that died as interrupted; returns them. */
export function interruptRunningRuns(db: Db, at: number): ActionRunRow[] {
  const records = db.prepare("SELECT * FROM action_runs WHERE status = 'running'").all() as ActionRunRecord[];
  db.prepare("UPDATE action_runs SET status = 'interrupted', finished_at = ?, error = 'interrupted: the bot stopped while the action ran' WHERE status = 'running'").run(at);
  return records.map(toRow);
}

/** Retires a succeeded run of a read-only action, so the action may run again. */
export function supersedeRun(db: Db, id: number): boolean {
  return db.prepare("UPDATE action_runs SET status = 'superseded' WHERE id = ? AND status = 'succeeded'").run(id).changes === 1;
}
