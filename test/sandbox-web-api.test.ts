import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { App, LogLevel, webApi } from '@slack/bolt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { AdjustableClock, type Clock } from '../src/bot/clock.ts';
import { createLogger } from '../src/bot/logger.ts';
import { SandboxDelivery } from '../src/sandbox/delivery.ts';
import { createSandboxRoutes, startSlackDouble, type SlackDouble } from '../src/sandbox/server.ts';
import { SandboxWorkspace } from '../src/sandbox/workspace.ts';

const BOT_TOKEN = 'xoxb-sandbox-test-token';
const SIGNING_SECRET = 'sandbox-test-signing-secret';
const INCIDENTS = 'C0SBXINCIDENTS';

type Body = Record<string, any>;

/** Calls a Web API method with a form body, as @slack/web-api does. */
async function callForm(
  double: SlackDouble,
  method: string,
  args: Record<string, string>,
  token = BOT_TOKEN,
) {
  const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`${double.apiUrl}${method}`, {
    method: 'POST',
    headers,
    body: new URLSearchParams(args).toString(),
  });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Body,
  };
}

async function callJson(double: SlackDouble, method: string, args: unknown, token = BOT_TOKEN) {
  const response = await fetch(`${double.apiUrl}${method}`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json; charset=utf-8',
      Authorization: `Bearer ${token}`,
    },
    body: JSON.stringify(args),
  });
  return { status: response.status, body: (await response.json()) as Body };
}

function client(double: SlackDouble, options: Record<string, unknown> = {}) {
  return new webApi.WebClient(BOT_TOKEN, {
    slackApiUrl: double.apiUrl,
    retryConfig: { retries: 0 },
    logLevel: webApi.LogLevel.ERROR,
    ...options,
  });
}

const section = (text: string, blockId?: string) => ({
  type: 'section',
  ...(blockId ? { block_id: blockId } : {}),
  text: { type: 'mrkdwn', text },
});

/** A stand-in for the bot's /slack/events endpoint that records what it receives. */
interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

interface FakeBot {
  url: string;
  received: Received[];
  reply: { status: number; body: string; contentType?: string; delayMs?: number };
  close(): Promise<void>;
}

async function startFakeBot(): Promise<FakeBot> {
  const received: Received[] = [];
  const bot: Partial<FakeBot> = { received, reply: { status: 200, body: '' } };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
      const reply = bot.reply as FakeBot['reply'];
      setTimeout(() => {
        if (res.destroyed) return;
        res.writeHead(reply.status, reply.contentType ? { 'Content-Type': reply.contentType } : {});
        res.end(reply.body);
      }, reply.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));

  bot.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
  bot.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return bot as FakeBot;
}

function interactionPayload(received: Received): Body {
  return JSON.parse(new URLSearchParams(received.body).get('payload') as string) as Body;
}

/** A clock that tests move by hand. */
class ManualClock implements Clock {
  constructor(public time: number) {}
  now(): number {
    return this.time;
  }
}

describe('Slack Web API double', () => {
  let double: SlackDouble;
  let realClock: ManualClock;

  beforeEach(async () => {
    realClock = new ManualClock(1_700_000_000_000);
    double = await startSlackDouble({
      botToken: BOT_TOKEN,
      signingSecret: SIGNING_SECRET,
      realClock,
    });
  });

  afterEach(async () => {
    await double.close();
  });

  describe('channel history', () => {
    beforeEach(() => {
      for (let index = 0; index < 5; index++) double.workspace.addMessage({ channel: INCIDENTS, userId: 'U0SBXALEX', text: `m${index}` });
    });

    it('cursor pages cover every message', async () => {
      const texts: string[] = [];
      let cursor = '';
      do {
        const { body } = await callForm(double, 'conversations.history', { channel: INCIDENTS, limit: '2', ...(cursor ? { cursor } : {}) });
        texts.push(...(body.messages as Array<{ text: string }>).map((message) => message.text));
        cursor = body.response_metadata.next_cursor;
      } while (cursor);
      expect(texts).toEqual(['m4', 'm3', 'm2', 'm1', 'm0']);
    });

    it('oldest keeps later messages only', async () => {
      const all = (await callForm(double, 'conversations.history', { channel: INCIDENTS })).body.messages as Array<{ ts: string; text: string }>;
      const { body } = await callForm(double, 'conversations.history', { channel: INCIDENTS, oldest: all[2].ts });
      expect((body.messages as Array<{ text: string }>).map((message) => message.text)).toEqual(['m4', 'm3']);
    });

    it('foreign cursor gets invalid_cursor', async () => {
      const { body } = await callForm(double, 'conversations.history', { channel: INCIDENTS, cursor: 'bm90LWEtY3Vyc29y' });
      expect(body.error).toBe('invalid_cursor');
    });
  });

  describe('authentication', () => {
    it('auth.test returns bot identity', async () => {
      const { body } = await callForm(double, 'auth.test', {});

      expect(body.ok).toBe(true);
      expect(body.user_id).toBe('U0SBXBOT');
      expect(body.bot_id).toBe('B0SBXBOT');
      expect(body.team_id).toBe('T0SBX');
    });

    it('missing token returns not_authed', async () => {
      const { status, body } = await callForm(double, 'auth.test', {}, '');

      expect(status).toBe(200);
      expect(body).toEqual({ ok: false, error: 'not_authed' });
    });

    it('wrong token returns invalid_auth', async () => {
      const { status, body } = await callForm(
        double,
        'chat.postMessage',
        { channel: INCIDENTS, text: 'hi' },
        'xoxb-wrong',
      );

      expect(status).toBe(200);
      expect(body).toEqual({ ok: false, error: 'invalid_auth' });
    });

    it('token in form body is accepted', async () => {
      const { body } = await callForm(double, 'auth.test', { token: BOT_TOKEN }, '');

      expect(body.ok).toBe(true);
    });

    it('token in JSON body is not_authed', async () => {
      const response = await fetch(`${double.apiUrl}auth.test`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token: BOT_TOKEN }),
      });
      const body = (await response.json()) as Body;

      expect(body.error).toBe('not_authed');
    });
  });

  describe('request bodies', () => {
    it('form body posts a message', async () => {
      const blocks = JSON.stringify([section('*Step 1*')]);
      const { body } = await callForm(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'Step 1',
        blocks,
      });

      expect(body.ok).toBe(true);
      expect(body.message.blocks[0].text.text).toBe('*Step 1*');
    });

    it('JSON body posts a message', async () => {
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'hello',
        blocks: [section('hi')],
      });

      expect(body.ok).toBe(true);
      expect(body.channel).toBe(INCIDENTS);
    });

    it('invalid JSON body returns invalid_json', async () => {
      const response = await fetch(`${double.apiUrl}chat.postMessage`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${BOT_TOKEN}` },
        body: '{"channel":',
      });
      const body = (await response.json()) as Body;

      expect(body.error).toBe('invalid_json');
    });

    it('unsupported content type is rejected', async () => {
      const response = await fetch(`${double.apiUrl}auth.test`, {
        method: 'POST',
        headers: { 'Content-Type': 'text/xml', Authorization: `Bearer ${BOT_TOKEN}` },
        body: '<x/>',
      });
      const body = (await response.json()) as Body;

      expect(body.error).toBe('invalid_post_type');
    });

    it('prototype name is an unknown method', async () => {
      const { body } = await callForm(double, 'constructor', {});

      expect(body.error).toBe('unknown_method');
    });

    it('unknown method returns unknown_method', async () => {
      const { status, body } = await callForm(double, 'chat.postMesage', { channel: INCIDENTS });

      expect(status).toBe(200);
      expect(body.error).toBe('unknown_method');
    });
  });

  describe('chat methods', () => {
    it('unknown channel returns channel_not_found', async () => {
      const { body } = await callForm(double, 'chat.postMessage', {
        channel: 'C0NOPE',
        text: 'hi',
      });

      expect(body).toEqual({ ok: false, error: 'channel_not_found' });
    });

    it('channel name resolves to its id', async () => {
      const { body } = await callForm(double, 'chat.postMessage', {
        channel: '#ops',
        text: 'backup done',
      });

      expect(body.channel).toBe('C0SBXOPS');
    });

    it('message without content returns no_text', async () => {
      const { body } = await callForm(double, 'chat.postMessage', { channel: INCIDENTS });

      expect(body.error).toBe('no_text');
    });

    it('invalid blocks name the pointer', async () => {
      const blocks = [
        section('ok'),
        section('ok'),
        section('ok'),
        { type: 'section', text: { type: 'mrkdwn', text: '' } },
      ];
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks,
      });

      expect(body.error).toBe('invalid_blocks');
      expect(body.errors[0]).toMatch(/\[json-pointer:\/blocks\/3\/text\/text\]$/);
      expect(body.response_metadata.messages[0]).toMatch(/^\[ERROR\] /);
    });

    it('unknown block type is rejected', async () => {
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks: [{ type: 'sektion' }],
      });

      expect(body.errors[0]).toMatch(/\[json-pointer:\/blocks\/0\/type\]$/);
    });

    it('prototype name is no block type', async () => {
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks: [{ type: 'constructor' }],
      });

      expect(body.error).toBe('invalid_blocks');
    });

    it('misspelled property is rejected', async () => {
      const button = {
        type: 'button',
        text: { type: 'plain_text', text: 'Done' },
        acton_id: 'done',
      };
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks: [{ type: 'actions', elements: [button] }],
      });

      expect(body.errors[0]).toMatch(/\[json-pointer:\/blocks\/0\/elements\/0\/acton_id\]$/);
    });

    it('duplicate block ids are rejected', async () => {
      const blocks = [section('a', 'step'), section('b', 'step')];
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks,
      });

      expect(body.errors[0]).toMatch(
        /duplicate block_id .*\[json-pointer:\/blocks\/1\/block_id\]$/,
      );
    });

    it('over fifty blocks are rejected', async () => {
      const blocks = Array.from({ length: 51 }, () => ({ type: 'divider' }));
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks,
      });

      expect(body.errors[0]).toMatch(/\[json-pointer:\/blocks\]$/);
    });

    it('section text over 3000 is rejected', async () => {
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks: [section('a'.repeat(3001))],
      });

      expect(body.errors[0]).toMatch(/at most 3000 .*\[json-pointer:\/blocks\/0\/text\/text\]$/);
    });

    it('confirm without deny is rejected', async () => {
      const button = {
        type: 'button',
        action_id: 'rotate',
        text: { type: 'plain_text', text: 'Rotate' },
        confirm: {
          title: { type: 'plain_text', text: 'Rotate?' },
          text: { type: 'plain_text', text: 'This changes production' },
          confirm: { type: 'plain_text', text: 'Rotate' },
        },
      };
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks: [{ type: 'actions', elements: [button] }],
      });

      expect(body.errors[0]).toMatch(/\[json-pointer:\/blocks\/0\/elements\/0\/confirm\/deny\]$/);
    });

    it('text over 40000 returns msg_too_long', async () => {
      const { body } = await callForm(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'a'.repeat(40_001),
      });

      expect(body.error).toBe('msg_too_long');
    });

    it('large total block text is rejected', async () => {
      const blocks = Array.from({ length: 5 }, () => section('b'.repeat(2900)));
      const { body } = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks,
      });

      expect(body.error).toBe('msg_blocks_too_long');
    });

    it('unknown thread_ts is rejected', async () => {
      const { body } = await callForm(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        thread_ts: '1.000001',
      });

      expect(body.error).toBe('invalid_thread_ts');
    });

    it('reply to a reply joins the thread', async () => {
      const parent = await callForm(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'incident',
      });
      const reply = await callForm(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'step 1',
        thread_ts: parent.body.ts,
      });
      const nested = await callForm(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'step 2',
        thread_ts: reply.body.ts,
      });

      expect(nested.body.message.thread_ts).toBe(parent.body.ts);
    });

    it('WebClient posts and updates messages', async () => {
      const web = client(double);
      const posted = await web.chat.postMessage({
        channel: INCIDENTS,
        text: 'Step pending',
        blocks: [section('pending')],
      });
      await web.chat.update({
        channel: INCIDENTS,
        ts: posted.ts as string,
        text: 'Step done',
        blocks: [section('done')],
      });

      const stored = double.workspace.getMessage(INCIDENTS, posted.ts as string);
      expect(stored?.text).toBe('Step done');
      expect(stored?.blocks?.[0]).toMatchObject({ text: { text: 'done' } });
    });

    it('update without blocks removes blocks', async () => {
      const web = client(double);
      const posted = await web.chat.postMessage({
        channel: INCIDENTS,
        text: 'x',
        blocks: [section('pending')],
      });
      await web.chat.update({ channel: INCIDENTS, ts: posted.ts as string, text: 'plain now' });

      expect(double.workspace.getMessage(INCIDENTS, posted.ts as string)?.blocks).toBeNull();
    });

    it('update of unknown ts fails', async () => {
      const { body } = await callForm(double, 'chat.update', {
        channel: INCIDENTS,
        ts: '1700000000.000001',
        text: 'x',
      });

      expect(body.error).toBe('message_not_found');
    });

    it("update of a person's message fails", async () => {
      const bot = await startFakeBot();
      double.setBotEventsUrl(bot.url);
      await double.delivery.message({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: 'I see the leak',
      });
      const [mine] = double.workspace.listMessages();

      const { body } = await callForm(double, 'chat.update', {
        channel: INCIDENTS,
        ts: mine.ts,
        text: 'edited',
      });
      await bot.close();

      expect(body.error).toBe('cant_update_message');
    });

    it('postEphemeral needs a user', async () => {
      const { body } = await callForm(double, 'chat.postEphemeral', {
        channel: INCIDENTS,
        text: 'only you',
      });

      expect(body.error).toBe('invalid_arguments');
      expect(body.response_metadata.messages[0]).toContain('user');
    });

    it('postEphemeral to a non-member fails', async () => {
      const { body } = await callForm(double, 'chat.postEphemeral', {
        channel: 'C0SBXOPS',
        user: 'U0SBXGUEST',
        text: 'x',
      });

      expect(body.error).toBe('user_not_in_channel');
    });

    it('ephemeral message is hidden from chat.update', async () => {
      const posted = await callForm(double, 'chat.postEphemeral', {
        channel: INCIDENTS,
        user: 'U0SBXSAM',
        text: 'x',
      });
      const { body } = await callForm(double, 'chat.update', {
        channel: INCIDENTS,
        ts: posted.body.message_ts,
        text: 'y',
      });

      expect(body.error).toBe('message_not_found');
    });

    it('permalink names channel and ts', async () => {
      const posted = await callForm(double, 'chat.postMessage', { channel: INCIDENTS, text: 'x' });
      const { body } = await callForm(double, 'chat.getPermalink', {
        channel: INCIDENTS,
        message_ts: posted.body.ts,
      });

      expect(body.permalink).toBe(
        `${double.url}/archives/${INCIDENTS}/p${posted.body.ts.replace('.', '')}`,
      );
    });
  });

  describe('directory methods', () => {
    it('users.info describes the guest', async () => {
      const { body } = await callForm(double, 'users.info', { user: 'U0SBXGUEST' });

      expect(body.user.is_restricted).toBe(true);
      expect(body.user.name).toBe('gus');
    });

    it('users.info unknown user fails', async () => {
      const { body } = await callForm(double, 'users.info', { user: 'U0NOBODY' });

      expect(body.error).toBe('user_not_found');
    });

    it('usergroup lists the responders', async () => {
      const { body } = await callForm(double, 'usergroups.users.list', { usergroup: 'S0SBXRESP' });

      expect(body.users).toEqual(['U0SBXALEX', 'U0SBXSAM']);
    });

    it('unknown usergroup returns no_such_subteam', async () => {
      const { body } = await callForm(double, 'usergroups.users.list', { usergroup: 'S0NOPE' });

      expect(body.error).toBe('no_such_subteam');
    });

    it('conversations.info unknown channel fails', async () => {
      const { body } = await callForm(double, 'conversations.info', { channel: 'C0NOPE' });

      expect(body.error).toBe('channel_not_found');
    });

    it('conversations.info describes the channel', async () => {
      const { body } = await callForm(double, 'conversations.info', { channel: INCIDENTS });

      expect(body.channel.name).toBe('incidents');
      expect(body.channel.is_member).toBe(true);
    });
  });

  describe('fault injection', () => {
    it('injected 429 carries Retry-After', async () => {
      double.workspace.injectFault({
        method: 'chat.postMessage',
        status: 429,
        retryAfterSeconds: 7,
        times: 1,
      });
      const { status, headers, body } = await callForm(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
      });

      expect(status).toBe(429);
      expect(headers.get('retry-after')).toBe('7');
      expect(body).toEqual({ ok: false, error: 'ratelimited' });
    });

    it('fault lasts the given number of calls', async () => {
      double.workspace.injectFault({ method: 'chat.update', status: 503, times: 2 });
      const statuses: number[] = [];
      for (let attempt = 0; attempt < 3; attempt++) {
        const result = await callForm(double, 'chat.update', {
          channel: INCIDENTS,
          ts: '1.000001',
          text: 'x',
        });
        statuses.push(result.status);
      }

      expect(statuses).toEqual([503, 503, 200]);
    });

    it('fault leaves other methods alone', async () => {
      double.workspace.injectFault({ method: 'chat.update', status: 500, times: 1 });
      const { status } = await callForm(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
      });

      expect(status).toBe(200);
    });

    it('WebClient reports the rate limit', async () => {
      double.workspace.injectFault({
        method: 'chat.postMessage',
        status: 429,
        retryAfterSeconds: 30,
        times: 1,
      });
      const web = client(double, { rejectRateLimitedCalls: true });

      const failure = await web.chat
        .postMessage({ channel: INCIDENTS, text: 'x' })
        .catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(webApi.WebAPIRateLimitedError);
      expect((failure as { retryAfter: number }).retryAfter).toBe(30);
    });

    it('WebClient reports the server error', async () => {
      double.workspace.injectFault({ method: 'chat.postMessage', status: 500, times: 1 });

      const failure = await client(double)
        .chat.postMessage({ channel: INCIDENTS, text: 'x' })
        .catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(webApi.WebAPIHTTPError);
    });

    it('invalid fault spec is rejected', () => {
      const inject = () =>
        double.workspace.injectFault({ method: 'chat.update', status: 404 as 500, times: 1 });

      expect(inject).toThrow(/429, 500 or 503/);
    });
  });

  describe('call log', () => {
    it('calls record arguments without token', async () => {
      await callForm(
        double,
        'chat.postMessage',
        { token: BOT_TOKEN, channel: INCIDENTS, text: 'logged' },
        '',
      );
      const [call] = double.workspace.callsOf('chat.postMessage');

      expect(call.args).toEqual({ channel: INCIDENTS, text: 'logged' });
      expect(JSON.stringify(double.workspace.calls)).not.toContain(BOT_TOKEN);
    });

    it('calls record failures too', async () => {
      await callForm(double, 'chat.postMessage', { channel: 'C0NOPE', text: 'x' });
      const [call] = double.workspace.callsOf('chat.postMessage');

      expect(call.error).toBe('channel_not_found');
    });
  });

  describe('views', () => {
    const modal = (title = 'Rotate key') => ({
      type: 'modal',
      callback_id: 'rotate_form',
      title: { type: 'plain_text', text: title },
      submit: { type: 'plain_text', text: 'Rotate' },
      blocks: [
        {
          type: 'input',
          block_id: 'reason',
          label: { type: 'plain_text', text: 'Reason' },
          element: { type: 'plain_text_input', action_id: 'text', multiline: true },
        },
      ],
    });

    it('unknown trigger_id is invalid', async () => {
      const { body } = await callJson(double, 'views.open', {
        trigger_id: '1.2.abc',
        view: modal(),
      });

      expect(body.error).toBe('invalid_trigger_id');
    });

    it('trigger_id opens one view only', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      const first = await callJson(double, 'views.open', { trigger_id: trigger, view: modal() });
      const second = await callJson(double, 'views.open', { trigger_id: trigger, view: modal() });

      expect(first.body.ok).toBe(true);
      expect(second.body.error).toBe('exchanged_trigger_id');
    });

    it('trigger_id expires after three seconds', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      realClock.time += 3001;
      const { body } = await callJson(double, 'views.open', { trigger_id: trigger, view: modal() });

      expect(body.error).toBe('expired_trigger_id');
    });

    it('trigger_id expiry ignores the bot clock', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      double.clock.advance(48 * 60 * 60 * 1000);
      const { body } = await callJson(double, 'views.open', { trigger_id: trigger, view: modal() });

      expect(body.ok).toBe(true);
    });

    it('long modal title is rejected', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      const { body } = await callJson(double, 'views.open', {
        trigger_id: trigger,
        view: modal('A title that is far too long'),
      });

      expect(body.error).toBe('invalid_arguments');
      expect(body.response_metadata.messages[0]).toMatch(/\[json-pointer:\/view\/title\/text\]$/);
    });

    it('modal with inputs needs submit', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      const { submit: _submit, ...withoutSubmit } = modal();
      const { body } = await callJson(double, 'views.open', {
        trigger_id: trigger,
        view: withoutSubmit,
      });

      expect(body.response_metadata.messages[0]).toMatch(/\[json-pointer:\/view\/submit\]$/);
    });

    it('views.update checks the hash', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      const opened = await callJson(double, 'views.open', { trigger_id: trigger, view: modal() });
      const viewId = opened.body.view.id;
      const hash = opened.body.view.hash;

      const first = await callJson(double, 'views.update', {
        view_id: viewId,
        hash,
        view: modal('Step 2'),
      });
      const stale = await callJson(double, 'views.update', {
        view_id: viewId,
        hash,
        view: modal('Step 3'),
      });

      expect(first.body.view.title.text).toBe('Step 2');
      expect(stale.body.error).toBe('hash_conflict');
    });

    it('views.update by external_id works', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      await callJson(double, 'views.open', {
        trigger_id: trigger,
        view: { ...modal(), external_id: 'incident-7' },
      });
      const { body } = await callJson(double, 'views.update', {
        external_id: 'incident-7',
        view: modal('Updated'),
      });

      expect(body.view.title.text).toBe('Updated');
    });

    it('views.update unknown view fails', async () => {
      const { body } = await callJson(double, 'views.update', { view_id: 'V0NOPE', view: modal() });

      expect(body.error).toBe('not_found');
    });

    it('views.push needs a modal trigger', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      const { body } = await callJson(double, 'views.push', { trigger_id: trigger, view: modal() });

      expect(body.error).toBe('not_found');
    });

    it('views.push stacks three views', async () => {
      const opened = await callJson(double, 'views.open', {
        trigger_id: double.workspace.issueTrigger('U0SBXALEX'),
        view: modal(),
      });
      const results: string[] = [];
      let below = opened.body.view.id as string;
      for (let push = 0; push < 3; push++) {
        const trigger = double.workspace.issueTrigger('U0SBXALEX', below);
        const pushed = await callJson(double, 'views.push', { trigger_id: trigger, view: modal() });
        results.push(pushed.body.ok ? 'ok' : pushed.body.error);
        if (pushed.body.ok) below = pushed.body.view.id;
      }

      expect(results).toEqual(['ok', 'ok', 'push_limit_reached']);
    });
  });

  describe('delivery to the bot', () => {
    let bot: FakeBot;

    beforeEach(async () => {
      bot = await startFakeBot();
      double.setBotEventsUrl(bot.url);
    });

    afterEach(async () => {
      await bot.close();
    });

    it('slash command delivery is signed', async () => {
      realClock.time = Date.now();
      await double.delivery.command({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: '/incident secret-key Key leaked',
      });
      const [delivery] = bot.received;
      const timestamp = delivery.headers['x-slack-request-timestamp'] as string;
      const hmac = createHmac('sha256', SIGNING_SECRET).update(`v0:${timestamp}:${delivery.body}`);
      const expected = `v0=${hmac.digest('hex')}`;

      expect(delivery.headers['x-slack-signature']).toBe(expected);
      expect(delivery.headers['content-type']).toBe('application/x-www-form-urlencoded');
      expect(Number(timestamp)).toBe(Math.floor(realClock.time / 1000));
    });

    it('slash command carries Slack fields', async () => {
      await double.delivery.command({
        user: 'U0SBXSAM',
        channel: INCIDENTS,
        text: '/incident secret-key Key leaked',
      });
      const fields = new URLSearchParams(bot.received[0].body);

      expect(fields.get('command')).toBe('/incident');
      expect(fields.get('text')).toBe('secret-key Key leaked');
      expect(fields.get('user_id')).toBe('U0SBXSAM');
      expect(fields.get('channel_id')).toBe(INCIDENTS);
      expect(fields.get('response_url')).toMatch(
        /^http:\/\/127\.0\.0\.1:\d+\/sandbox\/response\/[0-9a-f]+$/,
      );
      expect(fields.get('trigger_id')).toMatch(/^\d+\.\d+\.[0-9a-f]+$/);
    });

    it('ack text shows as ephemeral reply', async () => {
      bot.reply = {
        status: 200,
        body: JSON.stringify({ text: 'Unknown runbook "secret-kye"' }),
        contentType: 'application/json',
      };
      await double.delivery.command({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: '/incident secret-kye',
      });
      const [reply] = double.workspace.listMessages();

      expect(reply.text).toBe('Unknown runbook "secret-kye"');
      expect(reply.ephemeralTo).toBe('U0SBXALEX');
    });

    it('bot error shows Slack failure notice', async () => {
      bot.reply = { status: 500, body: '' };
      const result = await double.delivery.command({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: '/incident secret-key',
      });
      const [notice] = double.workspace.listMessages();

      expect(result).toEqual({ ok: false, error: 'http_service_error' });
      expect(notice.text).toBe('/incident failed with the error "http_service_error"');
    });

    it('block action payload names the button', async () => {
      const posted = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'Step 1',
        blocks: [
          {
            type: 'actions',
            block_id: 'step_1',
            elements: [
              {
                type: 'button',
                action_id: 'done',
                value: 'incident-7:step-1',
                text: { type: 'plain_text', text: 'Done' },
              },
            ],
          },
        ],
      });
      await double.delivery.click({
        user: 'U0SBXSAM',
        channel: INCIDENTS,
        messageTs: posted.body.ts,
        blockId: 'step_1',
        actionId: 'done',
      });
      const payload = interactionPayload(bot.received[0]);

      expect(payload.type).toBe('block_actions');
      expect(payload.actions[0]).toMatchObject({
        type: 'button',
        block_id: 'step_1',
        action_id: 'done',
        value: 'incident-7:step-1',
      });
      expect(payload.container).toEqual({
        type: 'message',
        message_ts: posted.body.ts,
        channel_id: INCIDENTS,
        is_ephemeral: false,
      });
      expect(payload.message.ts).toBe(posted.body.ts);
      expect(payload.user.id).toBe('U0SBXSAM');
    });

    it('confirm button needs confirmation', async () => {
      const confirm = {
        title: { type: 'plain_text', text: 'Rotate now?' },
        text: { type: 'plain_text', text: 'Production changes' },
        confirm: { type: 'plain_text', text: 'Rotate' },
        deny: { type: 'plain_text', text: 'Cancel' },
      };
      const posted = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks: [
          {
            type: 'actions',
            block_id: 'b',
            elements: [
              {
                type: 'button',
                action_id: 'rotate',
                text: { type: 'plain_text', text: 'Rotate' },
                confirm,
              },
            ],
          },
        ],
      });
      const click = {
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        messageTs: posted.body.ts,
        blockId: 'b',
        actionId: 'rotate',
      };

      await expect(double.delivery.click(click)).rejects.toMatchObject({
        code: 'confirm_required',
      });
      expect(bot.received).toHaveLength(0);
    });

    it('response_url accepts five posts', async () => {
      await double.delivery.command({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: '/incident secret-key',
      });
      const responseUrl = new URLSearchParams(bot.received[0].body).get('response_url') as string;
      const statuses: number[] = [];
      for (let use = 0; use < 6; use++) {
        const response = await fetch(responseUrl, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ text: `update ${use}` }),
        });
        statuses.push(response.status);
      }

      expect(statuses).toEqual([200, 200, 200, 200, 200, 404]);
    });

    it('response_url expires after thirty minutes', async () => {
      await double.delivery.command({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: '/incident secret-key',
      });
      const responseUrl = new URLSearchParams(bot.received[0].body).get('response_url') as string;
      realClock.time += 30 * 60 * 1000 + 1;
      const response = await fetch(responseUrl, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: 'late' }),
      });

      expect(response.status).toBe(404);
    });

    it('response_url replaces the original', async () => {
      const posted = await callJson(double, 'chat.postMessage', {
        channel: INCIDENTS,
        text: 'x',
        blocks: [
          {
            type: 'actions',
            block_id: 'b',
            elements: [
              { type: 'button', action_id: 'a', text: { type: 'plain_text', text: 'Go' } },
            ],
          },
        ],
      });
      await double.delivery.click({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        messageTs: posted.body.ts,
        blockId: 'b',
        actionId: 'a',
      });
      const payload = interactionPayload(bot.received[0]);
      await fetch(payload.response_url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ replace_original: true, text: 'Replaced' }),
      });

      expect(double.workspace.getMessage(INCIDENTS, posted.body.ts)?.text).toBe('Replaced');
    });

    it('view submission errors keep modal open', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      const opened = await callJson(double, 'views.open', {
        trigger_id: trigger,
        view: {
          type: 'modal',
          callback_id: 'skip_step',
          title: { type: 'plain_text', text: 'Skip step' },
          submit: { type: 'plain_text', text: 'Skip' },
          blocks: [
            {
              type: 'input',
              block_id: 'reason',
              label: { type: 'plain_text', text: 'Reason' },
              element: { type: 'plain_text_input', action_id: 'text' },
            },
          ],
        },
      });
      const viewId = opened.body.view.id;
      bot.reply = {
        status: 200,
        body: JSON.stringify({
          response_action: 'errors',
          errors: { reason: 'Say why the step is skipped' },
        }),
        contentType: 'application/json',
      };

      const result = await double.delivery.submit({
        user: 'U0SBXALEX',
        viewId,
        values: { reason: { text: 'n/a' } },
      });
      const payload = interactionPayload(bot.received[0]);

      expect(result).toEqual({ ok: false, errors: { reason: 'Say why the step is skipped' } });
      expect(payload.view.state.values).toEqual({
        reason: { text: { type: 'plain_text_input', value: 'n/a' } },
      });
      expect(double.workspace.getView(viewId)?.open).toBe(true);
    });

    it('required input is checked before delivery', async () => {
      const trigger = double.workspace.issueTrigger('U0SBXALEX');
      const opened = await callJson(double, 'views.open', {
        trigger_id: trigger,
        view: {
          type: 'modal',
          title: { type: 'plain_text', text: 'Assign' },
          submit: { type: 'plain_text', text: 'Assign' },
          blocks: [
            {
              type: 'input',
              block_id: 'who',
              label: { type: 'plain_text', text: 'Responder' },
              element: { type: 'users_select', action_id: 'user' },
            },
          ],
        },
      });

      const result = await double.delivery.submit({
        user: 'U0SBXALEX',
        viewId: opened.body.view.id,
        values: {},
      });

      expect(result).toEqual({
        ok: false,
        errors: { who: 'Please complete this required field.' },
      });
      expect(bot.received).toHaveLength(0);
    });

    it('slow bot gets operation_timeout', async () => {
      bot.reply = { status: 200, body: '', delayMs: 1000 };
      const delivery = new SandboxDelivery(double.workspace, {
        botEventsUrl: bot.url,
        signingSecret: SIGNING_SECRET,
        timeoutMs: 100,
      });

      const result = await delivery.command({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: '/incident x',
      });
      const [notice] = double.workspace.listMessages();

      expect(result).toEqual({ ok: false, error: 'operation_timeout' });
      expect(notice.text).toBe('/incident failed with the error "operation_timeout"');
    });

    it('unreachable bot gets dispatch_failed', async () => {
      await bot.close();
      const result = await double.delivery.command({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: '/incident x',
      });

      expect(result).toEqual({ ok: false, error: 'dispatch_failed' });
    });

    it('user message delivers a message event', async () => {
      await double.delivery.message({
        user: 'U0SBXALEX',
        channel: INCIDENTS,
        text: 'ping @sam <now>',
      });
      const envelope = JSON.parse(bot.received[0].body) as Body;

      expect(bot.received[0].headers['content-type']).toBe('application/json');
      expect(envelope.type).toBe('event_callback');
      expect(envelope.event.text).toBe('ping <@U0SBXSAM> &lt;now&gt;');
    });
  });

  describe('page routes', () => {
    function rawRequest(
      path: string,
      options: { method?: string; headers?: Record<string, string>; body?: string },
    ) {
      const url = new URL(double.url);
      return new Promise<{ status: number; body: Body }>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port: url.port,
            path,
            method: options.method ?? 'GET',
            headers: options.headers,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () =>
              resolve({
                status: res.statusCode ?? 0,
                body: JSON.parse(Buffer.concat(chunks).toString()) as Body,
              }),
            );
          },
        );
        req.on('error', reject);
        req.end(options.body);
      });
    }

    it('foreign Host header is refused', async () => {
      const { status, body } = await rawRequest('/sandbox/state', {
        headers: { Host: 'attacker.example:80' },
      });

      expect(status).toBe(403);
      expect(body.error).toBe('forbidden_host');
    });

    it('page action needs JSON body', async () => {
      const { status } = await rawRequest('/sandbox/clock', {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain' },
        body: '{"advanceMs":60000}',
      });

      expect(status).toBe(415);
    });

    it('page action from another origin is refused', async () => {
      const { status } = await rawRequest('/sandbox/clock', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Origin: 'http://attacker.example' },
        body: '{"advanceMs":60000}',
      });

      expect(status).toBe(403);
    });

    it('clock advance moves the bot clock', async () => {
      const before = double.clock.now();
      const response = await fetch(`${double.url}/sandbox/clock`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ advanceMs: 900_000 }),
      });
      const body = (await response.json()) as Body;

      expect(body.now - before).toBeGreaterThanOrEqual(900_000);
      expect(body.now - before).toBeLessThan(910_000);
    });

    it('clock advance rejects negative values', async () => {
      const response = await fetch(`${double.url}/sandbox/clock`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ advanceMs: -5 }),
      });
      const body = (await response.json()) as Body;

      expect(response.status).toBe(400);
      expect(body.message).toContain('-5');
    });

    it('command from non-member is refused', async () => {
      const response = await fetch(`${double.url}/sandbox/command`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: 'U0SBXGUEST', channel: 'C0SBXOPS', text: '/incident backup' }),
      });
      const body = (await response.json()) as Body;

      expect(response.status).toBe(403);
      expect(body.error).toBe('not_in_channel');
    });
  });
});

describe('sandbox workspace', () => {
  let folder: string;

  beforeEach(async () => {
    folder = await mkdtemp(join(tmpdir(), 'sandbox-workspace-'));
  });

  afterEach(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  const open = (clock: Clock) =>
    new SandboxWorkspace({
      dbPath: join(folder, 'sandbox.sqlite'),
      botUserId: 'U0SBXBOT',
      botId: 'B0SBXBOT',
      teamId: 'T0SBX',
      clock,
    });

  it('messages survive a restart', () => {
    const first = open(new AdjustableClock());
    const posted = first.addMessage({
      channel: INCIDENTS,
      userId: 'U0SBXBOT',
      botId: 'B0SBXBOT',
      text: 'Incident declared',
      blocks: [section('x')],
    });
    first.close();

    const second = open(new AdjustableClock());
    const [kept] = second.listMessages();
    second.close();

    expect(kept.ts).toBe(posted.ts);
    expect(kept.blocks).toEqual(posted.blocks);
  });

  it('ts stays increasing after restart', () => {
    const ahead = new AdjustableClock(48 * 60 * 60 * 1000);
    const first = open(ahead);
    const posted = first.addMessage({ channel: INCIDENTS, userId: 'U0SBXALEX', text: 'later' });
    first.close();

    const second = open(new AdjustableClock());
    const next = second.nextTs();
    second.close();

    expect(Number(next)).toBeGreaterThan(Number(posted.ts));
  });

  it('ts values are unique and increasing', () => {
    const frozen = new ManualClock(1_700_000_000_000);
    const workspace = open(frozen);
    const values = Array.from({ length: 50 }, () => workspace.nextTs());
    workspace.close();

    const increasing = values.every((value, index) => index === 0 || value > values[index - 1]);
    expect(increasing).toBe(true);
    expect(new Set(values).size).toBe(50);
  });

  it('generated block ids fill gaps', () => {
    const workspace = open(new AdjustableClock());
    const message = workspace.addMessage({
      channel: INCIDENTS,
      userId: 'U0SBXBOT',
      text: 'x',
      blocks: [section('a'), section('b', 'named')],
    });
    workspace.close();

    const ids = (message.blocks as Array<{ block_id: string }>).map((block) => block.block_id);
    expect(ids[0]).toMatch(/^[\w-]{5}$/);
    expect(ids[1]).toBe('named');
  });
});

describe('sandbox routes in Bolt', () => {
  let app: App;
  let workspace: SandboxWorkspace;
  let origin: string;
  let shutdown: AbortController;

  beforeEach(async () => {
    shutdown = new AbortController();
    const clock = new AdjustableClock();
    workspace = new SandboxWorkspace({
      dbPath: ':memory:',
      botUserId: 'U0SBXBOT',
      botId: 'B0SBXBOT',
      teamId: 'T0SBX',
      clock,
    });
    app = new App({
      token: BOT_TOKEN,
      botId: 'B0SBXBOT',
      botUserId: 'U0SBXBOT',
      signingSecret: SIGNING_SECRET,
      logLevel: LogLevel.ERROR,
      customRoutes: createSandboxRoutes({
        workspace,
        botEventsUrl: () => `${origin}/slack/events`,
        signingSecret: SIGNING_SECRET,
        botToken: BOT_TOKEN,
        clock,
        shutdownSignal: shutdown.signal,
      }),
    });
    app.command('/incident', async ({ ack, command }) => {
      await ack();
      // The port is known only after start, so this client is made per call.
      const web = new webApi.WebClient(BOT_TOKEN, {
        slackApiUrl: `${origin}/api/`,
        retryConfig: { retries: 0 },
      });
      await web.chat.postMessage({
        channel: command.channel_id,
        text: `Declared: ${command.text}`,
      });
    });
    const server = (await app.start({ port: 0, host: '127.0.0.1' })) as Server;
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    shutdown.abort();
    await app.stop();
    workspace.close();
  });

  it('open stream ends on shutdown', async () => {
    const response = await fetch(`${origin}/sandbox/stream`);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const first = await reader.read();
    shutdown.abort();
    const last = await reader.read();

    expect(new TextDecoder().decode(first.value)).toContain(': connected');
    expect(last.done).toBe(true);
  });

  it('stream sends workspace changes', async () => {
    const response = await fetch(`${origin}/sandbox/stream`);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    workspace.addMessage({ channel: INCIDENTS, userId: 'U0SBXALEX', text: 'streamed' });
    const chunk = new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();

    expect(chunk).toMatch(/^event: change\ndata: /);
    expect(JSON.parse(chunk.split('data: ')[1]).message.text).toBe('streamed');
  });

  it('page is served on the bot port', async () => {
    const response = await fetch(`${origin}/`);

    expect(response.status).toBe(200);
    expect(response.headers.get('content-security-policy')).toContain("script-src 'self'");
  });

  it('command round trip through Bolt', async () => {
    const response = await fetch(`${origin}/sandbox/command`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: 'U0SBXALEX', channel: INCIDENTS, text: '/incident secret-key' }),
    });
    const result = (await response.json()) as Body;
    await expect.poll(() => workspace.listMessages().length).toBe(1);

    expect(result).toEqual({ ok: true });
    expect(workspace.listMessages()[0].text).toBe('Declared: secret-key');
  });
});

describe('Slack double logging', () => {
  it('failed call logs one line', async () => {
    const lines: string[] = [];
    const logger = createLogger('info', { write: (line: string) => lines.push(line) });
    const double = await startSlackDouble({ botToken: BOT_TOKEN, logger });

    await callForm(double, 'chat.postMessage', { channel: 'C0NOPE', text: 'x' });
    await double.close();
    const entries = lines.map((line) => JSON.parse(line) as Body);

    expect(entries).toHaveLength(1);
    expect(entries[0].msg).toBe('sandbox Web API call failed');
    expect(entries[0].error).toBe('channel_not_found');
    expect(lines.join('')).not.toContain(BOT_TOKEN);
  });
});
