import type { Db } from './db.ts';

/** Declaration from a slash command, kept until its incident is written. */
export interface AcceptedDeclaration {
  id: number;
  receivedAt: number;
  runbookId: string;
  summary: string;
  channelId: string;
  userId: string;
}

interface Row {
  id: number;
  received_at: number;
  runbook_id: string;
  summary: string;
  channel_id: string;
  user_id: string;
}

const fromRow = (row: Row): AcceptedDeclaration => ({
  id: row.id,
  receivedAt: row.received_at,
  runbookId: row.runbook_id,
  summary: row.summary,
  channelId: row.channel_id,
  userId: row.user_id,
});

export function insertAccepted(db: Db, declaration: Omit<AcceptedDeclaration, 'id'>): number {
  const result = db
    .prepare('INSERT INTO accepted_declarations (received_at, runbook_id, summary, channel_id, user_id) VALUES (?, ?, ?, ?, ?)')
    .run(declaration.receivedAt, declaration.runbookId, declaration.summary, declaration.channelId, declaration.userId);
  return Number(result.lastInsertRowid);
}

/** Deletes and returns one accepted declaration, or undefined when another caller took it first. */
export function takeAccepted(db: Db, id: number): AcceptedDeclaration | undefined {
  const row = db.prepare('DELETE FROM accepted_declarations WHERE id = ? RETURNING *').get(id) as Row | undefined;
  return row ? fromRow(row) : undefined;
}

/** Ids of every declaration still waiting, oldest first. */
export function listAcceptedIds(db: Db): number[] {
  return (db.prepare('SELECT id FROM accepted_declarations ORDER BY id').all() as Array<{ id: number }>).map((row) => row.id);
}
