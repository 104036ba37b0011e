// Reports the bot's own faults to Sentry with @sentry/node 11. Every event and
// breadcrumb passes a scrubber first. It drops request bodies, cookies and
// credential headers, and removes or redacts fields named in
// SECRET_FIELD_NAMES. All text goes through scrubText, which removes
// registered secrets and token-shaped strings. Without a DSN nothing starts.
import { createRequire } from 'node:module';

import type { Breadcrumb, ErrorEvent, Event, StackFrame } from '@sentry/node';

type SentrySdk = typeof import('@sentry/node');

/**
 * The SDK, loaded on first use: @sentry/node and its OpenTelemetry
 * dependencies take about 70 MB of memory (measured with `node -e` on Node
 * 20), which a bot without SENTRY_DSN_BOT should not pay.
 */
let sdk: SentrySdk | undefined;
function loadSdk(): SentrySdk {
  sdk ??= createRequire(import.meta.url)('@sentry/node') as SentrySdk;
  return sdk;
}

import { fingerprint } from './fingerprint.ts';
import type { Logger } from './logger.ts';
import { isSecretField, registerSecret, scrubText, scrubValue } from './redact.ts';

export interface SentryInitOptions {
  /** The bot's own DSN. An empty or missing DSN turns error reporting off. */
  dsn: string | undefined;
  environment: string;
  release?: string;
  logger: Logger;
}

export interface SentryHandle {
  enabled: boolean;
  /** Waits up to `timeoutMs` for queued events to be sent. */
  flush(timeoutMs?: number): Promise<boolean>;
  /** Flushes, then shuts the SDK down, after which `initSentry` may be called again. */
  close(timeoutMs?: number): Promise<boolean>;
}

export interface FaultContext {
  incidentId?: number | null;
  /** Slack ids such as teamId, userId and channelId, which are not secrets. */
  slackIds?: Record<string, string>;
}

export class SentrySetupError extends Error {
  constructor(
    readonly code: 'sentry_dsn_invalid' | 'sentry_already_started',
    message: string,
  ) {
    super(message);
    this.name = 'SentrySetupError';
  }
}

// The only request headers kept in events. All others are dropped.
const KEPT_REQUEST_HEADERS = [
  'accept',
  'content-length',
  'content-type',
  'host',
  'user-agent',
  'x-request-id',
  'x-slack-retry-num',
  'x-slack-retry-reason',
];
const CREDENTIAL_HEADER = /auth|cookie|token|secret|signature|session|api[-_]?key|x-sentry|x-vault/i;
const DROPPED_BREADCRUMB_DATA = [
  'body',
  'request_body',
  'response_body',
  'headers',
  'request_headers',
  'response_headers',
  'cookies',
  'query',
  'http.query',
  'http.fragment',
];

let active: { enabled: boolean; logger: Logger } | undefined;

function validateDsn(dsn: string): void {
  let url: URL | undefined;
  try {
    url = new URL(dsn);
  } catch {
    url = undefined;
  }

  const projectId = url?.pathname.split('/').filter(Boolean).at(-1) ?? '';
  const valid =
    url !== undefined &&
    (url.protocol === 'https:' || url.protocol === 'http:') &&
    url.username !== '' &&
    /^\d+$/.test(projectId);
  if (!valid) {
    throw new SentrySetupError(
      'sentry_dsn_invalid',
      `SENTRY_DSN for the bot is not a valid DSN (fingerprint ${fingerprint(dsn)}); expected https://<public key>@<host>/<project id>, or leave it empty to turn error reporting off.`,
    );
  }

  registerSecret(url!.username);
}

/** Removes the query string and fragment, which may carry tokens. */
function stripQuery(value: string): string {
  try {
    const url = new URL(value);
    url.search = '';
    url.hash = '';
    return scrubText(url.toString());
  } catch {
    return scrubText(value.split(/[?#]/)[0] ?? '');
  }
}

/** Scrubs the whole value as JSON text, a backstop for fields the structured pass missed. */
function scrubAsJson<T>(value: T): T | null {
  try {
    return JSON.parse(scrubText(JSON.stringify(value))) as T;
  } catch {
    return null;
  }
}

function scrubFrames(frames: StackFrame[] | undefined): StackFrame[] | undefined {
  return frames?.map((frame) => {
    const copy: StackFrame = { ...frame };
    delete copy.vars;
    if (copy.context_line !== undefined) copy.context_line = scrubText(copy.context_line);
    if (copy.pre_context) copy.pre_context = copy.pre_context.map(scrubText);
    if (copy.post_context) copy.post_context = copy.post_context.map(scrubText);
    return copy;
  });
}

function withoutSecretFields(values: Record<string, unknown>): Record<string, unknown> {
  const remaining: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) {
    if (!isSecretField(key)) remaining[key] = scrubValue(value);
  }
  return remaining;
}

function scrubRequest(request: NonNullable<Event['request']>): Event['request'] {
  const copy = { ...request };
  delete copy.data;
  delete copy.cookies;
  delete copy.query_string;

  if (copy.headers) {
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(copy.headers)) {
      const lower = name.toLowerCase();
      if (KEPT_REQUEST_HEADERS.includes(lower) && !CREDENTIAL_HEADER.test(lower)) {
        headers[name] = scrubText(String(value));
      }
    }
    copy.headers = headers;
  }
  if (typeof copy.url === 'string') copy.url = stripQuery(copy.url);
  if (copy.env) copy.env = withoutSecretFields(copy.env) as Record<string, string>;
  return copy;
}

/**
 * Removes request bodies, cookies, credential headers and secret fields, and
 * scrubs all text. Returns null, which drops the event, if the scrubbed copy
 * is not valid JSON.
 */
export function scrubSentryEvent<T extends Event>(event: T): T | null {
  const copy: T = { ...event };

  if (copy.message) copy.message = scrubText(copy.message);
  if (copy.logentry) {
    copy.logentry = {
      message: copy.logentry.message === undefined ? undefined : scrubText(copy.logentry.message),
      params: copy.logentry.params === undefined ? undefined : scrubValue(copy.logentry.params),
    };
  }
  if (copy.exception?.values) {
    copy.exception = {
      values: copy.exception.values.map((exception) => ({
        ...exception,
        value: exception.value === undefined ? undefined : scrubText(exception.value),
        mechanism: exception.mechanism && {
          ...exception.mechanism,
          data: exception.mechanism.data && scrubValue(exception.mechanism.data),
        },
        stacktrace: exception.stacktrace && {
          ...exception.stacktrace,
          frames: scrubFrames(exception.stacktrace.frames),
        },
      })),
    };
  }
  if (copy.threads?.values) {
    copy.threads = {
      values: copy.threads.values.map((thread) => ({
        ...thread,
        stacktrace: thread.stacktrace && {
          ...thread.stacktrace,
          frames: scrubFrames(thread.stacktrace.frames),
        },
      })),
    };
  }
  if (copy.request) copy.request = scrubRequest(copy.request);
  if (copy.extra) copy.extra = withoutSecretFields(copy.extra);
  if (copy.contexts) copy.contexts = withoutSecretFields(copy.contexts) as T['contexts'];
  if (copy.tags) {
    const tags: NonNullable<Event['tags']> = {};
    for (const [key, value] of Object.entries(copy.tags)) {
      if (!isSecretField(key)) tags[key] = scrubText(String(value));
    }
    copy.tags = tags;
  }
  if (copy.user) copy.user = copy.user.id === undefined ? {} : { id: scrubText(String(copy.user.id)) };
  if (copy.breadcrumbs) {
    copy.breadcrumbs = copy.breadcrumbs
      .map((breadcrumb) => scrubBreadcrumb(breadcrumb))
      .filter((breadcrumb): breadcrumb is Breadcrumb => breadcrumb !== null);
  }

  return scrubAsJson(copy);
}

/** Drops bodies, headers, cookies and query strings from breadcrumb data and scrubs the rest. */
export function scrubBreadcrumb(breadcrumb: Breadcrumb): Breadcrumb | null {
  const copy: Breadcrumb = { ...breadcrumb };
  if (copy.message) copy.message = scrubText(copy.message);

  if (copy.data) {
    const data: Record<string, unknown> = { ...copy.data };
    for (const name of DROPPED_BREADCRUMB_DATA) delete data[name];
    if (typeof data.url === 'string') data.url = stripQuery(data.url);
    copy.data = withoutSecretFields(data);
  }
  return scrubAsJson(copy);
}

/**
 * Starts Sentry for the bot's own errors. Without a DSN it does nothing and
 * `captureError` only logs. Throws SentrySetupError for a malformed DSN. Call
 * it once at start-up, before the modules that Sentry instruments load.
 */
export function initSentry(options: SentryInitOptions): SentryHandle {
  if (active?.enabled) {
    throw new SentrySetupError(
      'sentry_already_started',
      'initSentry was already called; close the returned handle before starting Sentry again.',
    );
  }

  const dsn = options.dsn?.trim() ?? '';
  if (dsn === '') {
    active = { enabled: false, logger: options.logger };
    options.logger.info('sentry disabled: SENTRY_DSN_BOT is not set');
    return { enabled: false, flush: async () => true, close: async () => closeHandle(false) };
  }

  validateDsn(dsn);
  registerSecret(dsn);

  const Sentry = loadSdk();
  Sentry.init({
    dsn,
    environment: options.environment,
    release: options.release,
    integrations: (defaults) => defaults.filter((integration) => !integration.name.startsWith('LocalVariables')),
    includeLocalVariables: false,
    tracePropagationTargets: [],
    dataCollection: {
      userInfo: false,
      cookies: false,
      httpHeaders: { request: { allow: KEPT_REQUEST_HEADERS }, response: false },
      httpBodies: [],
      urlQueryParams: false,
      graphQL: { document: false, variables: false },
      genAI: { inputs: false, outputs: false },
      mcp: { inputs: false, outputs: false },
      databaseQueryData: false,
      queues: false,
      stackFrameVariables: false,
    },
    beforeSend: (event: ErrorEvent) => scrubSentryEvent(event),
    beforeBreadcrumb: (breadcrumb) => scrubBreadcrumb(breadcrumb),
  });

  active = { enabled: true, logger: options.logger };
  options.logger.info(
    { environment: options.environment, release: options.release ?? null, dsnFingerprint: fingerprint(dsn) },
    'sentry enabled',
  );

  return {
    enabled: true,
    flush: (timeoutMs = 2_000) => Sentry.flush(timeoutMs),
    close: async (timeoutMs = 2_000) => {
      const flushed = await Sentry.close(timeoutMs);
      return closeHandle(flushed);
    },
  };
}

function closeHandle(flushed: boolean): boolean {
  active = undefined;
  return flushed;
}

/**
 * Logs a fault and, when Sentry is on, reports it with the incident id as a
 * tag and the Slack ids as context. Returns the Sentry event id, if any, so
 * the reply can show the user which error id to quote.
 */
export function captureError(error: unknown, context: FaultContext = {}): string | undefined {
  const current = active;
  const incidentId = context.incidentId ?? null;
  const slackIds = context.slackIds ?? {};

  let eventId: string | undefined;
  if (current?.enabled) {
    const Sentry = loadSdk();
    eventId = Sentry.withScope((scope) => {
      if (incidentId !== null) scope.setTag('incident_id', String(incidentId));
      if (Object.keys(slackIds).length > 0) scope.setContext('slack', { ...slackIds });
      return Sentry.captureException(error);
    });
  }

  current?.logger.error({ err: error, incidentId, ...slackIds, sentryEventId: eventId ?? null }, 'fault captured');
  return eventId;
}
