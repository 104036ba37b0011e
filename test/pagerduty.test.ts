import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';

import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import {
  sendPagerDutyEvent,
  type PagerDutyEvent,
  type PagerDutyResult,
  type SendPagerDutyEventOptions,
} from '../src/actions/pagerduty.ts';
import { ActionError } from '../src/bot/errors.ts';
import { createLogger, type Logger } from '../src/bot/logger.ts';
import { startPagerDutyServer, type PagerDutyServer } from './helpers/pagerduty-server.ts';
import { makeTestCertificates, type TestCertificates } from './helpers/tls.ts';

const routingKey = randomBytes(16).toString('hex');
const unknownRoutingKey = randomBytes(16).toString('hex');

let certificates: TestCertificates;
let pagerduty: PagerDutyServer;
let logLines: string[];
let logger: Logger;

function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(chunk.toString());
      callback();
    },
  });
  return { logger: createLogger('debug', stream), lines };
}

function trigger(dedupKey = `incident-${randomBytes(4).toString('hex')}`): PagerDutyEvent {
  return {
    action: 'trigger',
    dedupKey,
    summary: 'SECRET_KEY compromised: rotation due in 15 minutes',
    source: 'runbook-bot',
    severity: 'error',
    customDetails: { incident: 42, runbook: 'secret-key' },
    links: [{ href: 'https://example.slack.com/archives/C1/p1', text: 'Incident thread' }],
  };
}

function options(overrides: Partial<SendPagerDutyEventOptions> = {}): SendPagerDutyEventOptions {
  return {
    server: pagerduty.host,
    routingKey,
    event: trigger(),
    timeoutMs: 2_000,
    logger,
    ca: certificates.ca,
    ...overrides,
  };
}

function snapshot(): string[] {
  return process.getActiveResourcesInfo().sort();
}

/** Waits until two snapshots 50 ms apart agree, so closing sockets have finished. */
async function stableResources(): Promise<string[]> {
  let previous = snapshot();
  for (let attempt = 0; attempt < 20; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const current = snapshot();
    if (JSON.stringify(current) === JSON.stringify(previous)) return current;
    previous = current;
  }
  return previous;
}

/** Waits up to a second for the resources to match `expected`, which a leaked 30 s timer prevents. */
async function activeResourcesSettle(expected: string[]): Promise<string[]> {
  let current = snapshot();
  for (let attempt = 0; attempt < 20; attempt += 1) {
    if (JSON.stringify(current) === JSON.stringify(expected)) return current;
    await new Promise((resolve) => setTimeout(resolve, 50));
    current = snapshot();
  }
  return current;
}

beforeAll(async () => {
  certificates = makeTestCertificates();
  pagerduty = await startPagerDutyServer(certificates, [routingKey]);
});

afterAll(async () => {
  await pagerduty.close();
  certificates.cleanup();
});

afterEach(async () => {
  pagerduty.clearFailures();
  await pagerduty.listen();
});

describe('sendPagerDutyEvent', () => {
  beforeAll(() => {
    const captured = capturingLogger();
    logger = captured.logger;
    logLines = captured.lines;
  });

  it('trigger is accepted with dedup key', async () => {
    const event = trigger('incident-accepted');

    const result = await sendPagerDutyEvent(options({ event }));

    expect(result).toEqual({ outcome: 'accepted', dedupKey: 'incident-accepted' });
    expect(pagerduty.events.at(-1)?.body.routing_key).toBe(routingKey);
    expect(pagerduty.events.at(-1)?.body.payload).toEqual({
      summary: event.summary,
      source: 'runbook-bot',
      severity: 'error',
      custom_details: { incident: 42, runbook: 'secret-key' },
    });
  });

  it('resolve closes the triggered alert', async () => {
    await sendPagerDutyEvent(options({ event: trigger('incident-resolve') }));
    expect(pagerduty.openAlerts.has('incident-resolve')).toBe(true);

    const result = await sendPagerDutyEvent(
      options({ event: { action: 'resolve', dedupKey: 'incident-resolve' } }),
    );

    expect(result.outcome).toBe('accepted');
    expect(pagerduty.openAlerts.has('incident-resolve')).toBe(false);
    expect(pagerduty.events.at(-1)?.body.payload).toBeUndefined();
  });

  it('unknown routing key is rejected', async () => {
    const result = await sendPagerDutyEvent(options({ routingKey: unknownRoutingKey }));

    const rejected = result as Extract<PagerDutyResult, { outcome: 'rejected' }>;
    expect(result.outcome).toBe('rejected');
    expect(rejected.status).toBe(400);
    expect(rejected.message).toContain("'routing_key' is invalid");
    expect(JSON.stringify(result)).not.toContain(unknownRoutingKey);
  });

  it('persistent 429 is classified as retry', async () => {
    pagerduty.failNext(4, { kind: 'status', status: 429, retryAfterSeconds: 30 });
    const before = pagerduty.requests.length;

    const result = await sendPagerDutyEvent(options());

    expect(result).toEqual({
      outcome: 'retry',
      status: 429,
      reason: 'rate limited by PagerDuty',
      retryAfterMs: 30_000,
    });
    // pdjs makes three more attempts on a 429 before giving up.
    expect(pagerduty.requests.length - before).toBe(4);
  });

  it('single 429 succeeds on pdjs retry', async () => {
    pagerduty.failNext(1, { kind: 'status', status: 429 });

    const result = await sendPagerDutyEvent(options({ event: trigger('incident-429-once') }));

    expect(result).toEqual({ outcome: 'accepted', dedupKey: 'incident-429-once' });
  });

  it('500 is classified as retry', async () => {
    pagerduty.failNext(1, { kind: 'status', status: 500 });

    const result = await sendPagerDutyEvent(options());

    expect(result).toEqual({ outcome: 'retry', status: 500, reason: 'PagerDuty returned HTTP 500' });
  });

  it('connection refused is classified as retry', async () => {
    await pagerduty.stop();

    const result = await sendPagerDutyEvent(options());

    expect(result).toEqual({ outcome: 'retry', reason: 'could not reach PagerDuty: ECONNREFUSED' });
  });

  it('connection reset is classified as retry', async () => {
    pagerduty.failNext(1, { kind: 'reset' });

    const result = await sendPagerDutyEvent(options());

    expect(result.outcome).toBe('retry');
    expect((result as Extract<PagerDutyResult, { outcome: 'retry' }>).reason).toMatch(
      /^could not reach PagerDuty: /,
    );
  });

  it('unanswered request times out as retry', async () => {
    pagerduty.failNext(1, { kind: 'hang' });

    const result = await sendPagerDutyEvent(options({ timeoutMs: 300 }));

    expect(result).toEqual({ outcome: 'retry', reason: 'PagerDuty timed out after 300 ms' });
  });

  it('untrusted certificate is classified as retry', async () => {
    const result = await sendPagerDutyEvent(options({ ca: undefined }));

    expect(result.outcome).toBe('retry');
    expect((result as Extract<PagerDutyResult, { outcome: 'retry' }>).reason).toMatch(
      /CERT|SIGNATURE|ISSUER/,
    );
  });

  it('restarted double accepts on same port', async () => {
    const port = pagerduty.port;
    await pagerduty.goDownFor(200);
    const refused = await sendPagerDutyEvent(options());
    await new Promise((resolve) => setTimeout(resolve, 400));

    const accepted = await sendPagerDutyEvent(options({ event: trigger('incident-back-up') }));

    expect(refused.outcome).toBe('retry');
    expect(pagerduty.port).toBe(port);
    expect(accepted).toEqual({ outcome: 'accepted', dedupKey: 'incident-back-up' });
  });

  it('timed failure window ends', async () => {
    pagerduty.failFor(300, { kind: 'status', status: 503 });
    const during = await sendPagerDutyEvent(options());
    await new Promise((resolve) => setTimeout(resolve, 400));

    const after = await sendPagerDutyEvent(options({ event: trigger('incident-after-window') }));

    expect(during).toEqual({ outcome: 'retry', status: 503, reason: 'PagerDuty returned HTTP 503' });
    expect(after).toEqual({ outcome: 'accepted', dedupKey: 'incident-after-window' });
  });

  const invalidInputs: Array<[string, Partial<SendPagerDutyEventOptions>, RegExp]> = [
    ['short routing key', { routingKey: 'abc123' }, /32 letters or digits; the configured value has 6/],
    ['missing summary', { event: { ...trigger(), summary: ' ' } }, /needs a summary/],
    ['long summary', { event: { ...trigger(), summary: 'x'.repeat(1025) } }, /1025 characters/],
    ['missing source', { event: { ...trigger(), source: undefined } }, /needs a source/],
    [
      'bad severity',
      { event: { ...trigger(), severity: 'high' as 'error' } },
      /severity "high" is invalid/,
    ],
    ['empty dedup key', { event: { ...trigger(), dedupKey: '' } }, /1 to 255 characters; got 0/],
    ['long dedup key', { event: { ...trigger(), dedupKey: 'k'.repeat(256) } }, /got 256/],
    ['server with scheme', { server: 'https://events.pagerduty.com' }, /without https:\/\//],
    [
      'bad link',
      { event: { ...trigger(), links: [{ href: 'javascript:alert(1)' }] } },
      /not an http or https URL/,
    ],
    [
      'oversized details',
      { event: { ...trigger(), customDetails: { log: 'x'.repeat(600 * 1024) } } },
      /larger than 512 KB/,
    ],
  ];

  for (const [name, overrides, message] of invalidInputs) {
    it(`invalid input rejected: ${name}`, async () => {
      const before = pagerduty.requests.length;

      const error = await sendPagerDutyEvent(options(overrides)).catch((caught: unknown) => caught);

      expect(error).toBeInstanceOf(ActionError);
      expect((error as ActionError).code).toBe('pagerduty_invalid_event');
      expect((error as ActionError).message).toMatch(message);
      expect(pagerduty.requests.length).toBe(before);
    });
  }

  it('routing key never reaches logs', () => {
    const logText = logLines.join('');

    expect(logLines.length).toBeGreaterThan(5);
    expect(logText).not.toContain(routingKey);
    expect(logText).not.toContain(unknownRoutingKey);
  });
});

describe('sendPagerDutyEvent resources', () => {
  const quiet = capturingLogger().logger;

  const cases: Array<[string, () => void | Promise<void>, number]> = [
    ['accepted', () => undefined, 2_000],
    ['500', () => pagerduty.failNext(1, { kind: 'status', status: 500 }), 2_000],
    ['429', () => pagerduty.failNext(4, { kind: 'status', status: 429 }), 400],
    ['refused', () => pagerduty.stop(), 2_000],
    ['timeout', () => pagerduty.failNext(1, { kind: 'hang' }), 200],
  ];

  for (const [name, prepare, timeoutMs] of cases) {
    it(`no handles left after ${name}`, async () => {
      await sendPagerDutyEvent(options({ logger: quiet }));
      const before = await stableResources();
      await prepare();

      await sendPagerDutyEvent(options({ logger: quiet, timeoutMs }));
      await pagerduty.listen();
      const after = await activeResourcesSettle(before);

      expect(after).toEqual(before);
    });
  }
});
