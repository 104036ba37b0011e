import type { Db } from './db.ts';

export interface WebhookEventRow {
  id: number;
  source: string;
  receivedAt: number;
  resource: string | null;
  alert: string | null;
  matchedRunbook: string | null;
  summary: Record<string, unknown>;
}

/** Records a received webhook: its classification only, never the raw body. */
export function recordWebhookEvent(
  db: Db,
  event: { source: string; receivedAt: number; resource: string | null; alert: string | null; matchedRunbook: string | null; summary: Record<string, unknown>; requestId?: string },
): number {
  const result = db
    .prepare('INSERT INTO webhook_events (source, received_at, resource, alert, matched_runbook, summary, request_id) VALUES (?, ?, ?, ?, ?, ?, ?)')
    .run(event.source, event.receivedAt, event.resource, event.alert, event.matchedRunbook, JSON.stringify(event.summary), event.requestId ?? null);
  return Number(result.lastInsertRowid);
}

/** Finds the id of a webhook already recorded with this request id, if any. */
export function findWebhookEvent(db: Db, source: string, requestId: string): number | undefined {
  const row = db.prepare('SELECT id FROM webhook_events WHERE source = ? AND request_id = ?').get(source, requestId) as { id: number } | undefined;
  return row?.id;
}

export function listWebhookEvents(db: Db, limit = 50): WebhookEventRow[] {
  const rows = db.prepare('SELECT * FROM webhook_events ORDER BY id DESC LIMIT ?').all(limit) as Array<{
    id: number;
    source: string;
    received_at: number;
    resource: string | null;
    alert: string | null;
    matched_runbook: string | null;
    summary: string;
  }>;
  return rows.map((row) => ({
    id: row.id,
    source: row.source,
    receivedAt: row.received_at,
    resource: row.resource,
    alert: row.alert,
    matchedRunbook: row.matched_runbook,
    summary: JSON.parse(row.summary) as Record<string, unknown>,
  }));
}
