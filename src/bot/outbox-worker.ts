import type { Db } from '../store/db.ts';
import * as outbox from '../store/outbox.ts';
import type { Clock } from './clock.ts';
import type { Logger } from './logger.ts';
import { scrubText } from './redact.ts';

export type DeliveryResult =
  | { kind: 'delivered'; result?: Record<string, unknown> }
  | { kind: 'retry'; error: string; retryAfterMs?: number }
  | { kind: 'failed'; error: string };

export type Deliverer = (message: outbox.OutboxRow) => Promise<DeliveryResult>;

/** Queue heads delivered at once; Slack allows about one post a second per channel anyway. */
const MAX_CONCURRENT_DELIVERIES = 8;

export interface OutboxWorkerOptions {
  db: Db;
  clock: Clock;
  logger: Logger;
  deliverers: Partial<Record<outbox.OutboxTarget, Deliverer>>;
  /** Called after each attempt, so the engine can tell the thread (page queued, page landed). */
  onAttempt?: (message: outbox.OutboxRow, result: DeliveryResult) => void;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /**
   * Resolves when Slack's requests pause. Each delivery pass waits for it, so
   * acknowledgements go out before rendering and posting.
   */
  quiet?: () => Promise<void>;
  /** How often to look for due messages when nothing kicks the worker. */
  pollMs?: number;
}

/**
 * Delivers outbox messages: each (incident, target) queue in order, one
 * message at a time, with exponential backoff and jitter on retryable
 * failures. State lives in SQLite, so a restart resumes where it stopped.
 */
export class OutboxWorker {
  private running = false;
  private kickScheduled = false;
  private again = false;
  private stopped = true;
  private timer?: NodeJS.Timeout;
  private poller?: NodeJS.Timeout;
  private current?: Promise<void>;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(private readonly options: OutboxWorkerOptions) {
    this.baseDelayMs = options.baseDelayMs ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 5 * 60_000;
  }

  start(): void {
    this.stopped = false;
    const resumed = outbox.resetInFlight(this.options.db);
    this.options.logger.info({ pending: outbox.countPending(this.options.db), resumed }, 'outbox worker started');
    this.poller = setInterval(() => this.kick(), this.options.pollMs ?? 5_000);
    this.poller.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.poller);
    clearTimeout(this.timer);
    await this.current;
    this.options.logger.info({ pending: outbox.countPending(this.options.db) }, 'outbox worker stopped');
  }

  /** Delivers whatever is due once requests pause. Calls made while a pass runs start one more pass. */
  kick(): void {
    if (this.stopped || this.kickScheduled) return;
    this.kickScheduled = true;
    void this.quiet().then(() => {
      this.kickScheduled = false;
      this.kickNow();
    });
  }

  private quiet(): Promise<void> {
    return this.options.quiet?.() ?? Promise.resolve();
  }

  private kickNow(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.current = this.drain().finally(() => {
      this.running = false;
      if (this.again && !this.stopped) {
        this.again = false;
        this.kickNow();
      } else {
        this.armNext();
      }
    });
  }

  /** Resolves when nothing is due and no pass runs (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.running || this.again || this.kickScheduled) {
      if (this.current && this.running) await this.current;
      else await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  private async drain(): Promise<void> {
    for (let pass = 0; ; pass++) {
      if (pass > 0) await this.quiet();
      if (this.stopped) return;
      const due = outbox.listDeliverable(this.options.db, this.options.clock.now(), MAX_CONCURRENT_DELIVERIES);
      if (due.length === 0) return;
      // Queues are independent: deliver their heads concurrently, a few at a
      // time, which keeps memory flat when many incidents change at once.
      await Promise.all(due.map((message) => this.deliver(message)));
    }
  }

  private armNext(): void {
    clearTimeout(this.timer);
    if (this.stopped) return;
    const next = outbox.nextDueAt(this.options.db);
    if (next === undefined) return;
    const delay = Math.min(Math.max(0, next - this.options.clock.now()), 60_000);
    this.timer = setTimeout(() => this.kick(), delay);
    this.timer.unref();
  }

  private async deliver(message: outbox.OutboxRow): Promise<void> {
    const { db, clock, logger } = this.options;
    const deliverer = this.options.deliverers[message.target];
    let result: DeliveryResult;
    outbox.markInFlight(db, message.id);
    if (!deliverer) {
      result = { kind: 'failed', error: `no deliverer for ${message.target} is configured` };
    } else {
      try {
        result = await deliverer(message);
      } catch (error) {
        result = { kind: 'retry', error: scrubText(error instanceof Error ? error.message : String(error)) };
      }
    }
    const fields = { outboxId: message.id, incidentId: message.incidentId, target: message.target, kind: message.kind, attempt: message.attempts + 1 };
    const now = clock.now();
    if (result.kind === 'delivered') {
      outbox.markDelivered(db, message.id, now, result.result);
      logger.debug(fields, 'outbox message delivered');
    } else if (result.kind === 'failed') {
      outbox.markFailed(db, message.id, result.error);
      logger.error({ ...fields, error: result.error }, 'outbox message failed permanently');
    } else {
      const delay = Math.max(100, result.retryAfterMs ?? this.backoff(message.attempts));
      outbox.scheduleRetry(db, message.id, now + delay, result.error);
      logger.warn({ ...fields, error: result.error, retryInMs: delay }, 'outbox delivery failed; retrying');
    }
    try {
      this.options.onAttempt?.(message, result);
    } catch (error) {
      logger.error({ ...fields, err: error }, 'outbox attempt hook failed');
    }
  }

  /** Exponential backoff with jitter: between half and all of base * 2^attempts, capped. */
  private backoff(attempts: number): number {
    const ceiling = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(attempts, 20));
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }
}
