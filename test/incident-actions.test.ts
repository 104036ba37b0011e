import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { EnvFileStore } from '../src/actions/secrets/env-file.ts';
import { listAudit } from '../src/store/audit.ts';
import { ALEX, GUEST, SAM, startTestBot, type TestBot } from './helpers/bot.ts';
import { botEnvFor, DjangoBrowser, siteEnvValue, startDjango, type DjangoSite } from './helpers/django.ts';
import { leakSites } from './helpers/leaks.ts';

function stepBlocks(bot: TestBot, stepId: string): string {
  const checklist = bot.messages().find((message) => message.text.startsWith('Checklist for incident'))!;
  return JSON.stringify((checklist.blocks as Array<{ block_id?: string }>).filter((block) => block.block_id?.startsWith(`step|${stepId}|`)));
}

function ephemerals(bot: TestBot, user: string): string[] {
  return bot.messages().filter((message) => message.ephemeralTo === user).map((message) => message.text);
}

describe('incident actions on a real Django 4.2', () => {
  let site: DjangoSite;
  let bot: TestBot;

  beforeAll(async () => {
    site = await startDjango();
  }, 60_000);
  afterAll(async () => {
    await site.stop();
  });

  beforeEach(async () => {
    bot = await startTestBot({ env: botEnvFor(site) });
    await bot.command(ALEX, '/incident secret-key Key pasted in a public gist');
  });
  afterEach(async () => {
    await bot.close();
  });

  it('rotation writes a new key and shows only its fingerprint', async () => {
    const before = (await siteEnvValue(site, 'DJANGO_SECRET_KEY'))!;
    await bot.click(ALEX, 'step.run', 'rotate');
    const after = (await siteEnvValue(site, 'DJANGO_SECRET_KEY'))!;
    expect(after).not.toBe(before);
    expect(after).toHaveLength(50);
    const blocks = stepBlocks(bot, 'rotate');
    expect(blocks).toContain(':white_check_mark: *2. Rotate DJANGO_SECRET_KEY*');
    expect(blocks).toMatch(/New key [0-9a-f]{8} written/);
  });

  it('generated key appears in no Slack payload, log line or database file', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    const key = (await siteEnvValue(site, 'DJANGO_SECRET_KEY'))!;
    expect(leakSites(bot, key)).toEqual([]);
  });

  it('incident rotation keeps no fallback', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    expect((await siteEnvValue(site, 'DJANGO_SECRET_KEY_FALLBACKS')) ?? '').toBe('');
  });

  it('incident rotation drops older fallbacks', async () => {
    // A planned rotation a few hours earlier left its old key as a fallback.
    await new EnvFileStore(site.envFile).write({ DJANGO_SECRET_KEY_FALLBACKS: 'an-older-key-from-the-planned-rotation' });
    await bot.click(ALEX, 'step.run', 'rotate');
    expect((await siteEnvValue(site, 'DJANGO_SECRET_KEY_FALLBACKS')) ?? '').toBe('');
  });

  it('incident rotation logs users out at once', async () => {
    const browser = new DjangoBrowser(site.baseUrl);
    expect(await browser.login('alice')).toBe(200);
    expect(await browser.whoami()).toBe('alice');
    await bot.click(ALEX, 'step.run', 'rotate');
    expect(await browser.whoami()).toBeUndefined();
  });

  it('two responders pressing at once run the action once', async () => {
    // Both press the button as their clients showed it, 100 ms apart: Sam's
    // client still shows the message from before Alex's press.
    const checklist = bot.messages().find((message) => message.text.startsWith('Checklist for incident'))!;
    const stale = bot.slack.workspace.addMessage({ ...checklist, ts: bot.slack.workspace.nextTs() } as never);
    const press = (user: string, ts: string) =>
      bot.slack.delivery.click({ user, channel: 'C0SBXINCIDENTS', messageTs: ts, blockId: 'step|rotate|actions', actionId: 'step.run', confirmed: true });
    await Promise.all([press(ALEX, checklist.ts), new Promise((resolve) => setTimeout(resolve, 100)).then(() => press(SAM, stale.ts))]);
    await bot.settle();
    const runs = bot.bot.db.prepare("SELECT count(*) AS n FROM action_runs WHERE step_id = 'rotate'").get() as { n: number };
    expect(runs.n).toBe(1);
    const replies = [...ephemerals(bot, ALEX), ...ephemerals(bot, SAM)];
    expect(replies.some((text) => /Run 1 of this action (is already running|already succeeded)/.test(text))).toBe(true);
  });

  it('pressing again after success names the earlier run', async () => {
    // Sam's client still shows the checklist from before the rotation.
    const checklist = bot.messages().find((message) => message.text.startsWith('Checklist for incident'))!;
    const stale = bot.slack.workspace.addMessage({ ...checklist, ts: bot.slack.workspace.nextTs() } as never);
    await bot.click(ALEX, 'step.run', 'rotate');
    await bot.slack.delivery.click({ user: SAM, channel: 'C0SBXINCIDENTS', messageTs: stale.ts, blockId: 'step|rotate|actions', actionId: 'step.run', confirmed: true });
    await bot.settle();
    expect(ephemerals(bot, SAM).at(-1)).toMatch(/already (succeeded|done)/);
  });

  it('a rotated step offers no Undo', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    expect(stepBlocks(bot, 'rotate')).not.toContain('step.undo');
  });

  it('guest is refused and the attempt is audited', async () => {
    await bot.click(GUEST, 'step.run', 'rotate');
    expect(ephemerals(bot, GUEST).at(-1)).toContain('Only responders can run actions');
    const refusals = listAudit(bot.bot.db, 1).filter((entry) => entry.event === 'permission.refused' && entry.actor === GUEST);
    expect(refusals).toHaveLength(1);
  });

  it('invalidate sessions empties django_session', async () => {
    const browser = new DjangoBrowser(site.baseUrl);
    await browser.login('bob');
    await bot.click(ALEX, 'step.run', 'invalidate');
    const django = new Database(site.databasePath, { readonly: true });
    const count = django.prepare('SELECT count(*) AS n FROM django_session').get() as { n: number };
    django.close();
    expect(count.n).toBe(0);
    expect(stepBlocks(bot, 'invalidate')).toMatch(/Deleted \d+ session/);
  });

  async function lock(names: string): Promise<void> {
    await bot.click(ALEX, 'step.run', 'lock');
    const view = bot.slack.workspace.openStack(ALEX).at(-1)!;
    await bot.slack.delivery.submit({ user: ALEX, viewId: view.id, values: { input_accounts: { accounts: names } } });
    await bot.settle();
  }

  it('lock accounts locks the named accounts', async () => {
    await lock('alice');
    expect(stepBlocks(bot, 'lock')).toContain(':white_check_mark: *5. Lock exposed user accounts*');
    expect(await new DjangoBrowser(site.baseUrl).login('alice')).toBe(401);
  });

  it('unknown account is reported and the step stays open', async () => {
    await lock('alice\nnobody@example.com');
    const blocks = stepBlocks(bot, 'lock');
    expect(blocks).toContain('Not found: nobody@example.com');
    expect(blocks).toContain(':white_large_square: *5. Lock exposed user accounts*');
    expect(await new DjangoBrowser(site.baseUrl).login('alice')).toBe(401);
  });

  it('lock accounts runs again with corrected names', async () => {
    await lock('nobdy');
    await lock('bob');
    expect(stepBlocks(bot, 'lock')).toContain(':white_check_mark: *5. Lock exposed user accounts*');
    expect(await new DjangoBrowser(site.baseUrl).login('bob')).toBe(401);
  });
});

describe('actions without configuration', () => {
  let bot: TestBot;
  beforeEach(async () => {
    bot = await startTestBot();
    await bot.command(ALEX, '/incident secret-key leak');
  });
  afterEach(async () => {
    await bot.close();
  });

  it('step says what to set and offers no run button', async () => {
    const blocks = stepBlocks(bot, 'rotate');
    expect(blocks).toContain('Action not configured: set SECRET_STORE, DJANGO_RESTART_COMMAND, DJANGO_HEALTH_URL');
    expect(blocks).not.toContain('step.run');
  });
});

describe('periodic rotation on a real Django 4.2', () => {
  let site: DjangoSite;
  let bot: TestBot;

  beforeAll(async () => {
    site = await startDjango();
  }, 60_000);
  afterAll(async () => {
    await site.stop();
  });
  beforeEach(async () => {
    bot = await startTestBot({ env: botEnvFor(site) });
  });
  afterEach(async () => {
    await bot.close();
  });

  it('old key stays a fallback, then the follow-up button removes it', async () => {
    // Bob uses the site during the fallback window, so Django moves his
    // session to the new key; Alice stays idle and still has the old one.
    const browser = new DjangoBrowser(site.baseUrl);
    const idle = new DjangoBrowser(site.baseUrl);
    expect(await browser.login('bob')).toBe(200);
    expect(await idle.login('alice')).toBe(200);
    await bot.command(ALEX, '/incident rotate-secret-key quarterly');
    await bot.click(ALEX, 'step.run', 'rotate');
    expect(await siteEnvValue(site, 'DJANGO_SECRET_KEY_FALLBACKS')).toBeTruthy();
    expect(await browser.whoami()).toBe('bob');

    bot.bot.adjustableClock!.advance(24 * 3_600_000 + 1000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await bot.settle();
    const prompt = bot.messages().find((message) => message.text === 'Time to remove the old key from the fallbacks');
    expect(prompt).toBeDefined();

    await bot.click(ALEX, 'incident.follow_up');
    expect((await siteEnvValue(site, 'DJANGO_SECRET_KEY_FALLBACKS')) ?? '').toBe('');
    expect(await idle.whoami()).toBeUndefined();
    expect(await browser.whoami()).toBe('bob');
  });
});
