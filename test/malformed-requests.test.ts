import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { signatureFor } from '../src/sandbox/delivery.ts';
import { malformedBodyReason } from '../src/bot/slack-request-guard.ts';
import { startTestBot, type TestBot } from './helpers/bot.ts';

/** Sends a correctly signed request, as a holder of the signing secret could. */
async function sendSigned(bot: TestBot, body: string, contentType = 'application/x-www-form-urlencoded') {
  const timestamp = Math.floor(Date.now() / 1000);
  const started = performance.now();
  const response = await fetch(bot.eventsUrl, {
    method: 'POST',
    body,
    signal: AbortSignal.timeout(10_000),
    headers: { 'content-type': contentType, 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': signatureFor(bot.slack.signingSecret, timestamp, body) },
  });
  return { status: response.status, text: await response.text(), ms: performance.now() - started };
}

const form = (payload: string) => `payload=${encodeURIComponent(payload)}`;

describe('malformed Slack requests', () => {
  let bot: TestBot;
  let results: Record<string, Awaited<ReturnType<typeof sendSigned>>>;
  const cases: Record<string, [string, string?]> = {
    'payload null': [form('null')],
    'JSON body null': ['null', 'application/json'],
    'payload array': [form('[]')],
    'payload string': [form('"x"')],
    'payload number': [form('7')],
    'payload empty object': [form('{}')],
    'actions missing': [form('{"type":"block_actions","user":{"id":"U0SBXALEX"}}')],
    'action without id': [form('{"type":"block_actions","user":{"id":"U0SBXALEX"},"actions":[{}]}')],
    'view missing': [form('{"type":"view_submission","user":{"id":"U0SBXALEX"}}')],
    'view without callback': [form('{"type":"view_submission","user":{"id":"U0SBXALEX"},"view":{}}')],
    'user missing': [form('{"type":"block_actions","actions":[{"action_id":"x"}]}')],
    'event callback': [form('{"type":"event_callback","event":null}')],
    'encoded payload key': ['%70ayload=null'],
  };

  beforeAll(async () => {
    bot = await startTestBot();
    const entries = await Promise.all(Object.entries(cases).map(async ([name, [body, type]]) => [name, await sendSigned(bot, body, type)] as const));
    results = Object.fromEntries(entries);
  }, 30_000);

  afterAll(async () => {
    await bot.close();
  });

  for (const name of Object.keys(cases)) {
    it(`${name} gets 400`, () => {
      expect(results[name].status).toBe(400);
    });
  }

  it('payload array says why', () => {
    expect(results['payload array'].text).toBe('Rejected: the request body is an array.');
  });

  it('actions missing says why', () => {
    expect(results['actions missing'].text).toBe('Rejected: a block_actions payload has no actions.');
  });

  it('payload array answered at once', () => {
    expect(results['payload array'].ms).toBeLessThan(1000);
  });

  it('payload null answered at once', () => {
    expect(results['payload null'].ms).toBeLessThan(1000);
  });

  it('encoded payload key says why', () => {
    expect(results['encoded payload key'].text).toBe('Rejected: the request body is null.');
  });

  it('payload null says why', () => {
    expect(results['payload null'].text).toBe('Rejected: the request body is null.');
  });

  it('oversized body gets 413', async () => {
    const body = `payload=${'x'.repeat(4 * 1024 * 1024)}`;
    expect((await sendSigned(bot, body)).status).toBe(413);
  });

  it('each rejection logged once', () => {
    const rejections = bot.logs.entries().filter((entry) => entry.msg === 'malformed Slack request rejected');
    expect(rejections.length).toBe(Object.keys(cases).length);
  });

  it('writes no incident', () => {
    expect((bot.bot.db.prepare('SELECT count(*) AS n FROM incidents').get() as { n: number }).n).toBe(0);
  });

  it('view_closed is acknowledged at once', async () => {
    const closed = await sendSigned(bot, form(JSON.stringify({ type: 'view_closed', team: { id: 'T0SBX' }, user: { id: 'U0SBXALEX' }, view: { id: 'V1', callback_id: 'old.form' }, is_cleared: false })));
    expect(closed.status).toBe(200);
    expect(closed.ms).toBeLessThan(1000);
  });

  it('unknown shortcut is acknowledged at once', async () => {
    const shortcut = await sendSigned(bot, form(JSON.stringify({ type: 'shortcut', callback_id: 'old_shortcut', trigger_id: '1.2', team: { id: 'T0SBX' }, user: { id: 'U0SBXALEX' } })));
    expect(shortcut.status).toBe(200);
    expect(shortcut.ms).toBeLessThan(1000);
  });

  it('keeps serving commands', async () => {
    const help = await sendSigned(bot, new URLSearchParams({ command: '/incident', text: 'help', user_id: 'U0SBXALEX', channel_id: 'C0SBXINCIDENTS', team_id: 'T0SBX', response_url: 'http://127.0.0.1:9/unused', trigger_id: '1' }).toString());
    expect(help.status).toBe(200);
  });
});

describe('malformedBodyReason', () => {
  it('accepts a slash command', () => {
    expect(malformedBodyReason({ command: '/incident' })).toBeUndefined();
  });

  it('accepts block actions', () => {
    expect(malformedBodyReason({ type: 'block_actions', user: { id: 'U1' }, actions: [{ action_id: 'x' }] })).toBeUndefined();
  });

  it('accepts a view submission', () => {
    expect(malformedBodyReason({ type: 'view_submission', user: { id: 'U1' }, view: { callback_id: 'step.skip_reason' } })).toBeUndefined();
  });

  it('refuses unhandled payload types', () => {
    expect(malformedBodyReason({ type: 'block_suggestion', user: { id: 'U1' } })).toBe('this bot does not handle block_suggestion payloads');
  });
});

describe('button from another version', () => {
  it('tells the user it does nothing now', async () => {
    const bot = await startTestBot();
    try {
      const message = bot.slack.workspace.addMessage({
        channel: 'C0SBXINCIDENTS',
        userId: 'U0SBXBOT',
        botId: 'B0SBXBOT',
        text: 'old message',
        blocks: [{ type: 'actions', block_id: 'old', elements: [{ type: 'button', action_id: 'incident.retired_button', text: { type: 'plain_text', text: 'Old' }, value: 'x' }] }],
      });
      await bot.slack.delivery.click({ user: 'U0SBXALEX', channel: 'C0SBXINCIDENTS', messageTs: message.ts, blockId: 'old', actionId: 'incident.retired_button' });
      await bot.settle();
      const ephemerals = bot.messages().filter((candidate) => candidate.ephemeralTo === 'U0SBXALEX').map((candidate) => candidate.text);
      expect(ephemerals.some((text) => text.includes('another version of runbook-bot'))).toBe(true);
    } finally {
      await bot.close();
    }
  });
});
