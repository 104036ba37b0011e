import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import { systemClock, type Clock } from '../src/bot/clock.ts';

/**
 * A small, fast double of the Slack Web API for the benchmark. It serves the
 * methods the bot calls while declaring incidents in Slack's wire format (HTTP
 * 200 with `ok`, `error` codes, message ts values). It stores only the ts
 * values it issued, so that chat.update and thread_ts can be checked, and
 * unlike the sandbox's double it neither renders nor validates Block Kit.
 */

type Args = Record<string, unknown>;
type Result = Record<string, unknown>;

export interface SlackApiStats {
  /** Calls per method name, including failed ones, and `response_url` for posts to response URLs. */
  calls: Record<string, number>;
  /** Replies with ok:false, per error code. */
  errors: Record<string, number>;
}

/** A message the bot posted to a slash command's response_url. */
export interface ResponsePost {
  /** The last path segment of the response_url, which the bench sets to the command's channel id. */
  key: string;
  /** process.hrtime.bigint() at arrival, in nanoseconds, as a decimal string. */
  receivedAtNs: string;
  text: string;
}

export interface SlackApiDouble {
  url: string;
  /** The Web API base for SLACK_API_URL, with its trailing slash. */
  apiUrl: string;
  stats(): SlackApiStats;
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 1_000_000;
const CHANNEL_ID = /^[CGD][A-Z0-9]{2,}$/;
const TS = /^\d{10}\.\d{6}$/;
const TEAM_ID = 'T0BENCH';
const BOT_USER_ID = 'U0BENCHBOT';
const BOT_ID = 'B0BENCHBOT';

class SlackApiError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

/** A request body over MAX_BODY_BYTES, rejected with HTTP 413. */
class BodyTooLarge extends Error {}

/** Serves the double on 127.0.0.1 with a port chosen by the system. */
export async function startSlackApi(options: { botToken: string; clock?: Clock }): Promise<SlackApiDouble> {
  const clock = options.clock ?? systemClock;
  const stats: SlackApiStats = { calls: {}, errors: {} };
  const responses: ResponsePost[] = [];
  const messages = new Map<string, Set<string>>();
  let lastTsMicros = 0;

  const nextTs = () => {
    lastTsMicros = Math.max(Math.floor(clock.now() * 1000), lastTsMicros + 1);
    return `${Math.floor(lastTsMicros / 1e6)}.${String(lastTsMicros % 1e6).padStart(6, '0')}`;
  };

  const requireMessage = (channel: string, ts: unknown, error: string) => {
    if (typeof ts !== 'string' || !TS.test(ts) || !messages.get(channel)?.has(ts)) throw new SlackApiError(error);
    return ts;
  };

  const methods: Record<string, (args: Args) => Result> = {
    'auth.test': () => ({
      url: 'https://bench.slack.com/',
      team: 'bench',
      user: 'runbook-bot',
      team_id: TEAM_ID,
      user_id: BOT_USER_ID,
      bot_id: BOT_ID,
      is_enterprise_install: false,
    }),
    'chat.postMessage': (args) => {
      const channel = channelOf(args);
      const text = contentOf(args);
      if (args.thread_ts !== undefined) requireMessage(channel, args.thread_ts, 'invalid_thread_ts');
      const ts = nextTs();
      if (!messages.has(channel)) messages.set(channel, new Set());
      messages.get(channel)!.add(ts);
      return { channel, ts, message: { type: 'message', user: BOT_USER_ID, bot_id: BOT_ID, text, ts } };
    },
    'chat.update': (args) => {
      const channel = channelOf(args);
      const ts = requireMessage(channel, args.ts, 'message_not_found');
      const text = contentOf(args);
      return { channel, ts, text };
    },
    'chat.getPermalink': (args) => {
      const channel = channelOf(args);
      const ts = requireMessage(channel, args.message_ts, 'message_not_found');
      return { channel, permalink: `https://bench.slack.com/archives/${channel}/p${ts.replace('.', '')}` };
    },
    'chat.postEphemeral': (args) => {
      channelOf(args);
      if (typeof args.user !== 'string' || args.user === '') throw new SlackApiError('user_not_found');
      contentOf(args);
      return { message_ts: nextTs() };
    },
    'usergroups.users.list': (args) => {
      if (typeof args.usergroup !== 'string' || !args.usergroup.startsWith('S')) throw new SlackApiError('no_such_subteam');
      return { users: [] };
    },
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    if (req.method === 'GET' && path === '/bench/stats') return sendJson(res, 200, stats);
    if (req.method === 'GET' && path === '/bench/responses') return sendJson(res, 200, responses);

    // The bot confirms each declaration through the command's response_url.
    const responseUrl = /^\/commands\/[A-Z0-9]+\/([A-Za-z0-9]+)$/.exec(path);
    if (req.method === 'POST' && responseUrl) {
      const receivedAtNs = process.hrtime.bigint().toString();
      stats.calls.response_url = (stats.calls.response_url ?? 0) + 1;
      const text = await readResponseText(req);
      if (text === undefined) {
        stats.errors.invalid_response_url_payload = (stats.errors.invalid_response_url_payload ?? 0) + 1;
        return sendJson(res, 400, { ok: false, error: 'invalid_payload' });
      }
      responses.push({ key: responseUrl[1], receivedAtNs, text });
      return sendJson(res, 200, { ok: true });
    }

    const match = /^\/api\/([a-zA-Z.]+)$/.exec(path);
    if (req.method !== 'POST' || !match) return sendJson(res, 404, { ok: false, error: 'not_found' });

    const method = match[1];
    stats.calls[method] = (stats.calls[method] ?? 0) + 1;
    let reply: Result;
    try {
      const args = await readArgs(req);
      checkToken(req, args, options.botToken);
      const run = methods[method];
      if (!run) throw new SlackApiError('unknown_method');
      reply = { ok: true, ...run(args) };
    } catch (error) {
      if (error instanceof BodyTooLarge) return sendJson(res, 413, { ok: false, error: 'request_too_large' });
      if (!(error instanceof SlackApiError)) throw error;
      stats.errors[error.code] = (stats.errors[error.code] ?? 0) + 1;
      reply = { ok: false, error: error.code };
    }
    sendJson(res, 200, reply);
  };

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    handle(req, res).catch(() => sendJson(res, 500, { ok: false, error: 'internal_error' }));
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });

  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    apiUrl: `${url}/api/`,
    stats: () => stats,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

function channelOf(args: Args): string {
  const channel = args.channel;
  if (typeof channel !== 'string' || !CHANNEL_ID.test(channel)) throw new SlackApiError('channel_not_found');
  return channel;
}

/** Checks `text` and `blocks` as chat.* methods do and returns the text. */
function contentOf(args: Args): string {
  const text = typeof args.text === 'string' ? args.text : '';
  let blocks: unknown = args.blocks;
  if (typeof blocks === 'string') {
    try {
      blocks = JSON.parse(blocks);
    } catch {
      throw new SlackApiError('invalid_blocks_format');
    }
  }
  if (blocks !== undefined && !Array.isArray(blocks)) throw new SlackApiError('invalid_blocks_format');
  if (text === '' && (!Array.isArray(blocks) || blocks.length === 0)) throw new SlackApiError('no_text');
  return text;
}

function checkToken(req: IncomingMessage, args: Args, botToken: string): void {
  const header = req.headers.authorization;
  const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : args.token;
  if (typeof token !== 'string' || token === '') throw new SlackApiError('not_authed');
  if (token !== botToken) throw new SlackApiError('invalid_auth');
}

/**
 * Reads the JSON message a bot posts to a response_url and returns its text,
 * or undefined when the body is not a JSON object with text or blocks.
 */
async function readResponseText(req: IncomingMessage): Promise<string | undefined> {
  if ((req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase() !== 'application/json') return undefined;
  let body: unknown;
  try {
    body = JSON.parse(await readBody(req));
  } catch {
    return undefined;
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return undefined;
  const { text, blocks } = body as { text?: unknown; blocks?: unknown };
  if (typeof text === 'string' && text !== '') return text;
  return Array.isArray(blocks) && blocks.length > 0 ? '' : undefined;
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new BodyTooLarge();
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Parses a form or JSON body, as the Web API accepts both. */
async function readArgs(req: IncomingMessage): Promise<Args> {
  const body = await readBody(req);
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'application/json') {
    try {
      const parsed: unknown = JSON.parse(body);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as Args;
    } catch {
      // NOTE: the error code for a JSON body that does not parse is assumed; Slack's list of
      // common errors documents invalid_form_data only for form bodies.
    }
    throw new SlackApiError('invalid_json');
  }
  if (type === 'application/x-www-form-urlencoded' || body === '') return Object.fromEntries(new URLSearchParams(body));
  throw new SlackApiError('invalid_post_type');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify(body));
}
