import { BOT_NODE_ARGS } from '../scripts/node-args.ts';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

import Database from 'better-sqlite3';

import { startChild, type BenchChild } from './child-process.ts';

export interface OutboxState {
  openIncidents: number;
  /** Open incidents whose channel message has no ts yet. */
  unposted: number;
  pending: number;
  failed: number;
}

export interface BenchBot {
  child: BenchChild;
  signingSecret: string;
  dbPath: string;
  /** Reads the bot's outbox and incidents from its SQLite file, read-only. */
  outboxState(): OutboxState;
  /** Waits until every open incident is posted and no outbox message is pending, or until `timeoutMs`. */
  settle(timeoutMs: number): Promise<OutboxState & { waitedMs: number }>;
  /** Moves the bot's clock forward through POST /admin/clock, which needs `clockControl`. */
  advanceClock(ms: number): Promise<void>;
  stop(): Promise<void>;
}

const POLL_MS = 100;

/**
 * Starts the compiled bot (`dist/src/bot/main.js`, as `npm start` runs it) in HTTP mode on 127.0.0.1 port 0, with its own
 * SQLite file in `dir` and its Web API calls sent to `slackApiUrl`. Paging is
 * off (no PAGERDUTY_ROUTING_KEY), so a declared incident makes Slack calls only.
 */
export interface BenchBotOptions {
  dir: string;
  slackApiUrl: string;
  botToken: string;
  nodeArgs?: string[];
  /** Serves POST /admin/clock (ALLOW_CLOCK_CONTROL=true), so the bench can move the bot's clock. */
  clockControl?: boolean;
}

export async function startBenchBot(options: BenchBotOptions): Promise<BenchBot> {
  const signingSecret = randomBytes(16).toString('hex');
  const dbPath = join(options.dir, 'bot.sqlite3');
  const child = await startChild({
    name: 'runbook-bot',
    script: 'dist/src/bot/main.js',
    // The same V8 flag as `npm start` and the Dockerfile.
    nodeArgs: [...BOT_NODE_ARGS, ...(options.nodeArgs ?? [])],
    env: {
      SLACK_BOT_TOKEN: options.botToken,
      SLACK_SIGNING_SECRET: signingSecret,
      SLACK_API_URL: options.slackApiUrl,
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_PATH: dbPath,
      RESPONDERS: 'U0BENCHALEX',
      LOG_LEVEL: 'info',
      ...(options.clockControl ? { ALLOW_CLOCK_CONTROL: 'true' } : {}),
    },
    readyMessage: 'bot started',
  });

  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  const count = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
  const outboxState = (): OutboxState => ({
    openIncidents: count("SELECT count(*) AS n FROM incidents WHERE status = 'open'"),
    unposted: count("SELECT count(*) AS n FROM incidents WHERE status = 'open' AND message_ts IS NULL"),
    pending: count("SELECT count(*) AS n FROM outbox WHERE status = 'pending'"),
    failed: count("SELECT count(*) AS n FROM outbox WHERE status = 'failed'"),
  });

  const settle = async (timeoutMs: number) => {
    const started = performance.now();
    for (;;) {
      const state = outboxState();
      const waitedMs = performance.now() - started;
      if ((state.pending === 0 && state.unposted === 0) || waitedMs > timeoutMs) return { ...state, waitedMs };
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  };

  return {
    child,
    signingSecret,
    dbPath,
    outboxState,
    settle,
    advanceClock: async (ms: number) => {
      const response = await fetch(`http://127.0.0.1:${child.port}/admin/clock`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ advanceMs: ms }),
      });
      if (response.status !== 200) throw new Error(`POST /admin/clock failed with HTTP ${response.status}: ${await response.text()}`);
    },
    stop: async () => {
      db.close();
      await child.stop();
    },
  };
}
