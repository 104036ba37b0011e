import { mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { countBackupsSince, recordBackup } from '../src/store/backups.ts';
import { openDatabase } from '../src/store/db.ts';
import { startTestBot, type TestBot } from './helpers/bot.ts';
import { waitFor } from './helpers/child-bot.ts';
import { createDjangoProject, removeDjangoTemplate, type DjangoProject } from './helpers/django-db.ts';
import { tempDir } from './helpers/engine.ts';

const OPS_CHANNEL = 'C0SBXOPS';
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** Returns the first Monday `hour`:00 UTC strictly after `ms`. */
function nextMondayUtc(ms: number, hour: number): number {
  const day = new Date(ms);
  const daysToMonday = (8 - day.getUTCDay()) % 7;
  const candidate = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate() + daysToMonday, hour);
  return candidate > ms ? candidate : candidate + 7 * DAY_MS;
}

/**
 * Moves the bot's clock to `target`, which runs the newest due slot of each
 * schedule once, then waits for those runs and the outbox to finish.
 */
async function advanceTo(bot: TestBot, target: number): Promise<void> {
  const now = bot.bot.clock.now();
  bot.bot.adjustableClock!.advance(target - now);
  await waitFor(() => {
    const row = bot.bot.db.prepare("SELECT count(*) AS n FROM schedule_slots WHERE status = 'running'").get() as { n: number };
    return row.n === 0;
  }, 10_000, 'scheduled jobs to finish');
  await bot.settle();
}

function digests(bot: TestBot): string[] {
  return bot
    .messages()
    .filter((message) => message.channel === OPS_CHANNEL && message.text.startsWith(':floppy_disk: Weekly backup digest'))
    .map((message) => message.text);
}

let project: DjangoProject;

beforeAll(() => {
  project = createDjangoProject();
});

afterAll(() => {
  project.remove();
  removeDjangoTemplate();
});

describe('weekly backup digest after a week of backups', () => {
  let dir: ReturnType<typeof tempDir>;
  let backupDir: string;
  let bot: TestBot;
  let digestsBefore: number;

  beforeEach(async () => {
    dir = tempDir('digest-');
    backupDir = join(dir.path, 'backups');
    mkdirSync(backupDir);
    bot = await startTestBot({
      env: { OPS_CHANNEL, DJANGO_DATABASE_PATH: project.databasePath, BACKUP_DIR: backupDir, SCHEDULE_TZ: 'UTC' },
    });

    // The backups up to Monday 03:00 fall before the window of the next
    // Monday's digest, which starts a week before it, at Monday 09:00.
    const firstMonday = nextMondayUtc(bot.bot.clock.now(), 1);
    await advanceTo(bot, firstMonday);
    await advanceTo(bot, firstMonday + 2 * HOUR_MS);
    digestsBefore = digests(bot).length;

    // One backup a day from Tuesday to Monday, and Thursday's folder is missing.
    for (let day = 1; day <= 7; day++) {
      const away = join(dir.path, 'unmounted');
      if (day === 3) renameSync(backupDir, away);
      await advanceTo(bot, firstMonday + day * DAY_MS + 2 * HOUR_MS);
      if (day === 3) renameSync(away, backupDir);
    }
    await advanceTo(bot, firstMonday + 7 * DAY_MS + 8.5 * HOUR_MS);
  });

  afterEach(async () => {
    await bot.close();
    dir.remove();
  });

  it('digest posts once each Monday', () => {
    expect(digests(bot).length - digestsBefore).toBe(2);
  });

  it('digest counts only the last 7 days', () => {
    expect(digests(bot).at(-1)).toContain('6 good and 1 failed database backups in the last 7 days');
  });

  it('digest names the newest database backup', () => {
    const newest = readdirSync(backupDir).filter((name) => name.startsWith('db-')).sort().at(-1)!;
    const digest = digests(bot).at(-1)!;

    expect(digest).toContain(`Newest database backup: ${join(backupDir, newest)} at <!date^`);
    expect(digest).not.toContain('No good database backup');
  });
});

describe('weekly backup digest without a good backup', () => {
  let dir: ReturnType<typeof tempDir>;
  let bot: TestBot;

  beforeEach(async () => {
    dir = tempDir('digest-none-');
    const backupDir = join(dir.path, 'backups');
    mkdirSync(backupDir);
    bot = await startTestBot({
      env: { OPS_CHANNEL, DJANGO_DATABASE_PATH: project.databasePath, BACKUP_DIR: backupDir, SCHEDULE_TZ: 'UTC' },
    });
    rmSync(backupDir, { recursive: true });
  });

  afterEach(async () => {
    await bot.close();
    dir.remove();
  });

  it('digest warns when every backup failed', async () => {
    const monday = nextMondayUtc(bot.bot.clock.now(), 1);
    await advanceTo(bot, monday + 2 * HOUR_MS);
    await advanceTo(bot, monday + 8.5 * HOUR_MS);
    const digest = digests(bot).at(-1);

    expect(digest).toContain('0 good and 1 failed database backups in the last 7 days');
    expect(digest).toContain(':warning: No good database backup in the last 7 days.');
  });
});

describe('weekly backup digest in SCHEDULE_TZ', () => {
  let dir: ReturnType<typeof tempDir>;
  let bot: TestBot;

  beforeEach(async () => {
    dir = tempDir('digest-tz-');
    mkdirSync(join(dir.path, 'backups'));
    bot = await startTestBot({
      env: {
        OPS_CHANNEL,
        DJANGO_DATABASE_PATH: project.databasePath,
        BACKUP_DIR: join(dir.path, 'backups'),
        SCHEDULE_TZ: 'Asia/Tokyo',
      },
    });
  });

  afterEach(async () => {
    await bot.close();
    dir.remove();
  });

  it('digest waits for local Monday 09:00', async () => {
    // Monday 09:00 in Tokyo (UTC+9, no daylight saving time) is Monday 00:00 UTC.
    const mondayUtc = nextMondayUtc(bot.bot.clock.now() + HOUR_MS, 0);
    await advanceTo(bot, mondayUtc - 30 * 60_000);
    const before = digests(bot).length;
    await advanceTo(bot, mondayUtc + 30 * 60_000);

    expect(digests(bot).length - before).toBe(1);
  });
});

describe('countBackupsSince', () => {
  const since = Date.UTC(2026, 2, 2);
  let counts: ReturnType<typeof countBackupsSince>;

  beforeAll(() => {
    const db = openDatabase(':memory:');
    // 600 hourly database backups, more than one page of listBackups.
    for (let hour = 0; hour < 600; hour++) {
      recordBackup(db, { kind: 'database', path: `/b/db-${hour}`, createdAt: since + hour * HOUR_MS, status: hour % 100 === 0 ? 'failed' : 'good' });
    }
    recordBackup(db, { kind: 'env', path: '/b/env-1', createdAt: since + HOUR_MS, status: 'good' });
    recordBackup(db, { kind: 'database', path: '/b/old', createdAt: since - HOUR_MS, status: 'good' });
    counts = countBackupsSince(db, since);
    db.close();
  });

  it('counts every good database backup', () => {
    expect(counts.database.good).toBe(594);
  });

  it('counts failed database backups', () => {
    expect(counts.database.failed).toBe(6);
  });

  it('counts .env backups apart', () => {
    expect(counts.env.good).toBe(1);
  });
});
