import type { Db } from './db.ts';

export interface AuditEntry {
  id: number;
  incidentId: number | null;
  at: number;
  actor: string;
  event: string;
  stepId: string | null;
  details: Record<string, unknown>;
}

/**
 * Appends an audit entry. The table refuses updates and deletes, so the log
 * is append-only. `details` must hold no secret: fingerprints only.
 */
export function appendAudit(
  db: Db,
  entry: { incidentId: number | null; at: number; actor: string; event: string; stepId?: string | null; details?: Record<string, unknown> },
): number {
  const result = db
    .prepare('INSERT INTO audit_log (incident_id, at, actor, event, step_id, details) VALUES (?, ?, ?, ?, ?, ?)')
    .run(entry.incidentId, entry.at, entry.actor, entry.event, entry.stepId ?? null, JSON.stringify(entry.details ?? {}));
  return Number(result.lastInsertRowid);
}

export function listAudit(db: Db, incidentId: number): AuditEntry[] {
  const rows = db.prepare('SELECT * FROM audit_log WHERE incident_id = ? ORDER BY id').all(incidentId) as Array<{
    id: number;
    incident_id: number | null;
    at: number;
    actor: string;
    event: string;
    step_id: string | null;
    details: string;
  }>;
  return rows.map((row) => ({
    id: row.id,
    incidentId: row.incident_id,
    at: row.at,
    actor: row.actor,
    event: row.event,
    stepId: row.step_id,
    details: JSON.parse(row.details) as Record<string, unknown>,
  }));
}
