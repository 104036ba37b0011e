import cron, { type ScheduledTask } from 'node-cron';

import { finishSlot, claimSlot, lastSlot, type SlotRow } from '../store/schedule-slots.ts';
import { getSetting, setSetting } from '../store/settings.ts';
import type { Db } from '../store/db.ts';
import type { Clock } from './clock.ts';
import {
  latestSlotAtOrBefore,
  nextSlotAfter,
  parseCronFields,
  type CronFields,
  type Slot,
} from './cron-slots.ts';
import type { Logger } from './logger.ts';
import { scrubText } from './redact.ts';

export { rotationReminderDue, type ReminderDecision } from './rotation-reminder.ts';
export { slotsBetween, parseCronFields, type Slot } from './cron-slots.ts';

/** The bot's schedules, with the variable that overrides each expression. */
export const BOT_SCHEDULES = [
  { name: 'backup', defaultCron: '0 2 * * *', variable: 'BACKUP_CRON' },
  { name: 'restore-test', defaultCron: '0 9 1 * *' },
  { name: 'security-audit', defaultCron: '0 9 1 * *' },
  { name: 'rotation-age', defaultCron: '0 9 * * *' },
] as const;

/** A run that was claimed for this process, handed to the job. */
export interface SlotRun {
  /** `backup@2026-03-29T02:00`. */
  id: string;
  schedule: string;
  /** Scheduled local time, the slot column of schedule_slots. */
  slot: string;
  /** When the slot was due. */
  at: number;
  /** Milliseconds between `at` and the start of this run. */
  lateMs: number;
  /** True when the run was caught up after the bot was down. */
  caughtUp: boolean;
}

export interface ScheduledJob {
  /** Lowercase name, also the schedule column: `backup`. */
  name: string;
  cron: string;
  /** Variable the expression came from, named in validation errors. */
  variable?: string;
  run(slot: SlotRun): Promise<void>;
}

export interface SchedulerOptions {
  db: Db;
  clock: Clock;
  logger: Logger;
  /** IANA time zone in which the expressions are read. */
  timezone: string;
  /** Variable the time zone came from, named in validation errors; default TIMEZONE. */
  timezoneVariable?: string;
  jobs: ScheduledJob[];
  /**
   * Catch up only slots that fell due after this database first ran the
   * schedule, so a fresh install does not run last month's audit at once.
   */
  skipSlotsBeforeFirstStart?: boolean;
  /** Called after a job threw and its failure was recorded, for example to post to the ops channel. */
  onJobFailed?(slot: SlotRun, error: unknown): void | Promise<void>;
  /**
   * Delay after a slot is due before the scheduler's own timer checks that
   * it ran. The check runs slots that node-cron skipped, such as a
   * nonexistent local time or a missed beat. Default 5 s.
   */
  checkDelayMs?: number;
}

export interface ScheduleInfo {
  name: string;
  cron: string;
  timezone: string;
  nextSlot?: string;
  nextRunAt?: number;
  last?: SlotRow;
}

export interface CatchUpResult {
  name: string;
  slot?: string;
  ran: boolean;
  reason: 'ran' | 'no_slot_due' | 'already_claimed' | 'job_running';
}

export interface Scheduler {
  /** Catches up missed slots, then arms node-cron and the check timers. */
  start(): Promise<CatchUpResult[]>;
  /** Disarms every timer and waits for running jobs to finish. */
  stop(): Promise<void>;
  /** Runs, once, the most recent due slot of each schedule if no process has claimed it. */
  catchUp(): Promise<CatchUpResult[]>;
  listSchedules(now?: number): ScheduleInfo[];
}

export class ScheduleConfigError extends Error {
  constructor(
    readonly code: 'invalid_cron' | 'invalid_timezone' | 'invalid_job',
    message: string,
    readonly variable: string,
    readonly value: string,
  ) {
    super(message);
    this.name = 'ScheduleConfigError';
  }
}

/** Throws ScheduleConfigError naming the variable when `timezone` is no IANA zone. */
export function validateTimezone(timezone: string, variable = 'TIMEZONE'): void {
  let valid = timezone.trim() !== '';
  if (valid) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    } catch {
      valid = false;
    }
  }
  if (!valid) {
    throw new ScheduleConfigError(
      'invalid_timezone',
      `${variable} is not a valid IANA time zone: "${timezone}"; use a name such as Europe/London or America/New_York`,
      variable,
      timezone,
    );
  }
}

/** Parses a cron expression; throws ScheduleConfigError naming the variable and the value. */
export function validateCron(expression: string, variable: string): CronFields {
  try {
    return parseCronFields(expression);
  } catch (error) {
    throw new ScheduleConfigError(
      'invalid_cron',
      `${variable} is not a valid cron expression: "${expression}" (${(error as Error).message}); ` +
        'use five fields, minute hour day-of-month month day-of-week, for example "0 2 * * *"',
      variable,
      expression,
    );
  }
}

interface JobState {
  job: ScheduledJob;
  fields: CronFields;
  task?: ScheduledTask;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
  /** A slot came due while the job was running; check again when it ends. */
  deferred: boolean;
}

/** Maximum single wait of the check timer. It re-arms, so far-off slots and clock moves are handled. */
const MAX_TIMER_MS = 6 * 60 * 60 * 1000;
const LATE_AFTER_MS = 60_000;

/**
 * Creates the scheduler. Every expression and the time zone are validated
 * here, so a bad configuration fails at start-up. Each run is claimed in
 * schedule_slots before it starts, so two processes sharing the database,
 * node-cron and the check timer, or a catch-up after a restart, never run a
 * slot twice.
 */
export function createScheduler(options: SchedulerOptions): Scheduler {
  const { db, clock, logger, timezone } = options;
  validateTimezone(timezone, options.timezoneVariable ?? 'TIMEZONE');
  const states = buildStates(options.jobs);
  const checkDelayMs = options.checkDelayMs ?? 5000;
  let started = false;
  let unsubscribeClock: (() => void) | undefined;

  /** When this database first ran the scheduler for `name`, stored on first sight. */
  function firstStartOf(name: string, now: number): number {
    const key = `schedule_first_start:${name}`;
    const stored = getSetting(db, key);
    if (stored !== undefined) return Number(stored);
    setSetting(db, key, String(now));
    return now;
  }

  async function runDue(state: JobState, triggerMs: number, caughtUp: boolean): Promise<CatchUpResult> {
    const { job } = state;
    const slot = latestSlotAtOrBefore(state.fields, timezone, triggerMs);
    if (!slot) return { name: job.name, ran: false, reason: 'no_slot_due' };
    if (caughtUp && options.skipSlotsBeforeFirstStart && slot.at < firstStartOf(job.name, triggerMs)) {
      // Slots from before this database first ran the schedule were never
      // missed: a fresh install does not run last month's audit.
      return { name: job.name, ran: false, reason: 'no_slot_due' };
    }
    if (state.running) {
      state.deferred = true;
      logger.warn({ schedule: job.name, slot: slot.local }, 'scheduled job still running; slot deferred');
      return { name: job.name, slot: slot.local, ran: false, reason: 'job_running' };
    }

    const claimedAt = clock.now();
    if (!claimSlot(db, job.name, slot.local, claimedAt)) {
      return { name: job.name, slot: slot.local, ran: false, reason: 'already_claimed' };
    }
    const run: SlotRun = {
      id: `${job.name}@${slot.local}`,
      schedule: job.name,
      slot: slot.local,
      at: slot.at,
      lateMs: Math.max(0, claimedAt - slot.at),
      caughtUp,
    };
    state.running = execute(state, run);
    await state.running;
    return { name: job.name, slot: slot.local, ran: true, reason: 'ran' };
  }

  async function execute(state: JobState, run: SlotRun): Promise<void> {
    const fields = { schedule: run.schedule, slot: run.slot, lateMs: run.lateMs, caughtUp: run.caughtUp };
    logger[run.lateMs > LATE_AFTER_MS ? 'warn' : 'info'](fields, 'scheduled job started');

    let failure: unknown;
    let failed = false;
    try {
      await state.job.run(run);
    } catch (error) {
      failure = error;
      failed = true;
    }

    try {
      if (failed) finishSlot(db, run.schedule, run.slot, 'failed', scrubText(messageOf(failure)), clock.now());
      else finishSlot(db, run.schedule, run.slot, 'succeeded', undefined, clock.now());
    } catch (dbError) {
      logger.error({ ...fields, err: dbError }, 'slot result not recorded');
    }
    state.running = undefined;

    if (failed) {
      logger.error({ ...fields, err: failure }, 'scheduled job failed');
      await reportFailure(run, failure);
    } else {
      logger.info(fields, 'scheduled job finished');
    }

    if (!started) return;
    armTimer(state);
    if (state.deferred) {
      // Not awaited: the caller's promise ends with its own run, not with later ones.
      state.deferred = false;
      runDue(state, clock.now(), true).catch((error: unknown) =>
        logger.error({ schedule: run.schedule, err: error }, 'schedule check failed'),
      );
    }
  }

  async function reportFailure(run: SlotRun, error: unknown): Promise<void> {
    try {
      await options.onJobFailed?.(run, error);
    } catch (hookError) {
      logger.error({ schedule: run.schedule, slot: run.slot, err: hookError }, 'job failure report failed');
    }
  }

  function armTimer(state: JobState): void {
    clearTimeout(state.timer);
    const now = clock.now();
    const next = nextSlotAfter(state.fields, timezone, now);
    if (!next) return;

    const delay = Math.min(Math.max(0, next.at + checkDelayMs - now), MAX_TIMER_MS);
    state.timer = setTimeout(() => {
      runDue(state, clock.now(), false)
        .catch((error: unknown) => logger.error({ schedule: state.job.name, err: error }, 'schedule check failed'))
        .finally(() => {
          if (started && !state.running) armTimer(state);
        });
    }, delay);
  }

  function startTask(state: JobState): void {
    state.task = cron.createTask(
      state.job.cron,
      async (context) => {
        await runDue(state, Math.max(clock.now(), context.date.getTime()), false);
      },
      {
        name: `runbook-bot:${state.job.name}`,
        timezone,
        noOverlap: true,
        logger: cronLogger(logger, state.job.name),
      },
    );
    state.task.start();
  }

  async function catchUp(): Promise<CatchUpResult[]> {
    return Promise.all(states.map((state) => runDue(state, clock.now(), true)));
  }

  return {
    async start() {
      if (started) return [];
      started = true;
      for (const state of states) {
        startTask(state);
        armTimer(state);
      }
      const adjustable = clock as Partial<{ onChange(listener: () => void): () => void }>;
      if (typeof adjustable.onChange === 'function') {
        // A moved clock may jump over slots: run the newest one it passed, once.
        unsubscribeClock = adjustable.onChange(() =>
          states.forEach((state) => {
            runDue(state, clock.now(), true)
              .catch((error: unknown) => logger.error({ schedule: state.job.name, err: error }, 'schedule catch-up failed'))
              .finally(() => armTimer(state));
          }),
        );
      }
      logger.info({ schedules: states.map((state) => state.job.name), timezone }, 'scheduler started');
      return catchUp();
    },

    async stop() {
      started = false;
      unsubscribeClock?.();
      for (const state of states) {
        clearTimeout(state.timer);
        state.task?.destroy();
        state.task = undefined;
      }
      await Promise.all(states.map((state) => state.running));
      logger.info({}, 'scheduler stopped');
    },

    catchUp,

    listSchedules(now = clock.now()) {
      return states.map((state) => {
        const next: Slot | undefined = nextSlotAfter(state.fields, timezone, now);
        return {
          name: state.job.name,
          cron: state.job.cron,
          timezone,
          nextSlot: next ? `${state.job.name}@${next.local}` : undefined,
          nextRunAt: next?.at,
          last: lastSlot(db, state.job.name),
        };
      });
    },
  };
}

function buildStates(jobs: ScheduledJob[]): JobState[] {
  const names = new Set<string>();
  return jobs.map((job) => {
    if (!/^[a-z][a-z0-9-]*$/.test(job.name) || names.has(job.name)) {
      throw new ScheduleConfigError(
        'invalid_job',
        `schedule name "${job.name}" is invalid or used twice; use a unique lowercase name such as backup`,
        'jobs',
        job.name,
      );
    }
    names.add(job.name);
    const fields = validateCron(job.cron, job.variable ?? `the ${job.name} schedule`);
    return { job, fields, deferred: false };
  });
}

/** Sends node-cron's own messages to pino with constant texts. */
function cronLogger(logger: Logger, schedule: string) {
  const detail = (message: unknown) => (message instanceof Error ? message.message : String(message));
  return {
    info: (message: string) => logger.debug({ schedule, detail: message }, 'cron library message'),
    warn: (message: string) => logger.warn({ schedule, detail: message }, 'cron library warning'),
    error: (message: string | Error, error?: Error) =>
      logger.error({ schedule, detail: detail(message), err: error }, 'cron library error'),
    debug: (message: string | Error) => logger.debug({ schedule, detail: detail(message) }, 'cron library message'),
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
