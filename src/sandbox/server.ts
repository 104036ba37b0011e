import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import type { CustomRoute } from '@slack/bolt';

import { AdjustableClock, type Clock } from '../bot/clock.ts';
import type { Logger } from '../bot/logger.ts';
import {
  SandboxDelivery,
  SandboxRequestError,
  type ClickInput,
  type RawValues,
} from './delivery.ts';
import { BodyTooLargeError, handleWebApi, readBody, sendJson } from './web-api.ts';
import { SandboxWorkspace } from './workspace.ts';

/**
 * HTTP routes of the sandbox: the page, its live stream and its actions,
 * the Web API double under `/api/`, and the response_url endpoint. The
 * routes have Bolt's `customRoutes` shape, so the bot serves them on its own
 * port; `startSlackDouble` serves the same routes alone for tests.
 */

/** The bot's clock as the sandbox drives it. */
export interface SandboxClock {
  now(): number;
  advance(ms: number): void;
}

export interface SandboxRoutesOptions {
  workspace: SandboxWorkspace;
  /** The bot's `/slack/events` URL, or a function returning it once the bot listens. */
  botEventsUrl: string | (() => string);
  signingSecret: string;
  botToken: string;
  clock: SandboxClock;
  /** The sandbox's own origin for response URLs; by default the origin of `botEventsUrl`. */
  publicUrl?: string | (() => string);
  /** A delivery to reuse; by default the routes create one from the options above. */
  delivery?: SandboxDelivery;
  /**
   * Ends the open live streams when aborted. An open page keeps its stream
   * open, and the HTTP server's close() waits for it, so abort before stopping.
   */
  shutdownSignal?: AbortSignal;
  logger?: Logger;
}

/** The largest move of the clock in one request: a year, enough for quarterly reminders. */
export const MAX_CLOCK_ADVANCE_MS = 366 * 24 * 60 * 60 * 1000;

const PUBLIC_DIR = new URL('./public/', import.meta.url);

const PAGE_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

type Handler = (
  req: IncomingMessage & { params?: Record<string, string> },
  res: ServerResponse,
) => Promise<void>;

/** Builds the sandbox's routes for Bolt's `customRoutes` (or for `startSlackDouble`). */
export function createSandboxRoutes(options: SandboxRoutesOptions): CustomRoute[] {
  const { workspace, clock, logger } = options;
  const delivery =
    options.delivery ??
    new SandboxDelivery(workspace, {
      botEventsUrl: options.botEventsUrl,
      signingSecret: options.signingSecret,
      publicUrl: options.publicUrl,
      logger,
    });

  // An AdjustableClock reports every move, including moves made outside the sandbox.
  const observable = clock as Partial<AdjustableClock>;
  const reportsMoves = typeof observable.onChange === 'function';
  if (reportsMoves)
    observable.onChange?.(() => workspace.publish({ type: 'clock', now: clock.now() }));

  const route = (method: string, path: string, handler: Handler): CustomRoute => ({
    path,
    method,
    handler: (req, res) => {
      guarded(handler, req, res, logger);
    },
  });

  return [
    route('GET', '/', (req, res) => sendFile(res, 'index.html', 'text/html; charset=utf-8')),
    // Permalinks from chat.getPermalink open the page at that message's thread.
    route('GET', '/archives/:channel/:message', async (req, res) => {
      const channel = String(req.params?.channel ?? '');
      const digits = /^p(\d{10})(\d{6})$/.exec(String(req.params?.message ?? ''));
      const location = digits && /^[CGD][A-Z0-9]+$/.test(channel) ? `/?channel=${channel}&thread=${digits[1]}.${digits[2]}` : '/';
      res.writeHead(302, { location });
      res.end();
    }),
    route('GET', '/favicon.ico', async (req, res) => {
      res.writeHead(204);
      res.end();
    }),
    route('GET', '/sandbox/app.js', (req, res) =>
      sendFile(res, 'app.js', 'text/javascript; charset=utf-8'),
    ),
    route('GET', '/sandbox/app.css', (req, res) =>
      sendFile(res, 'app.css', 'text/css; charset=utf-8'),
    ),
    route('GET', '/sandbox/stream', async (req, res) =>
      streamChanges(workspace, req, res, options.shutdownSignal),
    ),
    route('GET', '/sandbox/state', async (req, res) =>
      sendJson(res, 200, snapshot(workspace, clock)),
    ),

    route('POST', '/sandbox/command', async (req, res) => {
      const body = await jsonBody(req);
      const user = stringField(body, 'user');
      const channel = stringField(body, 'channel');
      const text = stringField(body, 'text');
      const threadTs = optionalStringField(body, 'threadTs');
      const result = text.trimStart().startsWith('/')
        ? await delivery.command({ user, channel, text })
        : await delivery.message({ user, channel, text, threadTs });
      sendJson(res, 200, result);
    }),

    route('POST', '/sandbox/click', async (req, res) => {
      const body = await jsonBody(req);
      const input: ClickInput = {
        user: stringField(body, 'user'),
        channel: optionalStringField(body, 'channel'),
        messageTs: optionalStringField(body, 'messageTs'),
        viewId: optionalStringField(body, 'viewId'),
        blockId: stringField(body, 'blockId'),
        actionId: stringField(body, 'actionId'),
        confirmed: body.confirmed === true,
        selectedOption: optionalStringField(body, 'selectedOption'),
        selectedUser: optionalStringField(body, 'selectedUser'),
        selectedUsers: optionalStringList(body, 'selectedUsers'),
        values: optionalValues(body),
      };
      sendJson(res, 200, await delivery.click(input));
    }),

    route('POST', '/sandbox/submit', async (req, res) => {
      const body = await jsonBody(req);
      const values = optionalValues(body) ?? {};
      const result = await delivery.submit({
        user: stringField(body, 'user'),
        viewId: stringField(body, 'viewId'),
        values,
      });
      sendJson(res, 200, result);
    }),

    route('POST', '/sandbox/close', async (req, res) => {
      const body = await jsonBody(req);
      const result = await delivery.close({
        user: stringField(body, 'user'),
        viewId: stringField(body, 'viewId'),
      });
      sendJson(res, 200, result);
    }),

    route('POST', '/sandbox/clock', async (req, res) => {
      const body = await jsonBody(req);
      const advanceMs = body.advanceMs;
      if (
        typeof advanceMs !== 'number' ||
        !Number.isInteger(advanceMs) ||
        advanceMs < 1 ||
        advanceMs > MAX_CLOCK_ADVANCE_MS
      ) {
        const message =
          `advanceMs must be a whole number of milliseconds from 1 to ${MAX_CLOCK_ADVANCE_MS}, ` +
          `got ${JSON.stringify(advanceMs)}; for example 900000 moves the clock 15 minutes`;
        throw new SandboxRequestError('invalid_advance', message);
      }
      clock.advance(advanceMs);
      if (!reportsMoves) workspace.publish({ type: 'clock', now: clock.now() });
      logger?.info({ advanceMs, now: clock.now() }, 'sandbox clock moved forward');
      sendJson(res, 200, clockState(clock));
    }),

    route('GET', '/sandbox/clock', async (req, res) => sendJson(res, 200, clockState(clock))),

    route('POST', '/api/:method', async (req, res) => {
      await handleWebApi(workspace, { botToken: options.botToken, logger }, req, res);
    }),

    route('POST', '/sandbox/response/:id', async (req, res) => {
      const id =
        req.params?.id ??
        new URL(req.url ?? '/', 'http://127.0.0.1').pathname.split('/').pop() ??
        '';
      await delivery.handleResponseUrl(id, req, res);
    }),
  ];
}

/** Runs a handler: rejects requests not addressed to loopback and turns errors into replies. */
function guarded(
  handler: Handler,
  req: IncomingMessage,
  res: ServerResponse,
  logger?: Logger,
): void {
  const rejection = rejectionFor(req);
  if (rejection) {
    sendJson(res, rejection.status, {
      ok: false,
      error: rejection.code,
      message: rejection.message,
    });
    return;
  }

  handler(req, res).catch((error: unknown) => {
    if (res.headersSent) {
      res.end();
      return;
    }
    if (error instanceof SandboxRequestError) {
      sendJson(res, error.status, { ok: false, error: error.code, message: error.message });
      return;
    }
    if (error instanceof BodyTooLargeError) {
      sendJson(res, 413, { ok: false, error: 'request_too_large', message: error.message });
      return;
    }
    logger?.error({ err: error, path: req.url }, 'sandbox route failed');
    sendJson(res, 500, {
      ok: false,
      error: 'internal_error',
      message: 'The sandbox failed; see the bot log',
    });
  });
}

/**
 * Rejects requests whose Host is not a loopback name (DNS rebinding) and
 * page actions posted from another origin or without a JSON body, which a
 * cross-site form can send.
 */
function rejectionFor(
  req: IncomingMessage,
): { status: number; code: string; message: string } | undefined {
  const host = req.headers.host ?? '';
  const hostname = host.replace(/:\d+$/, '');
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) {
    return {
      status: 403,
      code: 'forbidden_host',
      message: `The sandbox serves only loopback hosts, got "${host}"`,
    };
  }

  const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
  const pageAction =
    req.method === 'POST' && path.startsWith('/sandbox/') && !path.startsWith('/sandbox/response/');
  if (!pageAction) return undefined;

  const origin = req.headers.origin;
  if (origin !== undefined && new URL(origin).host !== host) {
    return {
      status: 403,
      code: 'forbidden_origin',
      message: `Requests from ${origin} may not act in the sandbox`,
    };
  }

  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    return {
      status: 415,
      code: 'invalid_content_type',
      message: 'Send the request body as application/json',
    };
  }
  return undefined;
}

async function sendFile(res: ServerResponse, name: string, contentType: string): Promise<void> {
  const content = await readFile(new URL(name, PUBLIC_DIR));
  res.writeHead(200, { 'Content-Type': contentType, ...PAGE_HEADERS });
  res.end(content);
}

/** Streams workspace changes as Server-Sent Events (`event: change`, JSON data). */
async function streamChanges(
  workspace: SandboxWorkspace,
  req: IncomingMessage,
  res: ServerResponse,
  shutdownSignal?: AbortSignal,
) {
  if (shutdownSignal?.aborted) {
    sendJson(res, 503, { ok: false, error: 'shutting_down', message: 'The sandbox is stopping' });
    return;
  }

  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-store',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
  });
  res.write(': connected\n\n');

  const unsubscribe = workspace.subscribe((change) => {
    res.write(`event: change\ndata: ${JSON.stringify(change)}\n\n`);
  });
  const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), 15_000);
  heartbeat.unref();

  const stop = () => {
    clearInterval(heartbeat);
    unsubscribe();
    shutdownSignal?.removeEventListener('abort', end);
  };
  const end = () => res.end();
  shutdownSignal?.addEventListener('abort', end);
  req.on('close', stop);
  res.on('close', stop);
}

function snapshot(workspace: SandboxWorkspace, clock: SandboxClock) {
  return {
    team: { id: workspace.teamId, domain: workspace.teamDomain, name: workspace.teamName },
    bot: { userId: workspace.botUserId, botId: workspace.botId, appId: workspace.appId },
    users: workspace.users,
    channels: workspace.channels,
    userGroups: workspace.userGroups,
    messages: workspace.listMessages(),
    views: workspace.openViews(),
    clock: clockState(clock),
  };
}

function clockState(clock: SandboxClock) {
  const now = clock.now();
  return { now, iso: new Date(now).toISOString() };
}

// ----- request bodies of the page's actions -----

type Body = Record<string, unknown>;

async function jsonBody(req: IncomingMessage): Promise<Body> {
  const raw = await readBody(req, 1_000_000);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new SandboxRequestError('invalid_json', 'The request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SandboxRequestError('invalid_json', 'The request body must be a JSON object');
  }
  return value as Body;
}

function stringField(body: Body, name: string): string {
  const value = body[name];
  if (typeof value !== 'string' || value === '') {
    throw new SandboxRequestError(
      'invalid_request',
      `Field "${name}" must be a non-empty string, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}

function optionalStringField(body: Body, name: string): string | undefined {
  if (body[name] === undefined || body[name] === null) return undefined;
  return stringField(body, name);
}

function optionalStringList(body: Body, name: string): string[] | undefined {
  const value = body[name];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
    throw new SandboxRequestError('invalid_request', `Field "${name}" must be an array of strings`);
  }
  return value as string[];
}

function optionalValues(body: Body): RawValues | undefined {
  const values = body.values;
  if (values === undefined || values === null) return undefined;

  const valid =
    typeof values === 'object' &&
    !Array.isArray(values) &&
    Object.values(values).every(
      (actions) =>
        typeof actions === 'object' &&
        actions !== null &&
        Object.values(actions).every(
          (value) =>
            value === null ||
            typeof value === 'string' ||
            (Array.isArray(value) && value.every((item) => typeof item === 'string')),
        ),
    );
  if (!valid) {
    const message =
      'Field "values" must map block_id to action_id to a string, a list of strings or null';
    throw new SandboxRequestError('invalid_request', message);
  }
  return values as RawValues;
}

// ----- the standalone Slack double -----

export interface SlackDoubleOptions {
  botToken: string;
  /** Signs deliveries to the bot; when omitted, a random secret (`SlackDouble.signingSecret`). */
  signingSecret?: string;
  /** The bot's `/slack/events` URL; can also be set later with `setBotEventsUrl`. */
  botEventsUrl?: string;
  /** SQLite file for the channel history; in memory by default. */
  dbPath?: string;
  clock?: AdjustableClock;
  /** Wall-clock time for request signatures and for trigger and response_url expiry. */
  realClock?: Clock;
  logger?: Logger;
}

export interface SlackDouble {
  /** The double's origin, such as http://127.0.0.1:41234. */
  url: string;
  /** The Web API base for `clientOptions.slackApiUrl`, with its trailing slash. */
  apiUrl: string;
  workspace: SandboxWorkspace;
  delivery: SandboxDelivery;
  clock: AdjustableClock;
  signingSecret: string;
  setBotEventsUrl(url: string): void;
  close(): Promise<void>;
}

/** Serves the sandbox's routes alone on 127.0.0.1 with a port chosen by the system. */
export async function startSlackDouble(options: SlackDoubleOptions): Promise<SlackDouble> {
  const clock = options.clock ?? new AdjustableClock();
  const signingSecret = options.signingSecret ?? randomBytes(16).toString('hex');
  const workspace = new SandboxWorkspace({
    dbPath: options.dbPath ?? ':memory:',
    botUserId: 'U0SBXBOT',
    botId: 'B0SBXBOT',
    teamId: 'T0SBX',
    clock,
    realClock: options.realClock,
  });

  let botEventsUrl = options.botEventsUrl;
  let origin = '';
  const eventsUrl = () => {
    if (botEventsUrl === undefined) {
      const message = 'The Slack double has no bot to deliver to; call setBotEventsUrl(url) first';
      throw new SandboxRequestError('no_bot', message, 409);
    }
    return botEventsUrl;
  };

  const delivery = new SandboxDelivery(workspace, {
    botEventsUrl: eventsUrl,
    signingSecret,
    publicUrl: () => origin,
    logger: options.logger,
  });
  const shutdown = new AbortController();
  const routes = createSandboxRoutes({
    workspace,
    botEventsUrl: eventsUrl,
    signingSecret,
    botToken: options.botToken,
    clock,
    delivery,
    shutdownSignal: shutdown.signal,
    logger: options.logger,
  });

  const sockets = new Set<Socket>();
  const server = createServer((req, res) => dispatch(routes, req, res));
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: origin,
    apiUrl: `${origin}/api/`,
    workspace,
    delivery,
    clock,
    signingSecret,
    setBotEventsUrl: (url: string) => {
      botEventsUrl = url;
    },
    close: async () => {
      shutdown.abort();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
      workspace.close();
    },
  };
}

/** Matches a request to a route the way Bolt does for `customRoutes` with `:name` segments. */
function dispatch(routes: CustomRoute[], req: IncomingMessage, res: ServerResponse): void {
  const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
  const method = (req.method ?? 'GET').toUpperCase();

  for (const route of routes) {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.map((m) => m.toUpperCase()).includes(method)) continue;

    const params = matchPath(route.path, path);
    if (params) {
      route.handler(Object.assign(req, { params }), res);
      return;
    }
  }

  sendJson(res, 404, { ok: false, error: 'not_found', message: `No route for ${method} ${path}` });
}

function matchPath(pattern: string, path: string): Record<string, string> | undefined {
  const patternParts = pattern.split('/');
  const pathParts = path.split('/');
  if (patternParts.length !== pathParts.length) return undefined;

  const params: Record<string, string> = {};
  for (let index = 0; index < patternParts.length; index++) {
    const expected = patternParts[index];
    const actual = pathParts[index];
    if (expected.startsWith(':')) {
      if (actual === '') return undefined;
      params[expected.slice(1)] = decodeURIComponent(actual);
    } else if (expected !== actual) {
      return undefined;
    }
  }
  return params;
}
