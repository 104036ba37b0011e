import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { listBackups } from '../src/store/backups.ts';
import { getSlot } from '../src/store/schedule-slots.ts';
import { startTestBot, type TestBot } from './helpers/bot.ts';
import { waitFor } from './helpers/child-bot.ts';
import { createDjangoProject, removeDjangoTemplate, type DjangoProject } from './helpers/django-db.ts';
import { tempDir } from './helpers/engine.ts';
import { leakSites } from './helpers/leaks.ts';
import { startPagerDutyServer, type PagerDutyServer } from './helpers/pagerduty-server.ts';
import { makeTestCertificates, type TestCertificates } from './helpers/tls.ts';

const ROUTING_KEY = 'R0UT1NGKEYbackup0123456789abcdef';
const OPS_CHANNEL = 'C0SBXOPS';
const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;

/** Returns the first 02:00 UTC after `ms`, when the default BACKUP_CRON (0 2 * * *) falls due. */
function nextBackupSlot(ms: number): number {
  const day = new Date(ms);
  const today = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), 2, 0);
  return today > ms ? today : today + DAY_MS;
}

/** Formats `ms` as the slot name the scheduler stores for UTC, such as `2026-12-05T02:00`. */
function slotName(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16);
}

/**
 * Moves the bot's clock a minute past the next daily backup slot, waits for
 * the scheduled backup to finish, then for the outbox. Returns the slot name.
 */
async function runDailyBackup(bot: TestBot): Promise<string> {
  const now = bot.bot.clock.now();
  const due = nextBackupSlot(now);
  const slot = slotName(due);

  bot.bot.adjustableClock!.advance(due + MINUTE_MS - now);
  await waitFor(() => {
    const row = getSlot(bot.bot.db, 'backup', slot);
    return row !== undefined && row.status !== 'running';
  }, 10_000, `backup slot ${slot}`);
  await bot.settle();
  return slot;
}

/**
 * Starts a bot that backs the test project up into `backupDir` and pages
 * `pagerDuty`. With `routingKey` undefined it gets no default routing key,
 * so `env` can set one per runbook. `env` overrides the rest.
 */
function startBackupBot(pagerDuty: PagerDutyServer, backupDir: string, env: Record<string, string> = {}, routingKey: string | undefined = ROUTING_KEY): Promise<TestBot> {
  mkdirSync(backupDir, { recursive: true });
  return startTestBot({
    env: {
      ...(routingKey ? { PAGERDUTY_ROUTING_KEY: routingKey } : {}),
      PAGERDUTY_SERVER: pagerDuty.host,
      OPS_CHANNEL,
      DJANGO_DATABASE_PATH: project.databasePath,
      BACKUP_DIR: backupDir,
      ...env,
    },
    pagerDutyCa: certificates.ca,
  });
}

function opsTexts(bot: TestBot): string[] {
  return bot.messages().filter((message) => message.channel === OPS_CHANNEL).map((message) => message.text);
}

function failureNotices(bot: TestBot): string[] {
  return opsTexts(bot).filter((text) => text.includes('Backup failed'));
}

let certificates: TestCertificates;
let project: DjangoProject;

beforeAll(() => {
  certificates = makeTestCertificates();
  project = createDjangoProject();
});

afterAll(() => {
  project.remove();
  removeDjangoTemplate();
  certificates.cleanup();
});

describe('scheduled backup into a missing folder', () => {
  let pagerDuty: PagerDutyServer;
  let dir: ReturnType<typeof tempDir>;
  let backupDir: string;
  let bot: TestBot;
  let slot: string;

  beforeEach(async () => {
    pagerDuty = await startPagerDutyServer(certificates, [ROUTING_KEY]);
    dir = tempDir('backup-page-');
    backupDir = join(dir.path, 'backups');
    bot = await startBackupBot(pagerDuty, backupDir);
    // The backup volume goes away after start-up, as an unmounted disk does.
    rmSync(backupDir, { recursive: true });
    slot = await runDailyBackup(bot);
  });

  afterEach(async () => {
    await bot.close();
    await pagerDuty.close();
    dir.remove();
  });

  it('failed backup sends one trigger', () => {
    expect(pagerDuty.events).toHaveLength(1);
    expect(pagerDuty.events[0].action).toBe('trigger');
  });

  it('page dedup key names the slot', () => {
    expect(pagerDuty.events[0].dedupKey).toBe(`runbook-bot-backup-${slot}`);
  });

  it('page summary names slot and cause', () => {
    const payload = pagerDuty.events[0].body.payload as { summary: string; source: string };

    expect(payload.summary).toContain(`backup@${slot} failed`);
    expect(payload.summary).toContain(backupDir);
    expect(payload.source).toBe('runbook-bot');
  });

  it('ops channel reports the failure once', () => {
    const notices = failureNotices(bot);

    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain(`backup@${slot}`);
    expect(notices[0]).toContain(backupDir);
    expect(notices[0]).toContain('/incident backup');
  });

  it('ops message says on-call is paged', () => {
    expect(failureNotices(bot)[0]).toContain('Paging on-call through PagerDuty');
  });

  it('slot and backup rows record the failure', () => {
    const failed = listBackups(bot.bot.db, { status: 'failed' });

    expect(getSlot(bot.bot.db, 'backup', slot)?.status).toBe('failed');
    expect(failed).toHaveLength(1);
    expect(failed[0].kind).toBe('database');
  });

  it('routing key reaches no output', () => {
    expect(leakSites(bot, ROUTING_KEY)).toEqual([]);
  });

  it('second failed day opens a second alert', async () => {
    const second = await runDailyBackup(bot);

    expect(pagerDuty.events.map((event) => event.dedupKey)).toEqual([
      `runbook-bot-backup-${slot}`,
      `runbook-bot-backup-${second}`,
    ]);
    expect(failureNotices(bot)).toHaveLength(2);
  });

  it('backup after the fix resolves the page', async () => {
    mkdirSync(backupDir);
    await runDailyBackup(bot);

    expect(pagerDuty.events).toHaveLength(2);
    expect(pagerDuty.events[1].action).toBe('resolve');
    expect(pagerDuty.events[1].dedupKey).toBe(`runbook-bot-backup-${slot}`);
    expect(failureNotices(bot)).toHaveLength(1);
  });

  it('resolution is reported in the ops channel', async () => {
    mkdirSync(backupDir);
    await runDailyBackup(bot);

    const resolved = bot.messages().filter((message) => message.channel === OPS_CHANNEL && message.text.includes('resolved in PagerDuty'));
    expect(resolved).toHaveLength(1);
  });

  it('two failed days resolve together', async () => {
    const second = await runDailyBackup(bot);
    mkdirSync(backupDir);
    await runDailyBackup(bot);

    const resolves = pagerDuty.events.filter((event) => event.action === 'resolve').map((event) => event.dedupKey);
    expect(resolves).toEqual([`runbook-bot-backup-${slot}`, `runbook-bot-backup-${second}`]);
  });

  it('a later good backup resolves nothing again', async () => {
    mkdirSync(backupDir);
    await runDailyBackup(bot);
    await runDailyBackup(bot);

    expect(pagerDuty.events.filter((event) => event.action === 'resolve')).toHaveLength(1);
  });

  it('page is sent at error severity', () => {
    expect((pagerDuty.events[0].body.payload as { severity: string }).severity).toBe('error');
  });
});

describe('scheduled backup that succeeds', () => {
  let pagerDuty: PagerDutyServer;
  let dir: ReturnType<typeof tempDir>;
  let bot: TestBot;

  beforeEach(async () => {
    pagerDuty = await startPagerDutyServer(certificates, [ROUTING_KEY]);
    dir = tempDir('backup-page-ok-');
    bot = await startBackupBot(pagerDuty, join(dir.path, 'backups'));
  });

  afterEach(async () => {
    await bot.close();
    await pagerDuty.close();
    dir.remove();
  });

  it('good backup sends no page', async () => {
    const slot = await runDailyBackup(bot);

    expect(getSlot(bot.bot.db, 'backup', slot)?.status).toBe('succeeded');
    expect(pagerDuty.requests).toHaveLength(0);
    expect(failureNotices(bot)).toEqual([]);
  });
});

describe('backup page when PagerDuty misbehaves', () => {
  let pagerDuty: PagerDutyServer;
  let dir: ReturnType<typeof tempDir>;
  let bot: TestBot | undefined;

  /** Starts a bot whose scheduled backups fail because BACKUP_DIR is removed after start-up. */
  async function startFailingBot(env: Record<string, string> = {}): Promise<TestBot> {
    bot = await startBackupBot(pagerDuty, join(dir.path, 'missing'), env);
    rmSync(join(dir.path, 'missing'), { recursive: true });
    return bot;
  }

  beforeEach(async () => {
    pagerDuty = await startPagerDutyServer(certificates, [ROUTING_KEY]);
    dir = tempDir('backup-page-pd-');
  });

  afterEach(async () => {
    await bot?.close();
    bot = undefined;
    await pagerDuty.close();
    dir.remove();
  });

  it('page lands once after an outage', async () => {
    const running = await startFailingBot();
    await pagerDuty.stop();
    const slot = await runDailyBackup(running);

    await pagerDuty.listen();
    // The outbox backs off for at most five minutes between attempts.
    for (let step = 0; step < 3; step++) {
      running.bot.adjustableClock!.advance(6 * MINUTE_MS);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await waitFor(() => pagerDuty.events.length >= 1, 10_000, 'the backup page');
    await running.settle();

    expect(pagerDuty.events.map((event) => event.dedupKey)).toEqual([`runbook-bot-backup-${slot}`]);
    expect(opsTexts(running).filter((text) => /The page for backup backup@\S+ reached PagerDuty after \d+ attempts/.test(text))).toHaveLength(1);
  });

  it('outage is reported in the ops channel', async () => {
    const running = await startFailingBot();
    await pagerDuty.stop();
    const slot = await runDailyBackup(running);

    const notices = opsTexts(running).filter((text) => text.includes('PagerDuty is unreachable'));
    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain(`The page for backup backup@${slot} is queued and retrying`);
  });

  it('rejected page is reported in the ops channel', async () => {
    const running = await startFailingBot({ PAGERDUTY_ROUTING_KEY: 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' });
    await runDailyBackup(running);

    const notices = opsTexts(running).filter((text) => text.includes(`The page for backup backup@`));
    expect(pagerDuty.events).toHaveLength(0);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain('was not delivered: PagerDuty rejected the event (HTTP 400)');
    expect(notices[0]).toContain('Check PAGERDUTY_ROUTING_KEY');
  });

  it('without a routing key the message says so', async () => {
    const running = await startFailingBot({ PAGERDUTY_ROUTING_KEY: '' });
    await runDailyBackup(running);
    const notices = failureNotices(running);

    expect(pagerDuty.requests).toHaveLength(0);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toContain('On-call was not paged');
    expect(notices[0]).toContain('PAGERDUTY_ROUTING_KEY');
  });
});

describe('backup page with a backup routing key only', () => {
  const BACKUP_KEY = 'b'.repeat(32);
  let pagerDuty: PagerDutyServer;
  let dir: ReturnType<typeof tempDir>;
  let bot: TestBot;

  beforeEach(async () => {
    pagerDuty = await startPagerDutyServer(certificates, [BACKUP_KEY]);
    dir = tempDir('backup-page-key-');
    const backupDir = join(dir.path, 'backups');
    bot = await startBackupBot(pagerDuty, backupDir, { PAGERDUTY_ROUTING_KEY_BACKUP: BACKUP_KEY }, undefined);
    rmSync(backupDir, { recursive: true });
    await runDailyBackup(bot);
  });

  afterEach(async () => {
    await bot.close();
    await pagerDuty.close();
    dir.remove();
  });

  it('page goes through the backup key', () => {
    expect(pagerDuty.events.map((event) => event.body.routing_key)).toEqual([BACKUP_KEY]);
  });
});
