import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { App, LogLevel, type types } from '@slack/bolt';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { startSlackDouble, type SlackDouble } from '../src/sandbox/server.ts';
import { launchBrowser, type TestBrowser } from './helpers/browser.ts';

const BOT_TOKEN = 'xoxb-sandbox-page-token';
const SIGNING_SECRET = 'sandbox-page-signing-secret';

const confirmRotation: types.ConfirmationDialog = {
  title: { type: 'plain_text', text: 'Rotate the key?' },
  text: { type: 'mrkdwn', text: 'This writes a *new* SECRET_KEY.' },
  confirm: { type: 'plain_text', text: 'Rotate' },
  deny: { type: 'plain_text', text: 'Cancel' },
  style: 'danger',
};

function incidentBlocks(stepText: string, finished: boolean): types.KnownBlock[] {
  const blocks: types.KnownBlock[] = [
    { type: 'header', text: { type: 'plain_text', text: 'SECRET_KEY compromised' } },
    { type: 'section', block_id: 'step_1', text: { type: 'mrkdwn', text: stepText } },
    {
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: 'Due <!date^1700000000^{date_short_pretty} at {time}|2023-11-14 22:13 UTC>',
        },
      ],
    },
    { type: 'divider' },
  ];
  if (!finished) {
    blocks.push({
      type: 'actions',
      block_id: 'step_1_actions',
      elements: [
        {
          type: 'button',
          action_id: 'step_done',
          value: 'step-1',
          text: { type: 'plain_text', text: 'Done' },
          style: 'primary',
        },
        {
          type: 'button',
          action_id: 'rotate_key',
          value: 'step-1',
          text: { type: 'plain_text', text: 'Rotate' },
          style: 'danger',
          confirm: confirmRotation,
        },
        {
          type: 'button',
          action_id: 'skip_step',
          value: 'step-1',
          text: { type: 'plain_text', text: 'Skip' },
        },
      ],
    });
  }
  return blocks;
}

const skipModal = (channel: string, ts: string) => ({
  type: 'modal',
  callback_id: 'skip_reason',
  private_metadata: JSON.stringify({ channel, ts }),
  title: { type: 'plain_text', text: 'Skip step' },
  submit: { type: 'plain_text', text: 'Skip' },
  close: { type: 'plain_text', text: 'Cancel' },
  blocks: [
    {
      type: 'input',
      block_id: 'reason',
      label: { type: 'plain_text', text: 'Why skip it?' },
      element: { type: 'plain_text_input', action_id: 'text', multiline: true },
    },
  ],
});

/** A tiny Bolt app that handles /incident the way the real bot will, over signed HTTP. */
function createBot(double: SlackDouble): App {
  const app = new App({
    token: BOT_TOKEN,
    botId: 'B0SBXBOT',
    botUserId: 'U0SBXBOT',
    signingSecret: SIGNING_SECRET,
    logLevel: LogLevel.ERROR,
    clientOptions: { slackApiUrl: double.apiUrl, retryConfig: { retries: 0 } },
  });

  app.command('/incident', async ({ ack, command, client }) => {
    await ack();
    await client.chat.postMessage({
      channel: command.channel_id,
      text: `Incident declared: ${command.text}`,
      blocks: incidentBlocks('*Step 1:* rotate the key', false),
    });
  });

  app.action('step_done', async ({ ack, body, client }) => {
    await ack();
    const action = body as {
      channel: { id: string };
      message: { ts: string };
      user: { id: string };
    };
    await client.chat.update({
      channel: action.channel.id,
      ts: action.message.ts,
      text: 'Step 1 done',
      blocks: incidentBlocks(`*Step 1:* done by <@${action.user.id}>`, true),
    });
  });

  app.action('rotate_key', async ({ ack, respond, body }) => {
    await ack();
    await respond({ response_type: 'ephemeral', text: `Rotation confirmed by <@${body.user.id}>` });
  });

  app.action('skip_step', async ({ ack, body, client }) => {
    await ack();
    const action = body as { trigger_id: string; channel: { id: string }; message: { ts: string } };
    await client.views.open({
      trigger_id: action.trigger_id,
      view: skipModal(action.channel.id, action.message.ts) as never,
    });
  });

  app.view('skip_reason', async ({ ack, view, body, client }) => {
    const reason = view.state.values.reason.text.value ?? '';
    if (reason.trim().length < 5) {
      await ack({
        response_action: 'errors',
        errors: { reason: 'Give a reason of at least 5 characters' },
      });
      return;
    }
    await ack();
    const { channel, ts } = JSON.parse(view.private_metadata) as { channel: string; ts: string };
    await client.chat.postMessage({
      channel,
      thread_ts: ts,
      text: `Skipped by <@${body.user.id}>: ${reason}`,
    });
  });

  return app;
}

describe('sandbox page', () => {
  let double: SlackDouble;
  let bot: App;
  let browser: TestBrowser;

  beforeAll(async () => {
    double = await startSlackDouble({ botToken: BOT_TOKEN, signingSecret: SIGNING_SECRET });
    bot = createBot(double);
    const server = (await bot.start({ port: 0, host: '127.0.0.1' })) as Server;
    double.setBotEventsUrl(
      `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`,
    );
    browser = await launchBrowser();
  });

  afterAll(async () => {
    await browser?.close();
    await bot?.stop();
    await double?.close();
  });

  beforeEach(async () => {
    await browser.page.goto(double.url);
    await browser.page.locator('body[data-connected="true"]').waitFor();
    // The page keeps the acting user in localStorage; each test starts as Alex.
    await browser.page.locator('[data-testid="acting-user"]').selectOption('U0SBXALEX');
  });

  async function declareIncident(): Promise<string> {
    const { page } = browser;
    const before = await page.locator('#messages [data-testid="message"]').count();
    await page.locator('[data-testid="composer"]').fill('/incident secret-key Key leaked');
    await page.locator('[data-testid="composer"]').press('Enter');
    const message = page.locator('#messages [data-testid="message"]').nth(before);
    await message.locator('[data-action-id="step_done"]').waitFor();
    return (await message.getAttribute('data-ts')) as string;
  }

  it('command and button update message', async () => {
    const { page } = browser;
    const ts = await declareIncident();
    const message = page.locator(`#messages [data-ts="${ts}"]`);

    await message.locator('[data-block-id="step_1_actions"] [data-action-id="step_done"]').click();
    await message.getByText('done by @Alex').waitFor();

    expect(await message.locator('[data-action-id="step_done"]').count()).toBe(0);
    expect(await message.locator('.edited').count()).toBe(1);
    expect(double.workspace.getMessage('C0SBXINCIDENTS', ts)?.text).toBe('Step 1 done');
  });

  it('header and mrkdwn render as elements', async () => {
    const { page } = browser;
    const ts = await declareIncident();
    const message = page.locator(`#messages [data-ts="${ts}"]`);

    expect(await message.locator('h3.block-header').textContent()).toBe('SECRET_KEY compromised');
    expect(await message.locator('[data-block-id="step_1"] strong').textContent()).toBe('Step 1:');
    expect(await message.locator('time.slack-date').count()).toBe(1);
  });

  it('confirm dialog gates the button', async () => {
    const { page } = browser;
    const ts = await declareIncident();
    const rotate = page.locator(`#messages [data-ts="${ts}"] [data-action-id="rotate_key"]`);

    await rotate.click();
    await page.locator('[data-testid="confirm-dialog"]').waitFor();
    expect(await page.locator('[data-testid="confirm-dialog"] strong').textContent()).toBe('new');
    await page.locator('[data-confirm-answer="deny"]').click();
    const afterDeny = double.workspace
      .listMessages()
      .filter((m) => m.text.startsWith('Rotation confirmed')).length;

    await rotate.click();
    await page.locator('[data-confirm-answer="confirm"]').click();
    await page.getByText('Rotation confirmed by @Alex').waitFor();

    expect(afterDeny).toBe(0);
    expect(await page.locator('.message.ephemeral .ephemeral-note').last().textContent()).toBe(
      'Only visible to you',
    );
  });

  it('ephemeral reply is hidden from others', async () => {
    const { page } = browser;
    const ts = await declareIncident();
    await page.locator(`#messages [data-ts="${ts}"] [data-action-id="rotate_key"]`).click();
    await page.locator('[data-confirm-answer="confirm"]').click();
    await page.getByText('Rotation confirmed by @Alex').last().waitFor();

    await page.locator('[data-testid="acting-user"]').selectOption('U0SBXSAM');
    await page.locator('#acting-user-note').getByText('U0SBXSAM').waitFor();

    expect(await page.getByText('Rotation confirmed by @Alex').count()).toBe(0);
  });

  it('modal shows errors then submits', async () => {
    const { page } = browser;
    const ts = await declareIncident();
    await page.locator(`#messages [data-ts="${ts}"] [data-action-id="skip_step"]`).click();
    const modal = page.locator('[data-testid="modal"]');
    await modal.waitFor();

    await modal.locator('textarea[data-action-id="text"]').fill('no');
    await modal.locator('[data-modal-submit]').click();
    await modal.locator('[data-error-for="reason"]').waitFor();
    expect(await modal.locator('[data-error-for="reason"]').textContent()).toBe(
      'Give a reason of at least 5 characters',
    );
    expect(await modal.locator('textarea[data-action-id="text"]').inputValue()).toBe('no');

    await modal.locator('textarea[data-action-id="text"]').fill('Key was never deployed');
    await modal.locator('[data-modal-submit]').click();
    await modal.waitFor({ state: 'detached' });
    await page
      .locator(`#messages [data-ts="${ts}"] [data-open-thread]`)
      .getByText('1 reply')
      .click();

    await page.locator('#thread').getByText('Skipped by @Alex: Key was never deployed').waitFor();
    expect(await page.locator('#thread [data-testid="message"]').count()).toBe(2);
  });

  it('clock buttons move the bot clock', async () => {
    const { page } = browser;
    const before = double.clock.now();
    const shownBefore = await page.locator('#clock-utc').textContent();

    await page.locator('[data-advance-ms="900000"]').click();
    await page.waitForFunction(
      (previous) => document.getElementById('clock-utc')?.textContent !== previous,
      shownBefore,
    );

    const moved = double.clock.now() - before;
    expect(moved).toBeGreaterThanOrEqual(900_000);
    expect(moved).toBeLessThan(960_000);
  });

  it('bot mrkdwn renders every format', async () => {
    const { page } = browser;
    const text = [
      '*bold* _italic_ ~struck~ `SECRET_KEY_FALLBACKS`',
      '<https://example.com/runbook?a=1&amp;b=2|the runbook> <javascript:alert(1)|bad link>',
      '<@U0SBXSAM> <#C0SBXOPS> <!here> <!subteam^S0SBXRESP> &lt;b&gt;not bold&lt;/b&gt;',
      '```manage.py check --deploy```',
    ].join('\n');
    const response = await fetch(`${double.apiUrl}chat.postMessage`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${BOT_TOKEN}` },
      body: JSON.stringify({ channel: 'C0SBXINCIDENTS', text }),
    });
    const { ts } = (await response.json()) as { ts: string };
    const message = page.locator(`#messages [data-ts="${ts}"]`);
    await message.waitFor();
    const link = message.locator('a');

    expect(await message.locator('strong').textContent()).toBe('bold');
    expect(await message.locator('em').textContent()).toBe('italic');
    expect(await message.locator('s').textContent()).toBe('struck');
    expect(await message.locator('code').textContent()).toBe('SECRET_KEY_FALLBACKS');
    expect(await link.count()).toBe(1);
    expect(await link.getAttribute('href')).toBe('https://example.com/runbook?a=1&b=2');
    expect(await link.getAttribute('rel')).toBe('noopener noreferrer');
    expect(await message.getByText('bad link').count()).toBe(1);
    expect(await message.locator('.mention').allTextContents()).toEqual([
      '@Sam',
      '@here',
      '@responders',
    ]);
    expect(await message.locator('.channel-link').textContent()).toBe('#ops');
    expect(await message.locator('b').count()).toBe(0);
    expect(await message.getByText('<b>not bold</b>').count()).toBe(1);
    expect(await message.locator('pre.code-block').textContent()).toBe('manage.py check --deploy');
  });

  it('typed markup stays plain text', async () => {
    const { page } = browser;
    const typed = '<img src=x onerror="window.hacked=1"> *bold* <script>window.hacked=2</script>';
    await page.locator('[data-testid="composer"]').fill(typed);
    await page.locator('[data-testid="composer"]').press('Enter');
    await page.getByText('<img src=x onerror="window.hacked=1">', { exact: false }).waitFor();

    expect(await page.locator('#messages img').count()).toBe(0);
    expect(await page.locator('#messages script').count()).toBe(0);
    expect(
      await page.evaluate(() => (window as unknown as { hacked?: number }).hacked),
    ).toBeUndefined();
  });

  it('page stays on loopback without errors', () => {
    expect(browser.blockedRequests).toEqual([]);
    expect(browser.pageErrors).toEqual([]);
  });
});
