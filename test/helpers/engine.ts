import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';

import { AdjustableClock } from '../../src/bot/clock.ts';
import { createLogger, type Logger } from '../../src/bot/logger.ts';
import { ActionRegistry } from '../../src/runbooks/actions-registry.ts';
import { Engine, type EnginePolicy, type PagingConfig } from '../../src/runbooks/engine.ts';
import { loadRunbooks, type RunbookCatalog } from '../../src/runbooks/loader.ts';
import { openDatabase, type Db } from '../../src/store/db.ts';

/** 2026-03-02 14:17:00 UTC: a fixed start so times in assertions are stable. */
export const START = Date.UTC(2026, 2, 2, 14, 17, 0);

export interface LogCapture {
  lines: string[];
  entries(): Array<Record<string, unknown>>;
}

export function captureLogger(level = 'debug'): { logger: Logger; logs: LogCapture } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return {
    logger: createLogger(level, stream),
    logs: { lines, entries: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) },
  };
}

export function tempDir(prefix = 'runbook-bot-'): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface EngineHarness {
  engine: Engine;
  db: Db;
  clock: AdjustableClock;
  logs: LogCapture;
  runbooks: RunbookCatalog;
  dbPath: string;
  close(): void;
}

export function createEngineHarness(options: {
  policy?: Partial<EnginePolicy>;
  paging?: PagingConfig;
  actions?: ActionRegistry;
  runbooksDir?: string;
  dir?: string;
  /** Start the clock this far after START, as a bot restarted later would. */
  clockOffsetMs?: number;
} = {}): EngineHarness {
  const dir = options.dir ? { path: options.dir, remove: () => {} } : tempDir();
  const dbPath = join(dir.path, 'bot.sqlite3');
  const db = openDatabase(dbPath);
  const clock = new AdjustableClock(options.clockOffsetMs ?? 0, { now: () => START });
  const { logger, logs } = captureLogger();
  const runbooks = loadRunbooks(options.runbooksDir);
  const engine = new Engine({
    db,
    clock,
    logger,
    runbooks,
    actions: options.actions ?? new ActionRegistry(),
    policy: { respondersConfigured: true, requireSecondApprover: false, ...options.policy },
    paging: options.paging ?? { enabled: false, disabledReason: 'set PAGERDUTY_ROUTING_KEY' },
    onOutbox: () => {},
    onTimers: () => {},
  });
  return {
    engine,
    db,
    clock,
    logs,
    runbooks,
    dbPath,
    close: () => {
      db.close();
      dir.remove();
    },
  };
}

export const ALEX = { userId: 'U0SBXALEX', isResponder: true };
export const SAM = { userId: 'U0SBXSAM', isResponder: true };
export const GUEST = { userId: 'U0SBXGUEST', isResponder: false };
