// Verifies and reads Sentry integration webhooks. Sentry signs each request
// with a hex HMAC-SHA256 of the request body, keyed with the integration's
// client secret, in the Sentry-Hook-Signature header. The signature covers
// the raw bytes, so it is checked before the body is parsed.
import { createHmac, timingSafeEqual } from 'node:crypto';

import { ActionError } from '../bot/errors.ts';
import { scrubText } from '../bot/redact.ts';
import { findAlertByRuleName, type SentryAlertId } from './sentry-alerts.ts';

export type WebhookHeaders = Record<string, string | string[] | undefined>;

/** The part of a webhook that the bot keeps: short, scrubbed strings and no raw body. */
export interface SentryWebhookSummary {
  /** The Sentry-Hook-Resource header: event_alert, metric_alert, issue, error, ... */
  resource: string;
  /** The body's `action`: triggered, critical, warning, resolved, created, ... */
  action: string;
  /** The configured alert that sent it, or null for any other rule or resource. */
  alertId: SentryAlertId | null;
  ruleName: string | null;
  title: string;
  level: string | null;
  webUrl: string | null;
  summary: string;
}

const MAX_TITLE_LENGTH = 200;
const MAX_SUMMARY_LENGTH = 500;

/**
 * Returns true when `signatureHeader` is the hex HMAC-SHA256 of `rawBody`
 * under `clientSecret`. Compares in constant time, and returns false for a
 * missing or malformed header and for an empty secret.
 */
export function verifySentrySignature(
  rawBody: Buffer,
  signatureHeader: string | undefined,
  clientSecret: string,
): boolean {
  if (clientSecret === '' || typeof signatureHeader !== 'string') return false;

  const signature = signatureHeader.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(signature)) return false;

  const expected = createHmac('sha256', clientSecret).update(rawBody).digest();
  return timingSafeEqual(expected, Buffer.from(signature, 'hex'));
}

function header(headers: WebhookHeaders, name: string): string | undefined {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() !== name) continue;
    return Array.isArray(value) ? value[0] : value;
  }
  return undefined;
}

function record(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

function text(value: unknown, maxLength: number): string | null {
  if (typeof value !== 'string' || value.trim() === '') return null;

  const scrubbed = scrubText(value.trim());
  return scrubbed.length > maxLength ? `${scrubbed.slice(0, maxLength - 1)}…` : scrubbed;
}

function webUrl(value: unknown): string | null {
  if (typeof value !== 'string') return null;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? scrubText(url.toString()) : null;
  } catch {
    return null;
  }
}

function invalid(message: string): never {
  throw new ActionError('sentry_webhook_invalid', message);
}

/**
 * Reads a verified Sentry webhook into a summary. Issue alerts
 * (`event_alert`) and metric alerts (`metric_alert`) are matched to the four
 * configured alerts by rule name. Throws ActionError `sentry_webhook_invalid`
 * when the resource header is missing or the body is not an object with
 * `data`.
 */
export function classifySentryWebhook(headers: WebhookHeaders, body: unknown): SentryWebhookSummary {
  const resource = header(headers, 'sentry-hook-resource')?.trim() ?? '';
  if (!/^[a-z_]+$/.test(resource)) {
    invalid(
      `Sentry webhook has ${resource === '' ? 'no' : 'an invalid'} Sentry-Hook-Resource header; expected a resource such as event_alert or metric_alert.`,
    );
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    invalid('Sentry webhook body is not a JSON object.');
  }

  const payload = body as Record<string, unknown>;
  if (typeof payload.data !== 'object' || payload.data === null) {
    invalid(`Sentry ${resource} webhook has no "data" object.`);
  }

  const data = record(payload.data);
  const action = text(payload.action, 40) ?? 'unknown';

  if (resource === 'event_alert') return eventAlert(data, action);
  if (resource === 'metric_alert') return metricAlert(data, action);
  return otherResource(resource, data, action);
}

function eventAlert(data: Record<string, unknown>, action: string): SentryWebhookSummary {
  const event = record(data.event);
  const ruleName =
    text(data.triggered_rule, MAX_TITLE_LENGTH) ?? text(record(data.issue_alert).title, MAX_TITLE_LENGTH);
  const title = text(event.title, MAX_TITLE_LENGTH) ?? ruleName ?? 'Sentry issue alert';

  return {
    resource: 'event_alert',
    action,
    alertId: ruleName ? (findAlertByRuleName('event_alert', ruleName)?.id ?? null) : null,
    ruleName,
    title,
    level: text(event.level, 20),
    webUrl: webUrl(event.web_url),
    summary: text(ruleName ? `${ruleName}: ${title}` : title, MAX_SUMMARY_LENGTH) ?? title,
  };
}

function metricAlert(data: Record<string, unknown>, action: string): SentryWebhookSummary {
  const rule = record(record(data.metric_alert).alert_rule);
  const ruleName = text(rule.name, MAX_TITLE_LENGTH);
  const title = text(data.description_title, MAX_TITLE_LENGTH) ?? ruleName ?? 'Sentry metric alert';

  return {
    resource: 'metric_alert',
    action,
    alertId: ruleName ? (findAlertByRuleName('metric_alert', ruleName)?.id ?? null) : null,
    ruleName,
    title,
    level: ['critical', 'warning', 'resolved'].includes(action) ? action : null,
    webUrl: webUrl(data.web_url),
    summary: text(data.description_text, MAX_SUMMARY_LENGTH) ?? title,
  };
}

function otherResource(
  resource: string,
  data: Record<string, unknown>,
  action: string,
): SentryWebhookSummary {
  const subject = record(data[resource]);
  const title = text(subject.title, MAX_TITLE_LENGTH) ?? `Sentry ${resource} ${action}`;

  return {
    resource,
    action,
    alertId: null,
    ruleName: null,
    title,
    level: text(subject.level, 20),
    webUrl: webUrl(subject.web_url ?? subject.permalink),
    summary: title,
  };
}
