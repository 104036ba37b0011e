import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import Database from 'better-sqlite3';

/**
 * One message in the sandbox workspace's channel history. A message posted by
 * the bot has both `userId` (the bot user) and `botId`, as in Slack.
 */
export interface StoredMessage {
  channel: string;
  ts: string;
  /** The parent's ts for a thread reply; null for a top-level message. */
  threadTs: string | null;
  userId: string | null;
  botId: string | null;
  text: string;
  blocks: unknown[] | null;
  /** The one user the message is shown to; null for a message shown to everyone. */
  ephemeralTo: string | null;
  /** A thread reply that is also shown in the channel. */
  replyBroadcast: boolean;
  /** Slack message metadata (`event_type`, `event_payload`), kept as sent. */
  metadata: unknown;
  /** Milliseconds since the epoch on the sandbox clock. */
  createdAt: number;
  updatedAt: number | null;
}

export interface MessageChanges {
  text: string;
  blocks: unknown[] | null;
  metadata?: unknown;
  updatedAt: number;
}

interface MessageRow {
  channel: string;
  ts: string;
  thread_ts: string | null;
  user_id: string | null;
  bot_id: string | null;
  text: string;
  blocks: string | null;
  ephemeral_to: string | null;
  reply_broadcast: number;
  metadata: string | null;
  created_at: number;
  updated_at: number | null;
}

// The sandbox keeps its channel in its own file, apart from the bot's
// database, so this module creates its table instead of using migrations.
const SCHEMA = `
  CREATE TABLE IF NOT EXISTS sandbox_messages (
    channel TEXT NOT NULL,
    ts TEXT NOT NULL,
    thread_ts TEXT,
    user_id TEXT,
    bot_id TEXT,
    text TEXT NOT NULL DEFAULT '',
    blocks TEXT,
    ephemeral_to TEXT,
    reply_broadcast INTEGER NOT NULL DEFAULT 0,
    metadata TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER,
    PRIMARY KEY (channel, ts)
  );
  CREATE INDEX IF NOT EXISTS sandbox_messages_by_thread ON sandbox_messages (channel, thread_ts);
`;

/** The sandbox workspace's channel history in a SQLite file of its own. */
export class SandboxMessageStore {
  private readonly db: Database.Database;
  private readonly insertStatement: Database.Statement;
  private readonly updateStatement: Database.Statement;
  private readonly deleteStatement: Database.Statement;
  private readonly getStatement: Database.Statement;
  private readonly listStatement: Database.Statement;
  private readonly maxTsStatement: Database.Statement;

  /** Opens (or creates) the store at `path`; `':memory:'` keeps it in memory. */
  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path, { timeout: 5000 });
    this.db.pragma('journal_mode = WAL');
    this.db.exec(SCHEMA);

    this.insertStatement = this.db.prepare(
      `INSERT INTO sandbox_messages (channel, ts, thread_ts, user_id, bot_id, text, blocks,
         ephemeral_to, reply_broadcast, metadata, created_at, updated_at)
       VALUES (@channel, @ts, @thread_ts, @user_id, @bot_id, @text, @blocks,
         @ephemeral_to, @reply_broadcast, @metadata, @created_at, @updated_at)`,
    );
    this.updateStatement = this.db.prepare(
      `UPDATE sandbox_messages
       SET text = @text, blocks = @blocks, metadata = COALESCE(@metadata, metadata),
         updated_at = @updated_at
       WHERE channel = @channel AND ts = @ts`,
    );
    this.deleteStatement = this.db.prepare(
      'DELETE FROM sandbox_messages WHERE channel = ? AND ts = ?',
    );
    this.getStatement = this.db.prepare(
      'SELECT * FROM sandbox_messages WHERE channel = ? AND ts = ?',
    );
    // A ts has ten digits of seconds until the year 2286, so text order is time order.
    this.listStatement = this.db.prepare('SELECT * FROM sandbox_messages ORDER BY ts, channel');
    this.maxTsStatement = this.db.prepare('SELECT MAX(ts) AS ts FROM sandbox_messages');
  }

  insert(message: StoredMessage): void {
    this.insertStatement.run(toRow(message));
  }

  /** Replaces the text and blocks of a message; returns false when it does not exist. */
  update(channel: string, ts: string, changes: MessageChanges): boolean {
    const result = this.updateStatement.run({
      channel,
      ts,
      text: changes.text,
      blocks: changes.blocks === null ? null : JSON.stringify(changes.blocks),
      metadata: changes.metadata === undefined ? null : JSON.stringify(changes.metadata),
      updated_at: changes.updatedAt,
    });
    return result.changes === 1;
  }

  /** Deletes a message; returns false when it does not exist. */
  remove(channel: string, ts: string): boolean {
    return this.deleteStatement.run(channel, ts).changes === 1;
  }

  get(channel: string, ts: string): StoredMessage | undefined {
    const row = this.getStatement.get(channel, ts) as MessageRow | undefined;
    return row ? fromRow(row) : undefined;
  }

  /** Returns every message of every channel, oldest first. */
  list(): StoredMessage[] {
    return (this.listStatement.all() as MessageRow[]).map(fromRow);
  }

  /** Returns the greatest ts stored, so a restarted sandbox keeps issuing larger ones. */
  maxTs(): string | null {
    const row = this.maxTsStatement.get() as { ts: string | null };
    return row.ts;
  }

  close(): void {
    this.db.close();
  }
}

function toRow(message: StoredMessage): MessageRow {
  return {
    channel: message.channel,
    ts: message.ts,
    thread_ts: message.threadTs,
    user_id: message.userId,
    bot_id: message.botId,
    text: message.text,
    blocks: message.blocks === null ? null : JSON.stringify(message.blocks),
    ephemeral_to: message.ephemeralTo,
    reply_broadcast: message.replyBroadcast ? 1 : 0,
    metadata:
      message.metadata === undefined || message.metadata === null
        ? null
        : JSON.stringify(message.metadata),
    created_at: message.createdAt,
    updated_at: message.updatedAt,
  };
}

function fromRow(row: MessageRow): StoredMessage {
  return {
    channel: row.channel,
    ts: row.ts,
    threadTs: row.thread_ts,
    userId: row.user_id,
    botId: row.bot_id,
    text: row.text,
    blocks: row.blocks === null ? null : (JSON.parse(row.blocks) as unknown[]),
    ephemeralTo: row.ephemeral_to,
    replyBroadcast: row.reply_broadcast === 1,
    metadata: row.metadata === null ? null : (JSON.parse(row.metadata) as unknown),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
