import { createHmac } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { EnvFileStore } from '../src/actions/secrets/env-file.ts';
import { listWebhookEvents } from '../src/store/webhook-events.ts';
import { ALEX, CHANNEL, startTestBot, type TestBot } from './helpers/bot.ts';
import { tempDir } from './helpers/engine.ts';
import { leakSites } from './helpers/leaks.ts';
import { startHealthServer } from './helpers/health-server.ts';
import { startSentryServer, type SentryServer } from './helpers/sentry-server.ts';

const TOKEN = 'sntrys_test_token_0123456789abcdef';
const WEBHOOK_SECRET = 'sentry-client-secret-for-tests';
const HOUR = 3_600_000;

function failedLoginAlert() {
  return {
    action: 'triggered',
    actor: { id: 'sentry', name: 'Sentry', type: 'application' },
    data: {
      event: { event_id: 'e1', issue_id: '1', level: 'warning', title: 'Failed login for admin', web_url: 'https://sentry.example/issues/1/' },
      triggered_rule: 'runbook-bot: more than 20 failed logins in 5 min',
      issue_alert: { title: 'runbook-bot: more than 20 failed logins in 5 min', settings: [] },
    },
    installation: { uuid: 'a8e5d37a-696c-4c54-adb5-b3f28d64c7de' },
  };
}

async function postWebhook(bot: TestBot, body: string, signature?: string, requestId?: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${bot.bot.port}/webhooks/sentry`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'sentry-hook-resource': 'event_alert',
      ...(signature !== undefined ? { 'sentry-hook-signature': signature } : {}),
      ...(requestId !== undefined ? { 'request-id': requestId } : {}),
    },
    body,
  });
}

function sign(body: string): string {
  return createHmac('sha256', WEBHOOK_SECRET).update(body).digest('hex');
}

let health: Awaited<ReturnType<typeof startHealthServer>>;
beforeAll(async () => {
  health = await startHealthServer();
});
afterAll(async () => {
  await health.close();
});

describe('Sentry through the bot', () => {
  let sentry: SentryServer;
  let dir: ReturnType<typeof tempDir>;
  let bot: TestBot;
  let envFile: string;

  beforeEach(async () => {
    sentry = await startSentryServer({ org: 'acme', project: 'web', projectId: 42, tokens: { [TOKEN]: ['project:admin', 'project:write', 'project:read', 'event:read', 'alerts:write', 'org:read'] } });
    dir = tempDir('sentry-bot-');
    envFile = join(dir.path, '.env');
    const oldKey = sentry.addKey('Default');
    writeFileSync(envFile, `SENTRY_DSN=${sentry.dsnFor(oldKey)}\n`);
    bot = await startTestBot({
      env: {
        SENTRY_API_URL: sentry.baseUrl,
        SENTRY_AUTH_TOKEN: TOKEN,
        SENTRY_ORG: 'acme',
        SENTRY_PROJECT: 'web',
        SENTRY_WEBHOOK_SECRET: WEBHOOK_SECRET,
        SENTRY_ALERT_CHANNEL: CHANNEL,
        SECRET_STORE: 'env',
        DJANGO_ENV_FILE: envFile,
        DJANGO_RESTART_COMMAND: '/bin/true',
        DJANGO_HEALTH_URL: health.url,
      },
    });
  });
  afterEach(async () => {
    await bot.close();
    await sentry.close();
    dir.remove();
  });

  it('webhook with a bad signature gets 401 and records nothing', async () => {
    const body = JSON.stringify(failedLoginAlert());
    const response = await postWebhook(bot, body, 'f'.repeat(64));
    expect(response.status).toBe(401);
    expect(listWebhookEvents(bot.bot.db)).toHaveLength(0);
  });

  it('webhook without a signature gets 401', async () => {
    const response = await postWebhook(bot, JSON.stringify(failedLoginAlert()));
    expect(response.status).toBe(401);
  });

  it('failed-login alert is posted with a button that starts its runbook', async () => {
    const body = JSON.stringify(failedLoginAlert());
    const response = await postWebhook(bot, body, sign(body));
    expect(response.status).toBe(200);
    await bot.settle();
    const alert = bot.messages().find((message) => message.text.startsWith('Sentry alert:'))!;
    expect(JSON.stringify(alert.blocks)).toContain('runbook.start');

    await bot.click(ALEX, 'runbook.start');
    expect(bot.bot.engine.listOpen().map((incident) => incident.runbookId)).toEqual(['security-audit']);
  });

  it('replayed webhook with the same Request-ID posts once', async () => {
    const body = JSON.stringify(failedLoginAlert());
    for (let attempt = 0; attempt < 3; attempt++) expect((await postWebhook(bot, body, sign(body), 'f9a2c4e0-demo')).status).toBe(200);
    await bot.settle();
    expect(bot.messages().filter((message) => message.text.startsWith('Sentry alert:'))).toHaveLength(1);
  });

  it('oversized webhook gets 413', async () => {
    const body = JSON.stringify({ padding: 'x'.repeat(1_200_000) });
    expect((await postWebhook(bot, body, sign(body))).status).toBe(413);
  });

  it('unknown alert is recorded and ignored', async () => {
    const payload = failedLoginAlert();
    payload.data.triggered_rule = 'Some other rule';
    payload.data.issue_alert.title = 'Some other rule';
    const body = JSON.stringify(payload);
    expect((await postWebhook(bot, body, sign(body))).status).toBe(200);
    await bot.settle();
    expect(listWebhookEvents(bot.bot.db)[0].alert).toBeNull();
    expect(bot.messages().filter((message) => message.text.startsWith('Sentry alert:'))).toHaveLength(0);
  });

  it('audit step reports forged-session signals with counts', async () => {
    const now = bot.bot.clock.now();
    sentry.addIssue({ id: '901', title: 'Session data corrupted', logger: 'django.security.SuspiciousSession', message: 'Session data corrupted', events: [new Date(now - 2 * HOUR).toISOString(), new Date(now - HOUR).toISOString()] });
    await bot.command(ALEX, '/incident secret-key leak');
    await bot.click(ALEX, 'step.run', 'audit');
    const checklist = JSON.stringify(bot.messages().find((message) => message.text.startsWith('Checklist'))!.blocks);
    expect(checklist).toContain('suspicious signal');
    expect(checklist).toMatch(/Session data corrupted[^"]*: 2 events/);
  });

  it('sentry-dsn rotation writes a new public DSN and deactivates the leaked key', async () => {
    const before = await new EnvFileStore(envFile).read('SENTRY_DSN');
    await bot.command(ALEX, '/incident sentry-dsn leaked in a screenshot');
    await bot.click(ALEX, 'step.run', 'rotate');
    const after = await new EnvFileStore(envFile).read('SENTRY_DSN');
    expect(after).not.toBe(before);
    expect(sentry.keys.filter((key) => key.isActive)).toHaveLength(1);
    expect(leakSites(bot, after!)).toEqual([]);
  });
});

describe('approvals and responders', () => {
  let bot: TestBot;
  let dir: ReturnType<typeof tempDir>;

  afterEach(async () => {
    await bot.close();
    dir.remove();
  });

  async function start(env: Record<string, string>): Promise<void> {
    dir = tempDir('approve-');
    const envFile = join(dir.path, '.env');
    writeFileSync(envFile, 'DJANGO_SECRET_KEY=old-key-for-approval-tests-0123456789-0123456789ab\n');
    bot = await startTestBot({ env: { SECRET_STORE: 'env', DJANGO_ENV_FILE: envFile, DJANGO_RESTART_COMMAND: '/bin/true', DJANGO_HEALTH_URL: health.url, ...env } });
    await bot.command(ALEX, '/incident secret-key leak');
  }

  function ephemeralOf(user: string): string {
    return bot.messages().filter((message) => message.ephemeralTo === user).at(-1)!.text;
  }

  it('second approver is required for destructive actions', async () => {
    await start({ REQUIRE_SECOND_APPROVER: 'true' });
    await bot.click(ALEX, 'step.run', 'rotate');
    const runs = bot.bot.db.prepare("SELECT status FROM action_runs WHERE step_id = 'rotate'").all() as Array<{ status: string }>;
    expect(runs.map((run) => run.status)).toEqual(['requested']);
    await bot.click(ALEX, 'step.approve', 'rotate');
    expect(ephemeralOf(ALEX)).toContain('A second responder must approve');
    await bot.click('U0SBXSAM', 'step.approve', 'rotate');
    const after = bot.bot.db.prepare("SELECT status, approved_by FROM action_runs WHERE step_id = 'rotate'").get() as { status: string; approved_by: string };
    expect(after.approved_by).toBe('U0SBXSAM');
    expect(after.status).toBe('succeeded');
  });

  it('without RESPONDERS every action is refused, naming the variable', async () => {
    await start({ RESPONDERS: '' });
    await bot.click(ALEX, 'step.run', 'rotate');
    expect(ephemeralOf(ALEX)).toContain('RESPONDERS is not set');
    expect(bot.logs.lines.some((line) => line.includes('RESPONDERS is not set'))).toBe(true);
  });

  it('without RESPONDERS anyone may mark steps', async () => {
    await start({ RESPONDERS: '' });
    await bot.click('U0SBXGUEST', 'step.done', 'notify');
    const checklist = JSON.stringify(bot.messages().find((message) => message.text.startsWith('Checklist'))!.blocks);
    expect(checklist).toContain('Done by <@U0SBXGUEST>');
  });
});
