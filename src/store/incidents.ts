import type { Db } from './db.ts';

export type IncidentStatus = 'open' | 'resolved' | 'cancelled';
export type StepStatus = 'pending' | 'done' | 'skipped';

export interface IncidentRow {
  id: number;
  runbookId: string;
  title: string;
  severity: string;
  summary: string;
  channelId: string;
  declaredBy: string;
  leadUserId: string;
  status: IncidentStatus;
  declaredAt: number;
  resolvedAt: number | null;
  messageTs: string | null;
  dedupKey: string;
  origin: string;
  countdownLabel: string | null;
  metadata: Record<string, unknown>;
}

export interface StepRow {
  incidentId: number;
  stepId: string;
  position: number;
  status: StepStatus;
  doneBy: string | null;
  doneAt: number | null;
  skipReason: string | null;
  assignee: string | null;
  dueAt: number | null;
  deadlineMissed: boolean;
  watchEndsAt: number | null;
  note: string | null;
}

interface IncidentRecord {
  id: number;
  runbook_id: string;
  title: string;
  severity: string;
  summary: string;
  channel_id: string;
  declared_by: string;
  lead_user_id: string;
  status: IncidentStatus;
  declared_at: number;
  resolved_at: number | null;
  message_ts: string | null;
  dedup_key: string;
  origin: string;
  countdown_label: string | null;
  metadata: string;
}

interface StepRecord {
  incident_id: number;
  step_id: string;
  position: number;
  status: StepStatus;
  done_by: string | null;
  done_at: number | null;
  skip_reason: string | null;
  assignee: string | null;
  due_at: number | null;
  deadline_missed: number;
  watch_ends_at: number | null;
  note: string | null;
}

function toIncident(record: IncidentRecord): IncidentRow {
  return {
    id: record.id,
    runbookId: record.runbook_id,
    title: record.title,
    severity: record.severity,
    summary: record.summary,
    channelId: record.channel_id,
    declaredBy: record.declared_by,
    leadUserId: record.lead_user_id,
    status: record.status,
    declaredAt: record.declared_at,
    resolvedAt: record.resolved_at,
    messageTs: record.message_ts,
    dedupKey: record.dedup_key,
    origin: record.origin,
    countdownLabel: record.countdown_label,
    metadata: JSON.parse(record.metadata) as Record<string, unknown>,
  };
}

function toStep(record: StepRecord): StepRow {
  return {
    incidentId: record.incident_id,
    stepId: record.step_id,
    position: record.position,
    status: record.status,
    doneBy: record.done_by,
    doneAt: record.done_at,
    skipReason: record.skip_reason,
    assignee: record.assignee,
    dueAt: record.due_at,
    deadlineMissed: record.deadline_missed === 1,
    watchEndsAt: record.watch_ends_at,
    note: record.note,
  };
}

export interface NewIncident {
  runbookId: string;
  title: string;
  severity: string;
  summary: string;
  channelId: string;
  declaredBy: string;
  declaredAt: number;
  origin: string;
  metadata?: Record<string, unknown>;
  steps: Array<{ stepId: string; dueAt: number | null; watchEndsAt: number | null }>;
}

/** Inserts an incident and its steps; the dedup key is derived from the new row id. */
export function insertIncident(db: Db, incident: NewIncident): number {
  const result = db
    .prepare(
      `INSERT INTO incidents (runbook_id, title, severity, summary, channel_id, declared_by,
         lead_user_id, status, declared_at, dedup_key, origin, metadata)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?, ?, ?, ?)`,
    )
    .run(
      incident.runbookId,
      incident.title,
      incident.severity,
      incident.summary,
      incident.channelId,
      incident.declaredBy,
      incident.declaredBy,
      incident.declaredAt,
      // Placeholder that is unique until the id is known; replaced below.
      `pending-${incident.declaredAt}-${Math.random()}`,
      incident.origin,
      JSON.stringify(incident.metadata ?? {}),
    );
  const id = Number(result.lastInsertRowid);
  db.prepare('UPDATE incidents SET dedup_key = ? WHERE id = ?').run(dedupKeyFor(id, incident.declaredAt), id);

  const insertStep = db.prepare(
    `INSERT INTO steps (incident_id, step_id, position, status, due_at, watch_ends_at)
     VALUES (?, ?, ?, 'pending', ?, ?)`,
  );
  incident.steps.forEach((step, position) => insertStep.run(id, step.stepId, position, step.dueAt, step.watchEndsAt));
  return id;
}

/**
 * Builds the PagerDuty dedup key of an incident: its id plus its declaration time,
 * so a database that was reset never reuses the key of an older incident.
 */
export function dedupKeyFor(id: number, declaredAt: number): string {
  return `runbook-bot-incident-${id}-${declaredAt.toString(36)}`;
}

export function getIncident(db: Db, id: number): IncidentRow | undefined {
  const record = db.prepare('SELECT * FROM incidents WHERE id = ?').get(id) as IncidentRecord | undefined;
  return record ? toIncident(record) : undefined;
}

export function listOpenIncidents(db: Db, channelId?: string): IncidentRow[] {
  const records = (
    channelId
      ? db.prepare("SELECT * FROM incidents WHERE status = 'open' AND channel_id = ? ORDER BY id").all(channelId)
      : db.prepare("SELECT * FROM incidents WHERE status = 'open' ORDER BY id").all()
  ) as IncidentRecord[];
  return records.map(toIncident);
}

export function findOpenIncident(db: Db, channelId: string, runbookId: string): IncidentRow | undefined {
  const record = db
    .prepare("SELECT * FROM incidents WHERE status = 'open' AND channel_id = ? AND runbook_id = ? ORDER BY id DESC LIMIT 1")
    .get(channelId, runbookId) as IncidentRecord | undefined;
  return record ? toIncident(record) : undefined;
}

export function listSteps(db: Db, incidentId: number): StepRow[] {
  const records = db.prepare('SELECT * FROM steps WHERE incident_id = ? ORDER BY position').all(incidentId) as StepRecord[];
  return records.map(toStep);
}

export function getStep(db: Db, incidentId: number, stepId: string): StepRow | undefined {
  const record = db
    .prepare('SELECT * FROM steps WHERE incident_id = ? AND step_id = ?')
    .get(incidentId, stepId) as StepRecord | undefined;
  return record ? toStep(record) : undefined;
}

export function setStepStatus(
  db: Db,
  incidentId: number,
  stepId: string,
  change: { status: StepStatus; by: string | null; at: number | null; skipReason?: string | null },
): void {
  db.prepare('UPDATE steps SET status = ?, done_by = ?, done_at = ?, skip_reason = ? WHERE incident_id = ? AND step_id = ?').run(
    change.status,
    change.by,
    change.at,
    change.skipReason ?? null,
    incidentId,
    stepId,
  );
}

export function setStepAssignee(db: Db, incidentId: number, stepId: string, assignee: string | null): void {
  db.prepare('UPDATE steps SET assignee = ? WHERE incident_id = ? AND step_id = ?').run(assignee, incidentId, stepId);
}

export function setStepNote(db: Db, incidentId: number, stepId: string, note: string | null): void {
  db.prepare('UPDATE steps SET note = ? WHERE incident_id = ? AND step_id = ?').run(note, incidentId, stepId);
}

export function markDeadlineMissed(db: Db, incidentId: number, stepId: string): void {
  db.prepare('UPDATE steps SET deadline_missed = 1 WHERE incident_id = ? AND step_id = ?').run(incidentId, stepId);
}

export function setLead(db: Db, incidentId: number, userId: string): void {
  db.prepare('UPDATE incidents SET lead_user_id = ? WHERE id = ?').run(userId, incidentId);
}

export function closeIncident(db: Db, incidentId: number, status: 'resolved' | 'cancelled', at: number): boolean {
  const result = db
    .prepare("UPDATE incidents SET status = ?, resolved_at = ? WHERE id = ? AND status = 'open'")
    .run(status, at, incidentId);
  return result.changes === 1;
}

export function setMessageTs(db: Db, incidentId: number, ts: string): void {
  db.prepare('UPDATE incidents SET message_ts = ? WHERE id = ?').run(ts, incidentId);
}

export function setCountdownLabel(db: Db, incidentId: number, label: string | null): void {
  db.prepare('UPDATE incidents SET countdown_label = ? WHERE id = ?').run(label, incidentId);
}

export function countOpenIncidents(db: Db): number {
  return (db.prepare("SELECT count(*) AS n FROM incidents WHERE status = 'open'").get() as { n: number }).n;
}

export function getMessageHash(db: Db, incidentId: number): string | null {
  const row = db.prepare('SELECT message_hash FROM incidents WHERE id = ?').get(incidentId) as { message_hash: string | null } | undefined;
  return row?.message_hash ?? null;
}

export function setMessageHash(db: Db, incidentId: number, hash: string): void {
  db.prepare('UPDATE incidents SET message_hash = ? WHERE id = ?').run(hash, incidentId);
}

export interface ChecklistMessage {
  chunk: number;
  ts: string | null;
  renderHash: string | null;
}

export function listChecklistMessages(db: Db, incidentId: number): ChecklistMessage[] {
  const rows = db
    .prepare('SELECT chunk, ts, render_hash FROM checklist_messages WHERE incident_id = ? ORDER BY chunk')
    .all(incidentId) as Array<{ chunk: number; ts: string | null; render_hash: string | null }>;
  return rows.map((row) => ({ chunk: row.chunk, ts: row.ts, renderHash: row.render_hash }));
}

export function saveChecklistMessage(db: Db, incidentId: number, chunk: number, ts: string, renderHash: string): void {
  db.prepare(
    `INSERT INTO checklist_messages (incident_id, chunk, ts, render_hash) VALUES (?, ?, ?, ?)
     ON CONFLICT (incident_id, chunk) DO UPDATE SET ts = excluded.ts, render_hash = excluded.render_hash`,
  ).run(incidentId, chunk, ts, renderHash);
}

/** Finds the incident declared with this idempotency key, if any. */
export function findByIdempotencyKey(db: Db, key: string): IncidentRow | undefined {
  const record = db
    .prepare("SELECT * FROM incidents WHERE json_extract(metadata, '$.idempotencyKey') = ? ORDER BY id LIMIT 1")
    .get(key) as IncidentRecord | undefined;
  return record ? toIncident(record) : undefined;
}
