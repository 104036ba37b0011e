import type { Db } from '../store/db.ts';
import { listPendingTimers, listPendingTimersAfter, maxTimerId, type TimerRow } from '../store/timers.ts';
import type { Clock } from './clock.ts';
import type { Logger } from './logger.ts';

export interface TimerSchedulerOptions {
  db: Db;
  clock: Clock;
  logger: Logger;
  fire: (timerId: number) => void;
  /** Timers due within this window are armed with setTimeout; later ones wait for a scan. */
  windowMs?: number;
  scanEveryMs?: number;
}

/**
 * Arms the stored timers. Only timers due within the window get a
 * setTimeout, which cannot wait longer than about 24.8 days; the periodic
 * scan picks up the rest as they come near. A timer that is already due
 * fires at once, and the engine marks it late.
 */
export class TimerScheduler {
  private readonly armed = new Map<number, NodeJS.Timeout>();
  private lastSeenId = 0;
  private scanner?: NodeJS.Timeout;
  private readonly windowMs: number;

  constructor(private readonly options: TimerSchedulerOptions) {
    this.windowMs = options.windowMs ?? 10 * 60_000;
  }

  start(): void {
    const overdue = listPendingTimers(this.options.db, this.options.clock.now()).length;
    this.options.logger.info({ overdue }, 'timer scheduler started');
    this.scan();
    this.scanner = setInterval(() => this.scan(), this.options.scanEveryMs ?? 30_000);
    this.scanner.unref();
  }

  stop(): void {
    clearInterval(this.scanner);
    for (const handle of this.armed.values()) clearTimeout(handle);
    this.armed.clear();
    this.options.logger.info('timer scheduler stopped');
  }

  /** Re-arms every timer, for example after the clock moved. */
  rearm(): void {
    for (const handle of this.armed.values()) clearTimeout(handle);
    this.armed.clear();
    this.scan();
  }

  /** Arms every pending timer due within the window; the periodic safety net. */
  scan(): void {
    const now = this.options.clock.now();
    this.lastSeenId = maxTimerId(this.options.db);
    for (const timer of listPendingTimers(this.options.db, now + this.windowMs)) this.arm(timer, now);
  }

  /**
   * Arms only timers added since the last look. Called after each commit, so
   * its cost does not grow with the number of open incidents.
   */
  scanNew(): void {
    const now = this.options.clock.now();
    for (const timer of listPendingTimersAfter(this.options.db, this.lastSeenId, now + this.windowMs)) {
      this.lastSeenId = Math.max(this.lastSeenId, timer.id);
      this.arm(timer, now);
    }
    this.lastSeenId = Math.max(this.lastSeenId, maxTimerId(this.options.db));
  }

  private arm(timer: TimerRow, now: number): void {
    if (this.armed.has(timer.id)) return;
    const delay = Math.max(0, timer.dueAt - now);
    const handle = setTimeout(() => this.fire(timer.id), delay);
    this.armed.set(timer.id, handle);
  }

  get armedCount(): number {
    return this.armed.size;
  }

  private fire(timerId: number): void {
    this.armed.delete(timerId);
    try {
      this.options.fire(timerId);
    } catch (error) {
      this.options.logger.error({ timerId, err: error }, 'timer failed to fire');
    }
  }
}
