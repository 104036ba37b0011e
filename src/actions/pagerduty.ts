// Sends PagerDuty Events API v2 events and classifies the response, so the
// outbox can tell whether an event is done, can never succeed, or must be retried.
import https from 'node:https';

import { event as sendEvent } from '@pagerduty/pdjs';

import { systemClock, type Clock } from '../bot/clock.ts';
import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { scrubText } from '../bot/redact.ts';

type EventParameters = Parameters<typeof sendEvent>[0];
type EventResponse = Awaited<ReturnType<typeof sendEvent>>;

export type PagerDutyEventAction = 'trigger' | 'acknowledge' | 'resolve';
export type PagerDutySeverity = 'critical' | 'error' | 'warning' | 'info';

export interface PagerDutyLink {
  href: string;
  text?: string;
}

export interface PagerDutyEvent {
  action: PagerDutyEventAction;
  /** One key per incident, so a retry or a later resolve finds the same alert. */
  dedupKey: string;
  /** Required to trigger, at most 1024 characters. */
  summary?: string;
  /** Required to trigger: the system the alert is about. */
  source?: string;
  /** Required to trigger. */
  severity?: PagerDutySeverity;
  customDetails?: Record<string, unknown>;
  links?: PagerDutyLink[];
}

export interface SendPagerDutyEventOptions {
  /** Host and optional port of the Events API, without a scheme. */
  server?: string;
  /** The 32-character integration key of the PagerDuty service. */
  routingKey: string;
  event: PagerDutyEvent;
  /** Deadline for the whole call, including the 429 retries that pdjs makes itself. */
  timeoutMs: number;
  logger: Logger;
  /**
   * Extra CA certificate (PEM) to trust, for test doubles with a certificate
   * made at test time. Production trusts extra CAs through NODE_EXTRA_CA_CERTS.
   */
  ca?: string;
  /** Clock for reading a Retry-After date; the system clock by default. */
  clock?: Clock;
}

export type PagerDutyResult =
  | { outcome: 'accepted'; dedupKey: string }
  | { outcome: 'rejected'; status: number; message: string }
  | { outcome: 'retry'; status?: number; reason: string; retryAfterMs?: number };

export const DEFAULT_PAGERDUTY_SERVER = 'events.pagerduty.com';

const SEVERITIES: readonly PagerDutySeverity[] = ['critical', 'error', 'warning', 'info'];
const ACTIONS: readonly PagerDutyEventAction[] = ['trigger', 'acknowledge', 'resolve'];
const MAX_SUMMARY_LENGTH = 1024;
const MAX_DEDUP_KEY_LENGTH = 255;
const MAX_EVENT_BYTES = 512 * 1024;
const SERVER_PATTERN = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9-]+(?::\d{1,5})?$/;

function invalid(message: string): never {
  throw new ActionError('pagerduty_invalid_event', message);
}

function validateTrigger(event: PagerDutyEvent): void {
  const summary = event.summary ?? '';
  if (summary.trim() === '') {
    invalid('A PagerDuty trigger needs a summary; pass event.summary (1 to 1024 characters).');
  }
  if (summary.length > MAX_SUMMARY_LENGTH) {
    invalid(
      `PagerDuty summary is ${summary.length} characters; shorten it to ${MAX_SUMMARY_LENGTH} or fewer.`,
    );
  }
  if ((event.source ?? '').trim() === '') {
    invalid('A PagerDuty trigger needs a source (the affected system); pass event.source.');
  }
  if (!event.severity || !SEVERITIES.includes(event.severity)) {
    invalid(
      `PagerDuty severity ${JSON.stringify(event.severity)} is invalid; use one of ${SEVERITIES.join(', ')}.`,
    );
  }
}

function validateLinks(links: PagerDutyLink[] | undefined): void {
  for (const link of links ?? []) {
    let protocol = '';
    try {
      protocol = new URL(link.href).protocol;
    } catch {
      // An unparsable URL falls through to the error below.
    }
    if (protocol !== 'https:' && protocol !== 'http:') {
      invalid(`PagerDuty link ${JSON.stringify(link.href)} is not an http or https URL.`);
    }
  }
}

/** Checks every field before anything is sent. No message contains the routing key. */
function validate(options: SendPagerDutyEventOptions): void {
  const { event, routingKey } = options;

  if (!/^[A-Za-z0-9]{32}$/.test(routingKey)) {
    invalid(
      `PagerDuty routing key must be 32 letters or digits; the configured value has ${routingKey.length} characters. Copy the integration key of the Events API v2 integration.`,
    );
  }
  if (!ACTIONS.includes(event.action)) {
    invalid(
      `PagerDuty event action ${JSON.stringify(event.action)} is invalid; use trigger, acknowledge or resolve.`,
    );
  }
  if (event.dedupKey.length < 1 || event.dedupKey.length > MAX_DEDUP_KEY_LENGTH) {
    invalid(
      `PagerDuty dedup key must be 1 to ${MAX_DEDUP_KEY_LENGTH} characters; got ${event.dedupKey.length}.`,
    );
  }
  if (event.action === 'trigger') validateTrigger(event);
  validateLinks(event.links);

  const server = options.server ?? DEFAULT_PAGERDUTY_SERVER;
  if (!SERVER_PATTERN.test(server)) {
    invalid(
      `PagerDuty server ${JSON.stringify(server)} is invalid; give a host name with an optional port, without https:// or a path.`,
    );
  }
  if (!Number.isFinite(options.timeoutMs) || options.timeoutMs <= 0) {
    invalid(`PagerDuty timeout must be a positive number of milliseconds; got ${options.timeoutMs}.`);
  }
}

/** Builds the Events API v2 body. Acknowledge and resolve carry no payload. */
function buildBody(options: SendPagerDutyEventOptions): Record<string, unknown> {
  const { event } = options;
  const body: Record<string, unknown> = {
    routing_key: options.routingKey,
    event_action: event.action,
    dedup_key: event.dedupKey,
  };

  if (event.action === 'trigger') {
    const payload: Record<string, unknown> = {
      summary: event.summary,
      source: event.source,
      severity: event.severity,
    };
    if (event.customDetails) payload.custom_details = event.customDetails;
    body.payload = payload;
  }
  if (event.links && event.links.length > 0) body.links = event.links;

  return body;
}

/** Reads Retry-After as seconds or as an HTTP date. */
function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;

  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);

  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

function errorText(data: unknown): string {
  if (typeof data !== 'object' || data === null) return 'no error details';

  const { message, errors } = data as { message?: unknown; errors?: unknown };
  const parts: string[] = [];
  if (typeof message === 'string') parts.push(message);
  if (Array.isArray(errors)) parts.push(errors.filter((e) => typeof e === 'string').join('; '));

  const text = parts.filter(Boolean).join(': ');
  return scrubText(text || 'no error details');
}

function classifyResponse(response: EventResponse, event: PagerDutyEvent, clock: Clock): PagerDutyResult {
  const { status } = response;

  if (status >= 200 && status < 300) {
    const returned = (response.data as { dedup_key?: unknown } | undefined)?.dedup_key;
    return { outcome: 'accepted', dedupKey: typeof returned === 'string' ? returned : event.dedupKey };
  }
  if (status === 429) {
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), clock.now());
    return { outcome: 'retry', status, reason: 'rate limited by PagerDuty', retryAfterMs };
  }
  if (status >= 500 || status === 408) {
    return { outcome: 'retry', status, reason: `PagerDuty returned HTTP ${status}` };
  }
  return { outcome: 'rejected', status, message: errorText(response.data) };
}

function classifyFailure(error: unknown, timedOut: boolean, timeoutMs: number): PagerDutyResult {
  if (timedOut) return { outcome: 'retry', reason: `PagerDuty timed out after ${timeoutMs} ms` };

  const failure = error as { code?: unknown; type?: unknown; message?: unknown };
  if (failure?.type === 'invalid-json') {
    return { outcome: 'retry', reason: 'PagerDuty returned a body that is not JSON' };
  }

  const code = typeof failure?.code === 'string' ? failure.code : 'network error';
  return { outcome: 'retry', reason: `could not reach PagerDuty: ${code}` };
}

/**
 * Sends one event to the Events API v2 through @pagerduty/pdjs and classifies
 * the response: accepted (2xx), rejected (a 4xx other than 408 and 429, which
 * a retry cannot fix) or retry (network error, timeout, 408, 429, 5xx).
 * Throws ActionError `pagerduty_invalid_event` before sending when an input
 * is invalid.
 *
 * pdjs 2.2.4 retries a 429 three more times by itself, `retryTimeout` ms
 * apart, and has no option to turn that off. The spacing is an eighth of
 * `timeoutMs`, so the three waits fit inside the deadline. Its
 * `requestTimeout` only starts an idle timer that outlives failed requests, so
 * it is set to 0 and an AbortSignal enforces the deadline. The per-call agent
 * is destroyed afterwards, so no socket or timer outlives the call.
 */
export async function sendPagerDutyEvent(options: SendPagerDutyEventOptions): Promise<PagerDutyResult> {
  validate(options);

  const body = buildBody(options);
  if (Buffer.byteLength(JSON.stringify(body)) > MAX_EVENT_BYTES) {
    invalid('PagerDuty event is larger than 512 KB; send fewer custom details.');
  }

  const { event, logger, timeoutMs } = options;
  const fields = { dedupKey: event.dedupKey, action: event.action };
  const agent = new https.Agent({ keepAlive: false, ...(options.ca ? { ca: options.ca } : {}) });
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);

  const parameters = {
    server: options.server ?? DEFAULT_PAGERDUTY_SERVER,
    data: body as unknown as EventParameters['data'],
    requestTimeout: 0,
    retryTimeout: Math.floor(timeoutMs / 8),
    signal: controller.signal,
    agent,
  } as EventParameters;

  let result: PagerDutyResult;
  try {
    result = classifyResponse(await sendEvent(parameters), event, options.clock ?? systemClock);
  } catch (error) {
    result = classifyFailure(error, controller.signal.aborted, timeoutMs);
  } finally {
    clearTimeout(timer);
    agent.destroy();
  }

  if (result.outcome === 'accepted') {
    logger.info({ ...fields }, 'pagerduty event accepted');
  } else if (result.outcome === 'rejected') {
    logger.error({ ...fields, status: result.status, detail: result.message }, 'pagerduty event rejected');
  } else {
    logger.warn(
      { ...fields, status: result.status, reason: result.reason, retryAfterMs: result.retryAfterMs },
      'pagerduty event deferred',
    );
  }

  return result;
}
