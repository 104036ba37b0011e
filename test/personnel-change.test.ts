import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { EnvFileStore } from '../src/actions/secrets/env-file.ts';
import { fingerprint } from '../src/bot/fingerprint.ts';
import { getIncident } from '../src/store/incidents.ts';
import { rotationHistory } from '../src/store/rotations.ts';
import { ALEX, GUEST, startTestBot, type TestBot } from './helpers/bot.ts';
import { botEnvFor, DjangoBrowser, siteEnvValue, startDjango, type DjangoSite } from './helpers/django.ts';
import { leakSites } from './helpers/leaks.ts';
import { startSentryServer, type SentryServer, type StoredClientKey } from './helpers/sentry-server.ts';

const SENTRY_TOKEN = 'sntrys_personnel_test_token_0123456789';
const STEP_TITLES = [
  'Revoke their access to the secret store, servers and Sentry',
  'Rotate DJANGO_SECRET_KEY',
  'Rotate SENTRY_DSN',
  'Rotate any other credentials they held (deploy keys, API tokens)',
];

/** Finds the checklist message of an incident by the incident's number. */
function checklistOf(bot: TestBot, incidentId: number) {
  return bot.messages().find((message) => message.text === `Checklist for incident #${incidentId}, part 1`)!;
}

function stepBlocks(bot: TestBot, incidentId: number, stepId: string): string {
  const blocks = checklistOf(bot, incidentId).blocks as Array<{ block_id?: string }>;
  return JSON.stringify(blocks.filter((block) => block.block_id?.startsWith(`step|${stepId}|`)));
}

function confirmTextOf(bot: TestBot, incidentId: number, stepId: string): string | undefined {
  const blocks = checklistOf(bot, incidentId).blocks as Array<{
    block_id?: string;
    elements?: Array<{ action_id?: string; confirm?: { text: { text: string } } }>;
  }>;
  const actions = blocks.find((block) => block.block_id === `step|${stepId}|actions`);
  return actions?.elements?.find((element) => element.action_id === 'step.run')?.confirm?.text.text;
}

function ephemeralsTo(bot: TestBot, user: string): string[] {
  return bot.messages().filter((message) => message.ephemeralTo === user).map((message) => message.text);
}

describe('personnel-change incident on a real Django 4.2', () => {
  let site: DjangoSite;
  let sentry: SentryServer;
  let oldSentryKey: StoredClientKey;
  let bot: TestBot;

  beforeAll(async () => {
    site = await startDjango();
  }, 60_000);

  afterAll(async () => {
    await site.stop();
  });

  beforeEach(async () => {
    sentry = await startSentryServer({
      org: 'acme',
      project: 'web',
      projectId: 42,
      tokens: { [SENTRY_TOKEN]: ['project:admin', 'project:write', 'project:read', 'event:read'] },
    });
    oldSentryKey = sentry.addKey('Default');
    await new EnvFileStore(site.envFile).write({
      SENTRY_DSN: sentry.dsnFor(oldSentryKey),
      DJANGO_SECRET_KEY_FALLBACKS: '',
    });
    bot = await startTestBot({
      env: {
        ...botEnvFor(site),
        SENTRY_API_URL: sentry.baseUrl,
        SENTRY_AUTH_TOKEN: SENTRY_TOKEN,
        SENTRY_ORG: 'acme',
        SENTRY_PROJECT: 'web',
      },
    });
  });

  afterEach(async () => {
    await bot.close();
    await sentry.close();
  });

  async function declare(): Promise<number> {
    await bot.command(ALEX, '/incident personnel-change Gus left the company today');
    return bot.bot.engine.listOpen().find((incident) => incident.runbookId === 'personnel-change')!.id;
  }

  it('checklist lists the four steps', async () => {
    const id = await declare();
    const stepIds = ['revoke', 'rotate-secret-key', 'rotate-sentry-dsn', 'other-credentials'];

    for (const [index, stepId] of stepIds.entries()) {
      expect(stepBlocks(bot, id, stepId)).toContain(`:white_large_square: *${index + 1}. ${STEP_TITLES[index]}`);
    }
    expect(getIncident(bot.bot.db, id)?.severity).toBe('high');
  });

  it('rotate buttons ask for confirmation', async () => {
    const id = await declare();

    expect(confirmTextOf(bot, id, 'rotate-secret-key')).toBe('Writes a new key to the secret store, keeps no fallback, and restarts the app.');
    expect(confirmTextOf(bot, id, 'rotate-sentry-dsn')).toContain('deactivates the old key');
  });

  it('unconfirmed click changes nothing', async () => {
    await declare();
    const before = await siteEnvValue(site, 'DJANGO_SECRET_KEY');

    await expect(bot.click(ALEX, 'step.run', 'rotate-secret-key', { confirmed: false })).rejects.toThrow(/confirm/);
    expect(await siteEnvValue(site, 'DJANGO_SECRET_KEY')).toBe(before);
  });

  it('secret key rotation keeps no fallback', async () => {
    await declare();
    const before = await siteEnvValue(site, 'DJANGO_SECRET_KEY');

    await bot.click(ALEX, 'step.run', 'rotate-secret-key');
    const after = (await siteEnvValue(site, 'DJANGO_SECRET_KEY'))!;
    const loaded = await site.loadedKeys();

    expect(after).not.toBe(before);
    expect(after).toHaveLength(50);
    expect((await siteEnvValue(site, 'DJANGO_SECRET_KEY_FALLBACKS')) ?? '').toBe('');
    expect(loaded.secretKey).toBe(fingerprint(after));
    expect(loaded.fallbacks).toEqual([]);
  });

  it('secret key rotation ends existing sessions', async () => {
    const browser = new DjangoBrowser(site.baseUrl);
    expect(await browser.login('alice')).toBe(200);
    await declare();

    await bot.click(ALEX, 'step.run', 'rotate-secret-key');

    expect(await browser.whoami()).toBeUndefined();
  });

  it('fallback from an earlier rotation is dropped', async () => {
    // Alice stays idle after a quarterly rotation, so her session still
    // verifies only against the old key, which sits in the fallbacks. A
    // request from her now would move her session to the new key.
    const idle = new DjangoBrowser(site.baseUrl);
    expect(await idle.login('alice')).toBe(200);
    const quarterlyOldKey = (await siteEnvValue(site, 'DJANGO_SECRET_KEY'))!;
    await bot.command(ALEX, '/incident rotate-secret-key quarterly');
    await bot.click(ALEX, 'step.run', 'rotate');
    expect((await site.loadedKeys()).fallbacks).toHaveLength(1);

    // The leaver could read that fallback key as well as the current one.
    const id = await declare();
    await bot.click(ALEX, 'step.run', 'rotate-secret-key');

    expect((await siteEnvValue(site, 'DJANGO_SECRET_KEY_FALLBACKS')) ?? '').toBe('');
    expect((await site.loadedKeys()).fallbacks).toEqual([]);
    expect(await idle.whoami()).toBeUndefined();
    expect(stepBlocks(bot, id, 'rotate-secret-key')).toContain(`Older fallback keys removed: ${fingerprint(quarterlyOldKey)}`);
    expect(leakSites(bot, quarterlyOldKey)).toEqual([]);
  });

  it('sentry rotation deactivates the old key', async () => {
    await declare();

    await bot.click(ALEX, 'step.run', 'rotate-sentry-dsn');
    const newDsn = await siteEnvValue(site, 'SENTRY_DSN');
    const active = sentry.keys.filter((key) => key.isActive);

    expect(newDsn).not.toBe(sentry.dsnFor(oldSentryKey));
    expect(oldSentryKey.isActive).toBe(false);
    expect(active).toHaveLength(1);
    expect(newDsn).toBe(sentry.dsnFor(active[0]));
  });

  it('steps show fingerprints of the new values', async () => {
    const id = await declare();

    await bot.click(ALEX, 'step.run', 'rotate-secret-key');
    await bot.click(ALEX, 'step.run', 'rotate-sentry-dsn');
    const newKey = (await siteEnvValue(site, 'DJANGO_SECRET_KEY'))!;
    const newDsn = (await siteEnvValue(site, 'SENTRY_DSN'))!;

    expect(stepBlocks(bot, id, 'rotate-secret-key')).toContain(`New key ${fingerprint(newKey)} written`);
    expect(stepBlocks(bot, id, 'rotate-sentry-dsn')).toContain(`New Sentry DSN ${fingerprint(newDsn)} written`);
    expect(stepBlocks(bot, id, 'rotate-sentry-dsn')).toContain(`leaked key ${fingerprint(sentry.dsnFor(oldSentryKey))} deactivated`);
  });

  it('old and new values reach no output', async () => {
    const oldKey = (await siteEnvValue(site, 'DJANGO_SECRET_KEY'))!;
    const oldDsn = sentry.dsnFor(oldSentryKey);
    await declare();

    await bot.click(ALEX, 'step.run', 'rotate-secret-key');
    await bot.click(ALEX, 'step.run', 'rotate-sentry-dsn');
    const newKey = (await siteEnvValue(site, 'DJANGO_SECRET_KEY'))!;
    const newDsn = (await siteEnvValue(site, 'SENTRY_DSN'))!;

    expect(leakSites(bot, newKey)).toEqual([]);
    expect(leakSites(bot, newDsn)).toEqual([]);
    expect(leakSites(bot, oldKey)).toEqual([]);
    expect(leakSites(bot, oldDsn)).toEqual([]);
  });

  it('both rotations are recorded for reminders', async () => {
    const id = await declare();

    await bot.click(ALEX, 'step.run', 'rotate-secret-key');
    await bot.click(ALEX, 'step.run', 'rotate-sentry-dsn');
    const keyHistory = rotationHistory(bot.bot.db, 'DJANGO_SECRET_KEY', 5);
    const dsnHistory = rotationHistory(bot.bot.db, 'SENTRY_DSN', 5);

    expect(keyHistory.map((row) => row.incidentId)).toEqual([id]);
    expect(dsnHistory.map((row) => row.incidentId)).toEqual([id]);
    expect(keyHistory[0].source).toBe('bot');
  });

  it('finishing every step resolves the incident', async () => {
    const id = await declare();

    await bot.click(ALEX, 'step.done', 'revoke');
    await bot.click(ALEX, 'step.run', 'rotate-secret-key');
    await bot.click(ALEX, 'step.run', 'rotate-sentry-dsn');
    await bot.click(ALEX, 'step.done', 'other-credentials');

    expect(getIncident(bot.bot.db, id)?.status).toBe('resolved');
    expect(bot.messages().filter((message) => message.text === `Timeline of incident #${id}`)).toHaveLength(1);
  });

  it('guest may tick a step but not rotate', async () => {
    const id = await declare();
    const before = await siteEnvValue(site, 'DJANGO_SECRET_KEY');

    await bot.click(GUEST, 'step.done', 'revoke');
    await bot.click(GUEST, 'step.run', 'rotate-secret-key');

    expect(stepBlocks(bot, id, 'revoke')).toContain(':white_check_mark: *1.');
    expect(ephemeralsTo(bot, GUEST).at(-1)).toContain('Only responders can run actions');
    expect(await siteEnvValue(site, 'DJANGO_SECRET_KEY')).toBe(before);
  });
});
