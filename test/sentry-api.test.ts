import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import {
  SENTRY_ALERTS,
  checkAlertRules,
  createMissingAlertRules,
  type AlertRuleTarget,
} from '../src/actions/sentry-alerts.ts';
import { SentryApiClient, type SentryApiOptions } from '../src/actions/sentry-api.ts';
import { ActionError } from '../src/bot/errors.ts';
import { fingerprint } from '../src/bot/fingerprint.ts';
import { startSentryServer, type SentryServer } from './helpers/sentry-server.ts';

const adminToken = `sntrys_${randomBytes(24).toString('hex')}`;
const readOnlyToken = `sntrys_${randomBytes(24).toString('hex')}`;
const unknownToken = `sntrys_${randomBytes(24).toString('hex')}`;

let sentry: SentryServer;

function client(overrides: Partial<SentryApiOptions> = {}): SentryApiClient {
  return new SentryApiClient({
    baseUrl: sentry.baseUrl,
    token: adminToken,
    org: 'acme',
    project: 'web',
    timeoutMs: 2_000,
    ...overrides,
  });
}

async function failure(promise: Promise<unknown>): Promise<ActionError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof ActionError)) throw new Error(`expected an ActionError, got ${String(error)}`);
  return error;
}

beforeAll(async () => {
  sentry = await startSentryServer({
    org: 'acme',
    project: 'web',
    projectId: 4242,
    tokens: {
      [adminToken]: ['project:admin', 'event:read', 'alerts:write', 'org:read'],
      [readOnlyToken]: ['project:read'],
    },
    pageSize: 2,
  });
});

afterAll(async () => {
  await sentry.close();
});

describe('SentryApiClient client keys', () => {
  beforeEach(() => {
    sentry.keys.length = 0;
  });

  it('listClientKeys returns public DSNs', async () => {
    const key = sentry.addKey('Default');

    const keys = await client().listClientKeys();

    expect(keys).toEqual([
      {
        id: key.id,
        name: 'Default',
        isActive: true,
        dsn: sentry.dsnFor(key),
        dsnFingerprint: fingerprint(sentry.dsnFor(key)),
        dateCreated: key.dateCreated,
      },
    ]);
    expect(JSON.stringify(keys)).not.toContain(key.secret);
  });

  it('listClientKeys follows pagination links', async () => {
    for (let index = 0; index < 5; index += 1) sentry.addKey(`key ${index}`);
    const before = sentry.requests.length;

    const keys = await client().listClientKeys();

    expect(keys.map((key) => key.name)).toEqual(['key 0', 'key 1', 'key 2', 'key 3', 'key 4']);
    expect(sentry.requests.length - before).toBe(3);
  });

  it('createClientKey adds an active key', async () => {
    const created = await client().createClientKey('runbook-bot rotation');

    expect(created.isActive).toBe(true);
    expect(created.name).toBe('runbook-bot rotation');
    expect(sentry.keys.map((key) => key.id)).toEqual([created.id]);
  });

  it('createClientKey rejects long names', async () => {
    const before = sentry.requests.length;

    const error = await failure(client().createClientKey('n'.repeat(65)));

    expect(error.code).toBe('sentry_invalid_input');
    expect(error.message).toContain('1 to 64 characters; got 65');
    expect(sentry.requests.length).toBe(before);
  });

  it('deactivateClientKey marks key inactive', async () => {
    const key = sentry.addKey('leaked');

    const result = await client().deactivateClientKey(key.id);

    expect(result.isActive).toBe(false);
    expect(sentry.keys[0]?.isActive).toBe(false);
  });

  it('unknown key 404 hides key id', async () => {
    const missing = randomBytes(16).toString('hex');

    const error = await failure(client().deactivateClientKey(missing));

    expect(error.code).toBe('sentry_not_found');
    expect(error.message).toContain(`client key ${fingerprint(missing)}`);
    expect(error.message).not.toContain(missing);
  });
});

describe('SentryApiClient errors', () => {
  it('invalid token maps to unauthorized', async () => {
    const error = await failure(client({ token: unknownToken }).listClientKeys());

    expect(error.code).toBe('sentry_unauthorized');
    expect(error.message).toContain('Invalid token');
    expect(error.message).not.toContain(unknownToken);
  });

  it('missing scope maps to forbidden', async () => {
    const error = await failure(client({ token: readOnlyToken }).createClientKey('new'));

    expect(error.code).toBe('sentry_forbidden');
    expect(error.message).toContain('project:write, project:admin');
    expect(error.message).not.toContain(readOnlyToken);
  });

  it('unknown project maps to not found', async () => {
    const error = await failure(client({ project: 'mobile' }).listClientKeys());

    expect(error.code).toBe('sentry_not_found');
    expect(error.message).toContain('project slug "mobile"');
  });

  it('429 carries Retry-After', async () => {
    sentry.failNext(1, 429, 7);

    const error = await failure(client().listClientKeys());

    expect(error.code).toBe('sentry_rate_limited');
    expect(error.details.retryAfterMs).toBe(7_000);
    expect(error.message).toContain('try again in 7 s');
  });

  it('500 maps to unavailable', async () => {
    sentry.failNext(1, 500);

    const error = await failure(client().listClientKeys());

    expect(error.code).toBe('sentry_unavailable');
    expect(error.details.status).toBe(500);
  });

  it('refused connection maps to unreachable', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const error = await failure(
      client({ baseUrl: `http://127.0.0.1:${port}/api/0/` }).listClientKeys(),
    );

    expect(error.code).toBe('sentry_unreachable');
    expect(error.details.code).toBe('ECONNREFUSED');
  });

  it('silent server maps to timeout', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;

    const error = await failure(
      client({ baseUrl: `http://127.0.0.1:${port}/api/0/`, timeoutMs: 200 }).listClientKeys(),
    );
    silent.closeAllConnections();
    await new Promise<void>((resolve) => silent.close(() => resolve()));

    expect(error.code).toBe('sentry_timeout');
    expect(error.message).toContain('timed out after 200 ms');
  });

  const badOptions: Array<[string, Partial<SentryApiOptions>, RegExp]> = [
    ['base URL without api path', { baseUrl: 'https://sentry.io/' }, /must end in \/api\/0\//],
    ['base URL with ftp', { baseUrl: 'ftp://sentry.io/api/0/' }, /must use https/],
    ['organization with slash', { org: 'acme/web' }, /organization slug "acme\/web" is invalid/],
    ['empty token', { token: ' ' }, /set SENTRY_AUTH_TOKEN/],
  ];

  for (const [name, overrides, message] of badOptions) {
    it(`constructor rejects ${name}`, () => {
      expect(() => client(overrides)).toThrow(message);
    });
  }
});

describe('SentryApiClient findSuspiciousEvents', () => {
  const since = Date.parse('2026-03-01T10:00:00Z');
  const until = Date.parse('2026-03-03T10:00:00Z');
  const at = (minutes: number): string => new Date(since + minutes * 60_000).toISOString();

  beforeAll(() => {
    sentry.addIssue({
      id: '101',
      title: 'Session data corrupted',
      message: 'Session data corrupted',
      logger: 'django.security.SuspiciousSession',
      level: 'warning',
      events: [at(-60), at(10), at(20), at(30), at(3_000)],
    });
    sentry.addIssue({
      id: '102',
      title: 'BadSignature: Signature "abc" does not match',
      errorType: 'BadSignature',
      events: [at(45)],
    });
    sentry.addIssue({
      id: '103',
      title: 'Invalid HTTP_HOST header',
      logger: 'django.security.DisallowedHost',
      events: [at(5), at(6)],
      status: 'resolved',
    });
    sentry.addIssue({
      id: '104',
      title: 'Failed login for user admin',
      message: 'Failed login for user admin',
      logger: 'accounts',
      level: 'warning',
      events: Array.from({ length: 25 }, (_, index) => at(600 + index * 0.15)),
    });
    sentry.addIssue({
      id: '105',
      title: 'OperationalError: database is locked',
      logger: 'django.request',
      errorType: 'OperationalError',
      events: [at(15)],
    });
  });

  it('counts each signal in window', async () => {
    const report = await client({ maxPages: 50 }).findSuspiciousEvents({ since, until });
    const counts = Object.fromEntries(report.signals.map((signal) => [signal.id, signal.count]));

    expect(counts).toEqual({
      session_corrupted: 3,
      bad_signature: 1,
      suspicious_operation: 2,
      failed_login_burst: 25,
    });
    expect(report.total).toBe(31);
    expect(report.since).toBe('2026-03-01T10:00:00.000Z');
  });

  it('returns permalinks per signal', async () => {
    const report = await client({ maxPages: 50 }).findSuspiciousEvents({ since, until });
    const session = report.signals.find((signal) => signal.id === 'session_corrupted');

    expect(session?.permalinks).toEqual([`${new URL(sentry.baseUrl).origin}/organizations/acme/issues/101/`]);
    expect(session?.issues[0]?.shortId).toBe('WEB-101');
  });

  it('detects failed login burst', async () => {
    const report = await client({ maxPages: 50 }).findSuspiciousEvents({ since, until });
    const logins = report.signals.find((signal) => signal.id === 'failed_login_burst');

    expect(logins?.burst).toEqual({
      windowMinutes: 5,
      threshold: 20,
      maxInWindow: 25,
      windowStart: at(600),
      detected: true,
    });
  });

  it('few failed logins are no burst', async () => {
    const report = await client({ maxPages: 50 }).findSuspiciousEvents({
      since: Date.parse(at(600)) + 2 * 60_000,
      until,
    });
    const logins = report.signals.find((signal) => signal.id === 'failed_login_burst');

    expect(logins?.count).toBe(11);
    expect(logins?.burst?.detected).toBe(false);
  });

  it('page limit marks result truncated', async () => {
    const report = await client({ maxPages: 2 }).findSuspiciousEvents({ since, until });
    const logins = report.signals.find((signal) => signal.id === 'failed_login_burst');

    expect(logins?.truncated).toBe(true);
    expect(logins?.count).toBe(4);
  });

  it('empty window is rejected', async () => {
    const error = await failure(client().findSuspiciousEvents({ since: until, until: since }));

    expect(error.code).toBe('sentry_invalid_input');
    expect(error.message).toContain('is not before until');
  });

  it('custom query replaces default', async () => {
    const report = await client({
      maxPages: 50,
      signalQueries: { failed_login_burst: 'logger:accounts' },
    }).findSuspiciousEvents({ since, until });
    const logins = report.signals.find((signal) => signal.id === 'failed_login_burst');

    expect(logins?.query).toBe('logger:accounts');
    expect(logins?.count).toBe(25);
  });
});

describe('SentryApiClient alert rules', () => {
  it('created rules are listed', async () => {
    const api = client();
    await api.createAlertRule({
      kind: 'issue',
      body: {
        name: 'Database errors',
        actionMatch: 'any',
        frequency: 5,
        conditions: [{ id: 'sentry.rules.conditions.first_seen_event.FirstSeenEventCondition' }],
        actions: [{ id: 'sentry.rules.actions.notify_event.NotifyEventAction' }],
      },
    });
    await api.createAlertRule({
      kind: 'metric',
      body: {
        name: 'CSP violations',
        dataset: 'events',
        aggregate: 'count()',
        query: 'event.type:csp',
        timeWindow: 60,
        thresholdType: 0,
        triggers: [{ label: 'critical', alertThreshold: 50, actions: [] }],
        projects: ['web'],
      },
    });
    sentry.metricRules.push({ id: '999', name: 'Other project rule', projects: ['mobile'] });

    const rules = await api.listAlertRules();

    expect(rules.map((rule) => `${rule.kind}:${rule.name}`)).toEqual([
      'issue:Database errors',
      'metric:CSP violations',
    ]);
  });

  it('invalid rule maps to bad request', async () => {
    const error = await failure(
      client().createAlertRule({
        kind: 'issue',
        body: {
          name: 'Too often',
          actionMatch: 'any',
          frequency: 1,
          conditions: [{ id: 'sentry.rules.conditions.first_seen_event.FirstSeenEventCondition' }],
          actions: [{ id: 'sentry.rules.actions.notify_event.NotifyEventAction' }],
        },
      }),
    );

    expect(error.code).toBe('sentry_bad_request');
    expect(error.message).toContain('5 to 43200');
  });
});

describe('Sentry alert rules of the guide', () => {
  const target: AlertRuleTarget = {
    environment: 'production',
    issueActions: [
      {
        id: 'sentry.rules.actions.notify_event_service.NotifyEventServiceAction',
        service: 'runbook-bot',
      },
    ],
    metricActions: [],
  };

  beforeEach(() => {
    sentry.issueRules.length = 0;
    sentry.metricRules.length = 0;
  });

  it('all four missing at first', async () => {
    const check = await checkAlertRules(client());

    expect(check.missing.map((alert) => alert.id)).toEqual([
      'high_error_rate',
      'csp_violations',
      'failed_login_burst',
      'database_error',
    ]);
    expect(check.present).toEqual([]);
  });

  it('createMissingAlertRules creates all four', async () => {
    const result = await createMissingAlertRules(client(), target);
    const check = await checkAlertRules(client());

    expect(result.created.map((rule) => rule.name)).toEqual(
      SENTRY_ALERTS.map((alert) => alert.ruleName),
    );
    expect(check.missing).toEqual([]);
    expect(sentry.metricRules.map((rule) => rule.aggregate)).toEqual(['failure_rate()', 'count()']);
  });

  it('existing rules are not created twice', async () => {
    await createMissingAlertRules(client(), target);
    const before = sentry.issueRules.length + sentry.metricRules.length;

    const again = await createMissingAlertRules(client(), target);

    expect(again.created).toEqual([]);
    expect(again.alreadyPresent).toHaveLength(4);
    expect(sentry.issueRules.length + sentry.metricRules.length).toBe(before);
  });

  it('only the missing rule is created', async () => {
    await createMissingAlertRules(client(), target);
    sentry.issueRules.splice(
      sentry.issueRules.findIndex((rule) => rule.name === 'runbook-bot: DatabaseError'),
      1,
    );

    const result = await createMissingAlertRules(client(), target);

    expect(result.created.map((rule) => rule.name)).toEqual(['runbook-bot: DatabaseError']);
  });

  it('database rule filters each DB-API error', async () => {
    await createMissingAlertRules(client(), target);
    const rule = sentry.issueRules.find((entry) => entry.name === 'runbook-bot: DatabaseError');
    const types = (rule?.filters as Array<{ value: string }>).map((filter) => filter.value);

    expect(types).toContain('DatabaseError');
    expect(types).toContain('OperationalError');
    expect(rule?.filterMatch).toBe('any');
  });

  it('missing issue actions create nothing', async () => {
    const error = await failure(createMissingAlertRules(client(), { ...target, issueActions: [] }));

    expect(error.code).toBe('sentry_invalid_input');
    expect(sentry.issueRules.length + sentry.metricRules.length).toBe(0);
  });
});
