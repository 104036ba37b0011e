import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { createBot } from '../src/bot/app.ts';
import { loadConfig } from '../src/bot/config.ts';
import { ScheduleConfigError } from '../src/bot/schedules.ts';
import { ALEX, CHANNEL, GUEST, SAM, startTestBot, type TestBot } from './helpers/bot.ts';
import { addUsers, createDjangoProject, PYTHON, type DjangoProject } from './helpers/django-db.ts';
import { captureLogger, tempDir } from './helpers/engine.ts';

const DAY = 86_400_000;
const KEY = 'a'.repeat(64);
const ENV_SECRET = 'plaintext-secret-value-that-must-not-appear-0123456789';

function ephemeral(bot: TestBot, user: string) {
  return bot.messages().filter((message) => message.ephemeralTo === user).at(-1)!;
}

function stepText(bot: TestBot, incidentNumber: number, stepId: string): string {
  const checklist = bot.messages().find((message) => message.text === `Checklist for incident #${incidentNumber}, part 1`)!;
  return JSON.stringify((checklist.blocks as Array<{ block_id?: string }>).filter((block) => block.block_id?.startsWith(`step|${stepId}|`)));
}

describe('backups and restores from the channel', () => {
  let project: DjangoProject;
  let dir: ReturnType<typeof tempDir>;
  let bot: TestBot;

  beforeEach(async () => {
    project = createDjangoProject();
    addUsers(project, { plain: 3, superusers: 1 });
    dir = tempDir('ops-');
    const envFile = join(dir.path, '.env');
    writeFileSync(envFile, `DJANGO_SECRET_KEY=${ENV_SECRET}\n`);
    mkdirSync(join(dir.path, 'backups'));
    bot = await startTestBot({
      env: {
        DJANGO_DATABASE_PATH: project.databasePath,
        DJANGO_ENV_FILE: envFile,
        BACKUP_DIR: join(dir.path, 'backups'),
        BACKUP_ENCRYPTION_KEY: KEY,
        DJANGO_PROJECT_DIR: project.dir,
        DJANGO_STOP_COMMAND: '/bin/true',
        DJANGO_START_COMMAND: '/bin/true',
        DJANGO_MIGRATE_COMMAND: JSON.stringify([PYTHON, 'manage.py', 'migrate', '--noinput']),
        DJANGO_HEALTH_URL: 'http://127.0.0.1:1/unused',
        OPS_CHANNEL: CHANNEL,
      },
    });
  });
  afterEach(async () => {
    await bot.close();
    project.remove();
    dir.remove();
  });

  it('/incident backup runs the backup at once', async () => {
    await bot.command(ALEX, '/incident backup');
    const files = readdirSync(join(dir.path, 'backups'));
    expect(files.some((name) => /^db-\d{4}-\d{2}-\d{2}-\d{6}\.sqlite3$/.test(name))).toBe(true);
    expect(stepText(bot, 1, 'run')).toContain('Backup written, checked and recorded');
  });

  it('missing backup folder is reported with its path', async () => {
    const folder = join(dir.path, 'backups');
    (await import('node:fs')).rmSync(folder, { recursive: true });
    await bot.command(ALEX, '/incident backup');
    expect(stepText(bot, 1, 'run')).toContain(folder);
    expect(stepText(bot, 1, 'run')).toContain('Action failed');
  });

  it('encrypted .env backup holds no plaintext secret', async () => {
    await bot.command(ALEX, '/incident backup');
    const folder = join(dir.path, 'backups');
    for (const name of readdirSync(folder)) {
      expect(readFileSync(join(folder, name)).includes(Buffer.from(ENV_SECRET))).toBe(false);
    }
  });

  it('/incident restore lists backups with size and check', async () => {
    await bot.command(ALEX, '/incident backup');
    await bot.command(ALEX, '/incident restore');
    const reply = JSON.stringify(ephemeral(bot, ALEX).blocks);
    expect(reply).toMatch(/db-\d{4}-\d{2}-\d{2}-\d{6}\.sqlite3/);
    expect(reply).toContain('checked');
    expect(reply).toContain('restore.choose_backup');
  });

  it('restore refuses to replace before the safety backup', async () => {
    await bot.command(ALEX, '/incident backup');
    await bot.command(ALEX, '/incident restore');
    const picker = ephemeral(bot, ALEX);
    await bot.slack.delivery.click({ user: ALEX, channel: CHANNEL, messageTs: picker.ts, blockId: (picker.blocks as Array<{ block_id: string }>)[1].block_id, actionId: 'restore.choose_backup' });
    await bot.settle();
    const replace = stepText(bot, 2, 'replace');
    expect(replace).toContain(':lock: Runs after steps 1, 2, 3');
    expect(replace).not.toContain('step.run');
  });

  it('restore drill replaces the database with the backup', async () => {
    await bot.command(ALEX, '/incident backup');
    const db = new Database(project.databasePath);
    db.prepare("UPDATE auth_user SET username = 'changed-after-backup' WHERE id = 1").run();
    db.close();
    // Backup names have one-second resolution; the safety backup must not collide.
    bot.bot.adjustableClock!.advance(2000);

    await bot.command(ALEX, '/incident restore');
    const picker = ephemeral(bot, ALEX);
    await bot.slack.delivery.click({ user: ALEX, channel: CHANNEL, messageTs: picker.ts, blockId: (picker.blocks as Array<{ block_id: string }>)[1].block_id, actionId: 'restore.choose_backup' });
    await bot.settle();
    for (const step of ['verify', 'safety', 'stop', 'replace', 'migrate', 'start']) {
      await bot.click(ALEX, 'step.run', step);
      expect(stepText(bot, 2, step), step).toContain(':white_check_mark:');
    }
    const restored = new Database(project.databasePath, { readonly: true });
    const name = (restored.prepare('SELECT username FROM auth_user WHERE id = 1').get() as { username: string }).username;
    restored.close();
    expect(name).not.toBe('changed-after-backup');
  });

  it('guest cannot choose a backup to restore', async () => {
    await bot.command(ALEX, '/incident backup');
    await bot.command(GUEST, '/incident restore');
    const picker = ephemeral(bot, GUEST);
    await bot.slack.delivery.click({ user: GUEST, channel: CHANNEL, messageTs: picker.ts, blockId: (picker.blocks as Array<{ block_id: string }>)[1].block_id, actionId: 'restore.choose_backup' });
    await bot.settle();
    await bot.click(GUEST, 'step.run', 'verify');
    expect(ephemeral(bot, GUEST).text).toContain('Only responders can run actions');
  });

  it('first of the month opens the restore test and the audit', async () => {
    await bot.command(ALEX, '/incident backup');
    const now = bot.bot.clock.now();
    const firstOfNextMonth = Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth() + 1, 1, 9, 30);
    bot.bot.adjustableClock!.advance(firstOfNextMonth - now);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await bot.settle();
    const opened = bot.bot.engine.listOpen().map((incident) => `${incident.runbookId}:${incident.origin}`);
    expect(opened).toContain('restore-test:schedule');
    expect(opened).toContain('security-audit:schedule');
  });

  it('audit checks variables by name and never shows their values', async () => {
    await bot.command(ALEX, '/incident security-audit');
    const checklist = JSON.stringify(bot.messages().find((message) => message.text.startsWith('Checklist for incident #1'))!.blocks);
    expect(checklist).toContain('SENTRY_DSN: missing');
    expect(checklist).toContain(':warning: failed: 1 of 2 required variables are not set');
    expect(checklist).not.toContain(ENV_SECRET);
  });

  it('command output never shows the current key', async () => {
    await bot.close();
    bot = await startTestBot({ env: { DJANGO_ENV_FILE: join(dir.path, '.env'), AUDIT_SECURITY_CHECK_COMMAND: JSON.stringify(['/bin/cat', join(dir.path, '.env')]), DJANGO_DATABASE_PATH: project.databasePath } });
    await bot.command(ALEX, '/incident security-audit');
    expect(JSON.stringify(bot.slack.workspace.calls)).not.toContain(ENV_SECRET);
    expect(bot.logs.lines.some((line) => line.includes(ENV_SECRET))).toBe(false);
  });

  it('read-only audit check can run again', async () => {
    await bot.command(ALEX, '/incident security-audit');
    await bot.click(ALEX, 'step.run', 'env-vars');
    const runs = bot.bot.db.prepare("SELECT status FROM action_runs WHERE step_id = 'env-vars' ORDER BY id").all() as Array<{ status: string }>;
    expect(runs.map((run) => run.status)).toEqual(['superseded', 'succeeded']);
  });

  it('/incident schedules lists every schedule with its next run', async () => {
    await bot.command(SAM, '/incident schedules');
    const text = ephemeral(bot, SAM).text;
    for (const name of ['backup', 'backup-digest', 'restore-test', 'security-audit', 'rotation-age']) expect(text).toContain(name);
    expect(text).toContain('next <!date^');
  });
});

describe('rotation reminders', () => {
  let bot: TestBot;
  beforeEach(async () => {
    bot = await startTestBot({ env: { OPS_CHANNEL: CHANNEL, SCHEDULE_TZ: 'UTC' } });
  });
  afterEach(async () => {
    await bot.close();
  });

  function reminders(secret: string): number {
    return bot.messages().filter((message) => message.text === `${secret} is due for rotation`).length;
  }

  async function advance(ms: number): Promise<void> {
    bot.bot.adjustableClock!.advance(ms);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await bot.settle();
  }

  it('a key with no rotation on record gets a reminder with Start rotation', async () => {
    await advance(DAY + 60_000);
    expect(reminders('DJANGO_SECRET_KEY')).toBe(1);
    const reminder = bot.messages().find((message) => message.text === 'DJANGO_SECRET_KEY is due for rotation')!;
    expect(JSON.stringify(reminder.blocks)).toContain('rotate-secret-key');
  });

  it('reminder repeats weekly, not daily', async () => {
    await advance(DAY + 60_000);
    await advance(DAY);
    expect(reminders('SENTRY_DSN')).toBe(1);
    for (let day = 0; day < 6; day++) await advance(DAY);
    expect(reminders('SENTRY_DSN')).toBe(2);
  });

  it('rotation recorded outside the bot stops the reminders', async () => {
    await bot.command(ALEX, '/incident rotated DJANGO_SECRET_KEY');
    for (let day = 0; day < 9; day++) await advance(DAY);
    expect(reminders('DJANGO_SECRET_KEY')).toBe(0);
    expect(reminders('SENTRY_DSN')).toBeGreaterThan(0);
  });

  it('unknown secret name is refused', async () => {
    await bot.command(ALEX, '/incident rotated AWS_KEY');
    expect(ephemeral(bot, ALEX).text).toContain('"AWS_KEY" is not a secret the bot tracks');
  });
});

describe('schedule configuration', () => {
  it('invalid BACKUP_CRON stops start-up with the variable and value', () => {
    const dir = tempDir('cron-');
    const config = loadConfig({ DATABASE_PATH: join(dir.path, 'bot.sqlite3'), BACKUP_CRON: 'every night', PORT: '3999' });
    let error: unknown;
    try {
      createBot({ config, logger: captureLogger().logger });
    } catch (caught) {
      error = caught;
    }
    dir.remove();
    expect(error).toBeInstanceOf(ScheduleConfigError);
    expect((error as Error).message).toContain('BACKUP_CRON');
    expect((error as Error).message).toContain('every night');
  });

  it('invalid SCHEDULE_TZ stops start-up with the variable and value', () => {
    const dir = tempDir('tz-');
    const config = loadConfig({ DATABASE_PATH: join(dir.path, 'bot.sqlite3'), SCHEDULE_TZ: 'Mars/Olympus', PORT: '3999' });
    expect(() => createBot({ config, logger: captureLogger().logger })).toThrow(/SCHEDULE_TZ[\s\S]*Mars\/Olympus/);
    dir.remove();
  });
});
