import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import cron from 'node-cron';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { wallTime, latestSlotAtOrBefore, nextSlotAfter } from '../src/bot/cron-slots.ts';
import { createLogger } from '../src/bot/logger.ts';
import { registerSecret } from '../src/bot/redact.ts';
import {
  ScheduleConfigError,
  createScheduler,
  parseCronFields,
  rotationReminderDue,
  slotsBetween,
  type ScheduledJob,
  type SlotRun,
} from '../src/bot/schedules.ts';
import { openDatabase, type Db } from '../src/store/db.ts';
import { claimSlot, getSlot, lastSlot } from '../src/store/schedule-slots.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const MINUTE_MS = 60 * 1000;
const repoRoot = resolve(import.meta.dirname, '..');

let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'schedules-test-'));
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

afterEach(() => {
  vi.useRealTimers();
});

function freshDb(): Db {
  return openDatabase(join(work, `bot-${randomBytes(4).toString('hex')}.sqlite3`));
}

function captureLogs() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => lines.push(line) });
  const entries = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, entries };
}

const silent = createLogger('silent', { write: () => undefined });
const iso = (ms: number) => new Date(ms).toISOString();

// The daylight-saving days of 2026 used below, with the local times that
// do not exist or occur twice on them:
//   Europe/London    2026-03-29  01:00-01:59 does not exist (GMT to BST at 01:00 UTC)
//   Europe/London    2026-10-25  01:00-01:59 occurs twice (BST to GMT at 01:00 UTC)
//   America/New_York 2026-03-08  02:00-02:59 does not exist (EST to EDT at 07:00 UTC)
//   America/New_York 2026-11-01  01:00-01:59 occurs twice (EDT to EST at 06:00 UTC)
const DST_CASES = [
  { zone: 'Europe/London', day: '2026-03-29', time: '02:00', cron: '0 2 * * *', at: '2026-03-29T01:00:00.000Z' },
  { zone: 'Europe/London', day: '2026-03-29', time: '01:30', cron: '30 1 * * *', at: '2026-03-29T01:30:00.000Z' },
  { zone: 'Europe/London', day: '2026-10-25', time: '01:30', cron: '30 1 * * *', at: '2026-10-25T00:30:00.000Z' },
  { zone: 'Europe/London', day: '2026-10-25', time: '02:00', cron: '0 2 * * *', at: '2026-10-25T02:00:00.000Z' },
  { zone: 'America/New_York', day: '2026-03-08', time: '02:00', cron: '0 2 * * *', at: '2026-03-08T07:00:00.000Z' },
  { zone: 'America/New_York', day: '2026-11-01', time: '01:30', cron: '30 1 * * *', at: '2026-11-01T05:30:00.000Z' },
  { zone: 'America/New_York', day: '2026-11-01', time: '02:00', cron: '0 2 * * *', at: '2026-11-01T07:00:00.000Z' },
];

function localDay(ms: number, zone: string): string {
  const wall = wallTime(ms, zone);
  return `${wall.year}-${String(wall.month).padStart(2, '0')}-${String(wall.day).padStart(2, '0')}`;
}

describe('slotsBetween', () => {
  it.each(DST_CASES)('$zone $day $time runs once', ({ zone, day, time, cron: expression, at }) => {
    const dayStart = Date.parse(`${day}T00:00:00Z`);

    const slots = slotsBetween(parseCronFields(expression), zone, dayStart - 2 * DAY_MS, dayStart + 3 * DAY_MS);
    const onDay = slots.filter((slot) => slot.local.startsWith(day));
    const perDay = new Map<string, number>();
    for (const slot of slots) perDay.set(slot.local.slice(0, 10), (perDay.get(slot.local.slice(0, 10)) ?? 0) + 1);

    expect(onDay.map((slot) => slot.local)).toEqual([`${day}T${time}`]);
    expect(iso(onDay[0].at)).toBe(at);
    expect([...perDay.values()].every((count) => count === 1)).toBe(true);
  });

  it.each(DST_CASES)('stepped clock claims $zone $day $time once', ({ zone, day, cron: expression }) => {
    const db = freshDb();
    const fields = parseCronFields(expression);
    const from = Date.parse(`${day}T00:00:00Z`) - DAY_MS;
    const runsPerDay = new Map<string, number>();

    for (let now = from; now <= from + 3 * DAY_MS; now += MINUTE_MS) {
      const slot = latestSlotAtOrBefore(fields, zone, now);
      if (slot && slot.at > from && claimSlot(db, 'daily', slot.local, now)) {
        const local = localDay(slot.at, zone);
        runsPerDay.set(local, (runsPerDay.get(local) ?? 0) + 1);
      }
    }
    db.close();

    expect(runsPerDay.get(day)).toBe(1);
    expect([...runsPerDay.values()]).toEqual([1, 1, 1]);
  });

  it('hourly spring forward skips no hour', () => {
    const slots = slotsBetween(
      parseCronFields('30 * * * *'),
      'America/New_York',
      Date.parse('2026-03-08T05:00:00Z'),
      Date.parse('2026-03-08T09:00:00Z'),
    );

    expect(slots.map((slot) => slot.local)).toEqual([
      '2026-03-08T00:30',
      '2026-03-08T01:30',
      '2026-03-08T03:30',
      '2026-03-08T04:30',
    ]);
  });

  it('hourly fall back runs 01:30 once', () => {
    const slots = slotsBetween(
      parseCronFields('30 * * * *'),
      'America/New_York',
      Date.parse('2026-11-01T04:00:00Z'),
      Date.parse('2026-11-01T08:00:00Z'),
    );

    expect(slots.map((slot) => `${slot.local}=${iso(slot.at)}`)).toEqual([
      '2026-11-01T00:30=2026-11-01T04:30:00.000Z',
      '2026-11-01T01:30=2026-11-01T05:30:00.000Z',
      '2026-11-01T02:30=2026-11-01T07:30:00.000Z',
    ]);
  });

  it('monthly slot lands on the 1st', () => {
    const fields = parseCronFields('0 9 1 * *');

    const latest = latestSlotAtOrBefore(fields, 'Europe/London', Date.parse('2026-04-15T12:00:00Z'));
    const next = nextSlotAfter(fields, 'Europe/London', Date.parse('2026-04-15T12:00:00Z'));

    expect(latest?.local).toBe('2026-04-01T09:00');
    expect(iso(latest!.at)).toBe('2026-04-01T08:00:00.000Z');
    expect(next?.local).toBe('2026-05-01T09:00');
  });

  it('node-cron skips nonexistent local time', () => {
    vi.useFakeTimers({ now: Date.parse('2026-03-07T12:00:00Z') });
    const task = cron.createTask('0 2 * * *', () => undefined, { timezone: 'America/New_York' });

    const runs = task.getNextRuns(2).map((date) => date.toISOString());

    // node-cron 4.6 has no run on 2026-03-08, which is why the scheduler's
    // own check timer runs that slot.
    expect(runs).toEqual(['2026-03-09T06:00:00.000Z', '2026-03-10T06:00:00.000Z']);
  });
});

interface Recorded extends SlotRun {
  startedAt: number;
}

/** Runs the real scheduler (node-cron and check timers) on fake time and records each job run. */
async function runScheduler(options: {
  zone: string;
  expression: string;
  start: string;
  days: number;
  run?: (slot: SlotRun) => Promise<void>;
}): Promise<{ runs: Recorded[]; db: Db }> {
  vi.useFakeTimers({ now: Date.parse(options.start) });
  const db = freshDb();
  const runs: Recorded[] = [];
  const scheduler = createScheduler({
    db,
    clock: { now: () => Date.now() },
    logger: silent,
    timezone: options.zone,
    jobs: [
      {
        name: 'backup',
        cron: options.expression,
        run: async (slot) => {
          runs.push({ ...slot, startedAt: Date.now() });
          await options.run?.(slot);
        },
      },
    ],
  });

  // start() resolves when the catch-up runs end, which needs fake time to pass.
  const caughtUp = scheduler.start();
  await vi.advanceTimersByTimeAsync(options.days * DAY_MS);
  // stop() waits for running jobs, whose own timers need fake time to pass.
  const stopped = scheduler.stop();
  await vi.advanceTimersByTimeAsync(DAY_MS);
  await Promise.all([caughtUp, stopped]);
  vi.useRealTimers();
  return { runs, db };
}

describe('scheduler on daylight-saving days', () => {
  it.each(DST_CASES)('$zone $day $time job runs once', async ({ zone, day, time, cron: expression, at }) => {
    const start = new Date(Date.parse(`${day}T00:00:00Z`) - 36 * 60 * 60 * 1000).toISOString();

    const { runs, db } = await runScheduler({ zone, expression, start, days: 3 });
    const scheduled = runs.filter((run) => !run.caughtUp);
    const onDay = scheduled.filter((run) => run.slot.startsWith(day));
    db.close();

    expect(onDay.map((run) => run.id)).toEqual([`backup@${day}T${time}`]);
    expect(onDay[0].startedAt - Date.parse(at)).toBeLessThanOrEqual(5000);
    expect(onDay[0].startedAt).toBeGreaterThanOrEqual(Date.parse(at));
    expect(scheduled).toHaveLength(3);
    expect(new Set(runs.map((run) => run.slot)).size).toBe(runs.length);
  });
});

describe('createScheduler', () => {
  it('missed slot runs once at start-up', async () => {
    const db = freshDb();
    const runs: SlotRun[] = [];
    const clock = { now: () => Date.parse('2026-04-01T10:00:00Z') };
    const jobs: ScheduledJob[] = [
      { name: 'backup', cron: '0 2 * * *', run: async (slot) => void runs.push(slot) },
      { name: 'restore-test', cron: '0 9 1 * *', run: async (slot) => void runs.push(slot) },
    ];

    const first = createScheduler({ db, clock, logger: silent, timezone: 'Europe/London', jobs });
    const firstResults = await first.catchUp();
    const second = createScheduler({ db, clock, logger: silent, timezone: 'Europe/London', jobs });
    const secondResults = await second.catchUp();

    expect(runs.map((run) => run.id)).toEqual(['backup@2026-04-01T02:00', 'restore-test@2026-04-01T09:00']);
    expect(runs.every((run) => run.caughtUp)).toBe(true);
    expect(runs[0].lateMs).toBe(Date.parse('2026-04-01T10:00:00Z') - Date.parse('2026-04-01T01:00:00Z'));
    expect(firstResults.map((result) => result.reason)).toEqual(['ran', 'ran']);
    expect(secondResults.map((result) => result.reason)).toEqual(['already_claimed', 'already_claimed']);
    expect(lastSlot(db, 'backup')?.status).toBe('succeeded');
    db.close();
  });

  it('only the newest missed slot runs', async () => {
    const db = freshDb();
    const runs: SlotRun[] = [];
    claimSlot(db, 'backup', '2026-03-25T02:00', Date.parse('2026-03-25T02:00:00Z'));
    const scheduler = createScheduler({
      db,
      clock: { now: () => Date.parse('2026-03-28T12:00:00Z') },
      logger: silent,
      timezone: 'UTC',
      jobs: [{ name: 'backup', cron: '0 2 * * *', run: async (slot) => void runs.push(slot) }],
    });

    await scheduler.catchUp();

    expect(runs.map((run) => run.slot)).toEqual(['2026-03-28T02:00']);
    db.close();
  });

  it('throwing job releases the guard', async () => {
    registerSecret('backup-key-that-must-not-leak');
    vi.useFakeTimers({ now: Date.parse('2026-04-01T01:59:00Z') });
    const db = freshDb();
    const { logger, entries } = captureLogs();
    const failures: string[] = [];
    let calls = 0;
    const scheduler = createScheduler({
      db,
      clock: { now: () => Date.now() },
      logger,
      timezone: 'UTC',
      jobs: [
        {
          name: 'backup',
          cron: '0 2 * * *',
          run: async (slot) => {
            calls += 1;
            if (slot.slot === '2026-04-01T02:00') throw new Error('disk full while using backup-key-that-must-not-leak');
          },
        },
      ],
      onJobFailed: (slot) => void failures.push(slot.id),
    });
    await scheduler.start();
    const startupCalls = calls;

    await vi.advanceTimersByTimeAsync(2 * MINUTE_MS);
    const failed = getSlot(db, 'backup', '2026-04-01T02:00');
    await vi.advanceTimersByTimeAsync(DAY_MS);
    await scheduler.stop();
    logger.flush();

    expect(startupCalls).toBe(1);
    expect(failed?.status).toBe('failed');
    expect(failed?.error).toBe('Error: disk full while using [REDACTED]');
    expect(failures).toEqual(['backup@2026-04-01T02:00']);
    expect(getSlot(db, 'backup', '2026-04-02T02:00')?.status).toBe('succeeded');
    expect(calls).toBe(3);
    expect(entries().some((entry) => entry.msg === 'scheduled job failed')).toBe(true);
    db.close();
  });

  it('overlapping slot is deferred, not doubled', async () => {
    let active = 0;
    let maxActive = 0;

    const { runs, db } = await runScheduler({
      zone: 'UTC',
      expression: '* * * * *',
      start: '2026-04-01T00:00:30Z',
      days: 5 / (24 * 60),
      run: async () => {
        active += 1;
        maxActive = Math.max(maxActive, active);
        await new Promise((resolve) => setTimeout(resolve, 150_000));
        active -= 1;
      },
    });
    const slots = runs.map((run) => run.slot);
    db.close();

    expect(maxActive).toBe(1);
    expect(new Set(slots).size).toBe(slots.length);
    expect(slots.slice(0, 2)).toEqual(['2026-04-01T00:00', '2026-04-01T00:03']);
    expect(slots).not.toContain('2026-04-01T00:01');
    expect(slots).not.toContain('2026-04-01T00:02');
  });

  it('lists next run per schedule', () => {
    const db = freshDb();
    claimSlot(db, 'backup', '2026-03-28T02:00', Date.parse('2026-03-28T02:00:00Z'));
    const scheduler = createScheduler({
      db,
      clock: { now: () => Date.parse('2026-03-28T12:00:00Z') },
      logger: silent,
      timezone: 'Europe/London',
      jobs: [
        { name: 'backup', cron: '0 2 * * *', run: async () => undefined },
        { name: 'security-audit', cron: '0 9 1 * *', run: async () => undefined },
      ],
    });

    const list = scheduler.listSchedules();

    expect(list.map((item) => item.nextSlot)).toEqual(['backup@2026-03-29T02:00', 'security-audit@2026-04-01T09:00']);
    expect(iso(list[0].nextRunAt!)).toBe('2026-03-29T01:00:00.000Z');
    expect(list[0].last?.slot).toBe('2026-03-28T02:00');
    expect(list[1].last).toBeUndefined();
    db.close();
  });

  it.each([
    ['out-of-range hour', '0 25 * * *', 'hour'],
    ['too few fields', '0 2 *', 'expected 5 or 6 fields'],
    ['last-day token', '0 2 L * *', 'not supported'],
  ])('rejects cron with %s', (_label, expression, reason) => {
    const db = freshDb();
    let error: unknown;
    try {
      createScheduler({
        db,
        clock: { now: () => 0 },
        logger: silent,
        timezone: 'UTC',
        jobs: [{ name: 'backup', cron: expression, variable: 'BACKUP_CRON', run: async () => undefined }],
      });
    } catch (thrown) {
      error = thrown;
    }
    db.close();

    expect(error).toBeInstanceOf(ScheduleConfigError);
    expect((error as ScheduleConfigError).code).toBe('invalid_cron');
    expect((error as Error).message).toContain('BACKUP_CRON');
    expect((error as Error).message).toContain(`"${expression}"`);
    expect((error as Error).message).toContain(reason);
  });

  it.each(['Mars/Olympus', '', 'Europe/Londn'])('rejects time zone "%s"', (zone) => {
    const db = freshDb();
    let error: unknown;
    try {
      createScheduler({
        db,
        clock: { now: () => 0 },
        logger: silent,
        timezone: zone,
        timezoneVariable: 'BOT_TIMEZONE',
        jobs: [],
      });
    } catch (thrown) {
      error = thrown;
    }
    db.close();

    expect(error).toBeInstanceOf(ScheduleConfigError);
    expect((error as ScheduleConfigError).code).toBe('invalid_timezone');
    expect((error as Error).message).toContain(`BOT_TIMEZONE is not a valid IANA time zone: "${zone}"`);
  });
});

describe('two processes on one database', () => {
  function childScript(body: string): string {
    const path = join(work, `child-${randomBytes(4).toString('hex')}.mts`);
    const src = (file: string) => JSON.stringify(pathToFileURL(join(repoRoot, 'src', file)).href);
    writeFileSync(
      path,
      [
        `import { openDatabase } from ${src('store/db.ts')};`,
        `import { claimSlot } from ${src('store/schedule-slots.ts')};`,
        `import { createScheduler } from ${src('bot/schedules.ts')};`,
        `import { createLogger } from ${src('bot/logger.ts')};`,
        `import { appendFileSync, existsSync } from 'node:fs';`,
        'void claimSlot; void createScheduler; void createLogger; void appendFileSync;',
        'const [dbPath, goFile, outFile] = process.argv.slice(2);',
        'const db = openDatabase(dbPath);',
        'const pause = new Int32Array(new SharedArrayBuffer(4));',
        "console.log('ready');",
        '// Both processes wait here until the test sees both ready.',
        'while (!existsSync(goFile)) Atomics.wait(pause, 0, 0, 1);',
        body,
      ].join('\n'),
    );
    return path;
  }

  /** Starts two copies of the script, lets them go at once, and returns the last stdout line of each. */
  async function runChildren(script: string, dbPath: string, outFile = ''): Promise<string[]> {
    const goFile = join(work, `go-${randomBytes(4).toString('hex')}`);
    const readiness: Array<Promise<void>> = [];
    const results = [0, 1].map(
      () =>
        new Promise<string>((resolvePromise, reject) => {
          const child = spawn(process.execPath, ['--import', 'tsx', script, dbPath, goFile, outFile], {
            cwd: repoRoot,
            stdio: ['ignore', 'pipe', 'pipe'],
          });
          let stdout = '';
          let stderr = '';
          readiness.push(
            new Promise((ready) =>
              child.stdout.on('data', (chunk: Buffer) => {
                stdout += chunk.toString();
                if (stdout.startsWith('ready')) ready();
              }),
            ),
          );
          child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
          child.on('close', (code) =>
            code === 0
              ? resolvePromise(stdout.trim().split('\n').at(-1) ?? '')
              : reject(new Error(`child exited ${code}: ${stderr}`)),
          );
        }),
    );
    await Promise.all(readiness);
    writeFileSync(goFile, '');
    return Promise.all(results);
  }

  it('slots claimed once across processes', async () => {
    const dbPath = join(work, 'race.sqlite3');
    openDatabase(dbPath).close();
    const script = childScript(
      [
        'const won = [];',
        '// Each process walks the same 300 slots in its own random order, with',
        '// a 1 ms pause so that neither holds the write lock for the whole run.',
        'const order = [...Array(300).keys()].sort(() => Math.random() - 0.5);',
        'for (const i of order) {',
        "  if (claimSlot(db, 'race', `slot-${i}`, Date.now())) won.push(i);",
        '  Atomics.wait(pause, 0, 0, 1);',
        '}',
        'console.log(JSON.stringify(won));',
      ].join('\n'),
    );

    const outputs = await runChildren(script, dbPath);
    const [first, second] = outputs.map((output) => JSON.parse(output) as number[]);
    const both = first.filter((slot) => second.includes(slot));

    expect(both).toEqual([]);
    expect([...first, ...second].sort((a, b) => a - b)).toEqual([...Array(300).keys()]);
    expect(first.length).toBeGreaterThan(0);
    expect(second.length).toBeGreaterThan(0);
  }, 60_000);

  it('catch-up runs a job in one process', async () => {
    const dbPath = join(work, 'race-scheduler.sqlite3');
    const outFile = join(work, 'race-runs.txt');
    openDatabase(dbPath).close();
    writeFileSync(outFile, '');
    const script = childScript(
      [
        "const logger = createLogger('silent', { write: () => undefined });",
        'const jobs = ["backup", "restore-test", "security-audit", "rotation-age"].map((name) => ({',
        "  name, cron: '0 2 * * *',",
        '  run: async (slot) => appendFileSync(outFile, `${process.pid} ${slot.id}\\n`),',
        '}));',
        "const scheduler = createScheduler({ db, clock: { now: () => Date.now() }, logger, timezone: 'UTC', jobs });",
        'console.log(JSON.stringify(await scheduler.catchUp()));',
      ].join('\n'),
    );

    const outputs = await runChildren(script, dbPath, outFile);
    const lines = readFileSync(outFile, 'utf8').trim().split('\n');
    const ids = lines.map((line) => line.split(' ')[1]);
    const ran = outputs.flatMap((output) => JSON.parse(output) as Array<{ ran: boolean }>).filter((r) => r.ran);

    expect(ids.sort()).toEqual(
      ['backup', 'restore-test', 'rotation-age', 'security-audit'].map((name) => expect.stringMatching(`^${name}@`)),
    );
    expect(new Set(ids).size).toBe(4);
    expect(ran).toHaveLength(4);
  }, 60_000);
});

describe('rotationReminderDue', () => {
  const now = Date.parse('2026-06-30T09:00:00Z');
  const options = { maxAgeDays: 90, repeatDays: 7 };

  it('fresh secret needs no reminder', () => {
    const decision = rotationReminderDue([{ rotatedAt: now - 30 * DAY_MS }], now, options);

    expect(decision.due).toBe(false);
    expect(decision.reason).toBe('fresh');
  });

  it('reminds at 90 days', () => {
    const decision = rotationReminderDue([{ rotatedAt: now - 120 * DAY_MS }, { rotatedAt: now - 90 * DAY_MS }], now, options);

    expect(decision.due).toBe(true);
    expect(decision.ageDays).toBe(90);
  });

  it('waits a week between reminders', () => {
    const history = [{ rotatedAt: now - 100 * DAY_MS }];

    const soon = rotationReminderDue(history, now, { ...options, lastReminderAt: now - 3 * DAY_MS });
    const later = rotationReminderDue(history, now, { ...options, lastReminderAt: now - 7 * DAY_MS });

    expect(soon.reason).toBe('recently_reminded');
    expect(later.due).toBe(true);
  });

  it('ignores reminders before last rotation', () => {
    const history = [{ rotatedAt: now - 95 * DAY_MS }];
    const longRepeat = { maxAgeDays: 90, repeatDays: 200 };

    const before = rotationReminderDue(history, now, { ...longRepeat, lastReminderAt: now - 100 * DAY_MS });
    const after = rotationReminderDue(history, now, { ...longRepeat, lastReminderAt: now - 50 * DAY_MS });

    expect(before.due).toBe(true);
    expect(after.due).toBe(false);
  });

  it('reminds when never rotated', () => {
    const decision = rotationReminderDue([], now, options);

    expect(decision.due).toBe(true);
    expect(decision.reason).toBe('never_rotated');
  });
});
