import { randomBytes, randomInt } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';

import * as Sentry from '@sentry/node';
import type { Event } from '@sentry/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createLogger, type Logger } from '../src/bot/logger.ts';
import { registerSecret } from '../src/bot/redact.ts';
import {
  SentrySetupError,
  captureError,
  initSentry,
  scrubBreadcrumb,
  scrubSentryEvent,
  type SentryHandle,
} from '../src/bot/sentry.ts';
import { startSentryServer, type CapturedEnvelope, type SentryServer } from './helpers/sentry-server.ts';

const DJANGO_KEY_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)';

function djangoSecretKey(): string {
  return Array.from({ length: 50 }, () => DJANGO_KEY_ALPHABET[randomInt(DJANGO_KEY_ALPHABET.length)]).join('');
}

// Built at run time so that no secret appears in this file's source, which
// Sentry's context lines would otherwise copy into the event.
const slackToken = `xoxb-${randomInt(1e9)}-${randomInt(1e9)}-${randomBytes(12).toString('hex')}`;
const routingKey = randomBytes(16).toString('hex');
const unregisteredRoutingKey = randomBytes(16).toString('hex');
const generatedKey = djangoSecretKey();
const secrets = { slackToken, routingKey, unregisteredRoutingKey, generatedKey };

let sentry: SentryServer;
let handle: SentryHandle;
let logger: Logger;
let logLines: string[];
let app: http.Server;
let appPort: number;

function eventsOf(envelopes: CapturedEnvelope[]): Array<{ envelope: CapturedEnvelope; event: Event }> {
  return envelopes.flatMap((envelope) =>
    envelope.items
      .filter((item) => item.header.type === 'event')
      .map((item) => ({ envelope, event: item.payload as Event })),
  );
}

async function waitForEvent(eventId: string): Promise<{ envelope: CapturedEnvelope; event: Event }> {
  await handle.flush(2_000);
  for (let attempt = 0; attempt < 40; attempt += 1) {
    const found = eventsOf(sentry.envelopes).find(({ event }) => event.event_id === eventId);
    if (found) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`event ${eventId} never reached the Sentry double`);
}

// A Slack entry point that fails while a Slack token, a PagerDuty routing key
// and a freshly generated SECRET_KEY are in scope, as the real handlers do.
async function failingHandler(request: http.IncomingMessage, response: http.ServerResponse) {
  for await (const chunk of request) void chunk;

  const pagerDutyKey = routingKey;
  const newSecretKey = generatedKey;
  let eventId: string | undefined;
  try {
    Sentry.addBreadcrumb({
      category: 'pagerduty',
      message: `enqueue with routing key ${pagerDutyKey}`,
      data: {
        routingKey: unregisteredRoutingKey,
        url: `https://events.pagerduty.com/v2/enqueue?token=${slackToken}`,
        body: { routing_key: pagerDutyKey },
      },
    });
    Sentry.getCurrentScope().setExtra('routingKey', unregisteredRoutingKey);
    Sentry.getCurrentScope().setExtra('attempt', 2);

    throw new Error(
      `chat.postMessage failed for ${slackToken}; page ${pagerDutyKey}; new key ${newSecretKey}`,
      { cause: new Error(`vault write of ${newSecretKey} failed`) },
    );
  } catch (error) {
    eventId = captureError(error, {
      incidentId: 42,
      slackIds: { teamId: 'T0001', userId: 'U0001', channelId: 'C0001' },
    });
  }

  response.writeHead(500, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ eventId }));
}

beforeAll(async () => {
  registerSecret(routingKey);
  registerSecret(generatedKey);

  sentry = await startSentryServer({ org: 'acme', project: 'bot', projectId: 9, tokens: {} });
  const key = sentry.addKey('bot');

  logLines = [];
  logger = createLogger(
    'debug',
    new Writable({
      write(chunk, _encoding, callback) {
        logLines.push(chunk.toString());
        callback();
      },
    }),
  );
  handle = initSentry({ dsn: sentry.dsnFor(key), environment: 'test', release: 'bot@1.0.0', logger });

  app = http.createServer((request, response) => void failingHandler(request, response));
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  appPort = (app.address() as AddressInfo).port;
});

afterAll(async () => {
  await handle.close(2_000);
  await new Promise<void>((resolve) => app.close(() => resolve()));
  await sentry.close();
});

async function callFailingHandler(): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${appPort}/slack/events?token=${slackToken}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${slackToken}`,
      cookie: `sessionid=${generatedKey}`,
      'x-slack-signature': `v0=${randomBytes(32).toString('hex')}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ token: slackToken, text: `/incident secret-key ${generatedKey}` }),
  });
  const { eventId } = (await response.json()) as { eventId?: string };
  if (!eventId) throw new Error('captureError returned no event id');
  return eventId;
}

describe('Sentry scrubbing end to end', () => {
  // One request for the whole block: Sentry's dedupe integration drops an
  // event that repeats the previous one.
  let eventId: string;
  let envelope: CapturedEnvelope;
  let event: Event;

  beforeAll(async () => {
    eventId = await callFailingHandler();
    ({ envelope, event } = await waitForEvent(eventId));
  });

  it('envelope contains none of the secrets', () => {
    for (const [name, secret] of Object.entries(secrets)) {
      expect(envelope.raw.includes(secret), `${name} in envelope`).toBe(false);
    }
  });

  it('event keeps the redacted error', () => {
    const messages = event.exception?.values?.map((exception) => exception.value) ?? [];

    expect(messages).toContain(
      'chat.postMessage failed for [REDACTED]; page [REDACTED]; new key [REDACTED]',
    );
    expect(messages).toContain('vault write of [REDACTED] failed');
  });

  it('event carries incident and Slack ids', () => {
    expect(event.tags?.incident_id).toBe('42');
    expect(event.contexts?.slack).toEqual({ teamId: 'T0001', userId: 'U0001', channelId: 'C0001' });
    expect(event.environment).toBe('test');
    expect(event.release).toBe('bot@1.0.0');
  });

  it('secret-named extras are dropped', () => {
    expect(event.extra?.attempt).toBe(2);
    expect(event.extra).not.toHaveProperty('routingKey');
  });

  it('request keeps no body or credentials', () => {
    const headers = Object.keys(event.request?.headers ?? {}).map((name) => name.toLowerCase());

    expect(event.request?.data).toBeUndefined();
    expect(event.request?.cookies).toBeUndefined();
    expect(headers).not.toContain('authorization');
    expect(headers).not.toContain('cookie');
    expect(headers).not.toContain('x-slack-signature');
  });

  it('breadcrumb keeps no body or query', () => {
    const crumb = event.breadcrumbs?.find((breadcrumb) => breadcrumb.category === 'pagerduty');

    expect(crumb?.message).toBe('enqueue with routing key [REDACTED]');
    expect(crumb?.data).toEqual({ url: 'https://events.pagerduty.com/v2/enqueue' });
  });

  it('logs contain none of the secrets', () => {
    const logs = logLines.join('');
    const fault = logLines.map((line) => JSON.parse(line)).find((entry) => entry.sentryEventId === eventId);

    expect(fault?.msg).toBe('fault captured');
    expect(fault?.incidentId).toBe(42);
    for (const [name, secret] of Object.entries(secrets)) {
      expect(logs.includes(secret), `${name} in logs`).toBe(false);
    }
  });
});

describe('scrubSentryEvent', () => {
  it('drops request body, cookies, headers', () => {
    const scrubbed = scrubSentryEvent({
      request: {
        url: `https://bot.example.com/slack/events?token=${slackToken}`,
        method: 'POST',
        data: { token: slackToken },
        cookies: { sessionid: generatedKey },
        query_string: `token=${slackToken}`,
        headers: {
          Authorization: `Bearer ${slackToken}`,
          'X-Vault-Token': generatedKey,
          'User-Agent': 'Slackbot 1.0',
        },
      },
    });

    expect(scrubbed?.request).toEqual({
      url: 'https://bot.example.com/slack/events',
      method: 'POST',
      headers: { 'User-Agent': 'Slackbot 1.0' },
    });
  });

  it('removes frame variables', () => {
    const scrubbed = scrubSentryEvent({
      exception: {
        values: [
          {
            type: 'Error',
            value: 'boom',
            stacktrace: {
              frames: [{ function: 'rotate', vars: { key: generatedKey }, context_line: `k = "${slackToken}"` }],
            },
          },
        ],
      },
    });
    const frame = scrubbed?.exception?.values?.[0]?.stacktrace?.frames?.[0];

    expect(frame?.vars).toBeUndefined();
    expect(frame?.context_line).toBe('k = "[REDACTED]"');
  });

  it('redacts nested secret fields', () => {
    const scrubbed = scrubSentryEvent({
      contexts: { slack: { userId: 'U1' }, vault: { token: unregisteredRoutingKey } },
      tags: { incident_id: '3', secret: 'x' },
    });

    expect(scrubbed?.contexts?.vault).toEqual({ token: '[REDACTED]' });
    expect(scrubbed?.tags).toEqual({ incident_id: '3' });
  });

  it('breadcrumb headers are dropped', () => {
    const crumb = scrubBreadcrumb({
      category: 'http',
      data: { url: 'https://slack.com/api/chat.postMessage', headers: { authorization: slackToken } },
    });

    expect(crumb?.data).toEqual({ url: 'https://slack.com/api/chat.postMessage' });
  });
});

describe('initSentry without a DSN', () => {
  it('is off and still logs faults', async () => {
    await handle.close(2_000);
    const before = sentry.envelopes.length;

    const off = initSentry({ dsn: '', environment: 'test', logger });
    const eventId = captureError(new Error(`failed with ${slackToken}`), { incidentId: 5 });
    await off.close();

    expect(off.enabled).toBe(false);
    expect(eventId).toBeUndefined();
    expect(sentry.envelopes.length).toBe(before);
    expect(logLines.at(-1)).toContain('"incidentId":5');
    expect(logLines.at(-1)).not.toContain(slackToken);
  });

  it('malformed DSN is rejected by fingerprint', () => {
    const malformed = `https://${randomBytes(16).toString('hex')}@sentry.example.com/not-a-project`;

    let error: unknown;
    try {
      initSentry({ dsn: malformed, environment: 'test', logger });
    } catch (caught) {
      error = caught;
    }

    expect(error).toBeInstanceOf(SentrySetupError);
    expect((error as SentrySetupError).message).toContain('fingerprint');
    expect((error as SentrySetupError).message).not.toContain(malformed);
  });
});
