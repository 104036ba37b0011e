import { afterEach, describe, expect, it } from 'vitest';

import { join } from 'node:path';

import { openDatabase } from '../src/store/db.ts';
import { CHANNEL, startTestBot } from './helpers/bot.ts';
import { START, createEngineHarness, tempDir, type EngineHarness } from './helpers/engine.ts';

const MINUTE = 60_000;

describe('accepted declarations', () => {
  const opened: EngineHarness[] = [];
  const folders: Array<ReturnType<typeof tempDir>> = [];
  const harness = (options: Parameters<typeof createEngineHarness>[0] = {}) => {
    const created = createEngineHarness(options);
    opened.push(created);
    return created;
  };

  afterEach(() => {
    for (const created of opened.splice(0)) created.db.close();
    for (const folder of folders.splice(0)) folder.remove();
  });

  /** Accepts a declaration in a process that then dies, and returns the process started after it. */
  const restartedAfterAccept = (downMs: number) => {
    const folder = tempDir();
    folders.push(folder);
    const before = harness({ dir: folder.path });
    before.engine.acceptDeclaration({ runbook: before.runbooks.find('secret-key')!, summary: 'Key pasted in a gist', channelId: 'C1', userId: 'U1' });
    before.db.close();
    opened.pop();
    return harness({ dir: folder.path, clockOffsetMs: downMs });
  };

  const count = (h: EngineHarness, sql: string) => (h.db.prepare(sql).get() as { n: number }).n;

  it('opens no incident before it is declared', () => {
    const h = harness();
    h.engine.acceptDeclaration({ runbook: h.runbooks.find('secret-key')!, summary: 'x', channelId: 'C1', userId: 'U1' });
    expect(count(h, 'SELECT count(*) AS n FROM incidents')).toBe(0);
  });

  it('declares an accepted declaration once', () => {
    const h = harness();
    const id = h.engine.acceptDeclaration({ runbook: h.runbooks.find('secret-key')!, summary: 'x', channelId: 'C1', userId: 'U1' });
    h.engine.declareAccepted(id);
    expect(h.engine.declareAccepted(id)).toBeUndefined();
  });

  it('leaves no accepted row once declared', () => {
    const h = harness();
    const id = h.engine.acceptDeclaration({ runbook: h.runbooks.find('secret-key')!, summary: 'x', channelId: 'C1', userId: 'U1' });
    h.engine.declareAccepted(id);
    expect(count(h, 'SELECT count(*) AS n FROM accepted_declarations')).toBe(0);
  });

  it('refuses an oversized summary before writing', () => {
    const h = harness();
    const accept = () => h.engine.acceptDeclaration({ runbook: h.runbooks.find('secret-key')!, summary: 'x'.repeat(9000), channelId: 'C1', userId: 'U1' });
    expect(accept).toThrow(/9000 characters long/);
  });

  it('writes nothing for an oversized summary', () => {
    const h = harness();
    try {
      h.engine.acceptDeclaration({ runbook: h.runbooks.find('secret-key')!, summary: 'x'.repeat(9000), channelId: 'C1', userId: 'U1' });
    } catch {
      // the refusal itself is checked above
    }
    expect(count(h, 'SELECT count(*) AS n FROM accepted_declarations')).toBe(0);
  });

  it('opens the incident after a restart', () => {
    const h = restartedAfterAccept(10 * MINUTE);
    h.engine.declareLeftoverAccepted();
    expect(count(h, "SELECT count(*) AS n FROM incidents WHERE status = 'open'")).toBe(1);
  });

  it('counts the incident from the command', () => {
    const h = restartedAfterAccept(10 * MINUTE);
    h.engine.declareLeftoverAccepted();
    expect(h.engine.listOpen()[0].declaredAt).toBe(START);
  });

  it('arms the deadline from the command', () => {
    const h = restartedAfterAccept(10 * MINUTE);
    h.engine.declareLeftoverAccepted();
    const deadline = h.db.prepare("SELECT due_at AS dueAt FROM timers WHERE kind = 'deadline' ORDER BY due_at LIMIT 1").get() as { dueAt: number };
    expect(deadline.dueAt).toBe(START + 15 * MINUTE);
  });

  it('opens it once across two restarts', () => {
    const h = restartedAfterAccept(MINUTE);
    h.engine.declareLeftoverAccepted();
    h.engine.declareLeftoverAccepted();
    expect(count(h, 'SELECT count(*) AS n FROM incidents')).toBe(1);
  });

  it('queues the incident message after a restart', () => {
    const h = restartedAfterAccept(MINUTE);
    h.engine.declareLeftoverAccepted();
    expect(count(h, "SELECT count(*) AS n FROM outbox WHERE kind = 'post_incident'")).toBe(1);
  });

  it('drops a declaration of a removed runbook', () => {
    const h = harness();
    h.db.prepare("INSERT INTO accepted_declarations (received_at, runbook_id, summary, channel_id, user_id) VALUES (?, 'gone', 'x', 'C1', 'U1')").run(START);
    h.engine.declareLeftoverAccepted();
    expect(count(h, 'SELECT count(*) AS n FROM accepted_declarations')).toBe(0);
  });

  it('logs a dropped declaration', () => {
    const h = harness();
    h.db.prepare("INSERT INTO accepted_declarations (received_at, runbook_id, summary, channel_id, user_id) VALUES (?, 'gone', 'x', 'C1', 'U1')").run(START);
    h.engine.declareLeftoverAccepted();
    expect(h.logs.entries().some((entry) => entry.msg === 'accepted declaration names an unknown runbook; dropped' && entry.runbookId === 'gone')).toBe(true);
  });

  it('dropped declaration notifies channel', () => {
    const h = harness();
    h.db.prepare("INSERT INTO accepted_declarations (received_at, runbook_id, summary, channel_id, user_id) VALUES (?, 'gone', 'x', 'C1', 'U1')").run(START);
    h.engine.declareLeftoverAccepted();
    const post = h.db.prepare("SELECT payload FROM outbox WHERE kind = 'channel_post'").get() as { payload: string };
    expect(post.payload).toContain('has no runbook \\"gone\\"');
  });

  it('audits a dropped declaration', () => {
    const h = harness();
    h.db.prepare("INSERT INTO accepted_declarations (received_at, runbook_id, summary, channel_id, user_id) VALUES (?, 'gone', 'x', 'C1', 'U1')").run(START);
    h.engine.declareLeftoverAccepted();
    expect(count(h, "SELECT count(*) AS n FROM audit_log WHERE event = 'declaration.dropped'")).toBe(1);
  });

  it('answers a second declaration as a duplicate', () => {
    const h = harness();
    const runbook = h.runbooks.find('secret-key')!;
    const first = h.engine.acceptDeclaration({ runbook, summary: 'x', channelId: 'C1', userId: 'U1' });
    const second = h.engine.acceptDeclaration({ runbook, summary: 'y', channelId: 'C1', userId: 'U2' });
    h.engine.declareAccepted(first);
    expect(h.engine.declareAccepted(second)?.kind).toBe('duplicate');
  });

  it('posts a leftover declaration when the bot starts', async () => {
    const folder = tempDir();
    folders.push(folder);
    const db = openDatabase(join(folder.path, 'bot.sqlite3'));
    db.prepare("INSERT INTO accepted_declarations (received_at, runbook_id, summary, channel_id, user_id) VALUES (?, 'secret-key', 'Key pasted', ?, 'U0SBXALEX')").run(Date.now(), CHANNEL);
    db.close();
    const bot = await startTestBot({ dir: folder.path });
    try {
      await bot.settle();
      expect(bot.messages().some((message) => message.channel === CHANNEL && (message.text ?? '').includes('(#1)'))).toBe(true);
    } finally {
      await bot.close();
    }
  });
});
