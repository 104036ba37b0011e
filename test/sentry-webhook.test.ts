import { createHmac, randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { SENTRY_ALERTS, type SentryAlertDefinition } from '../src/actions/sentry-alerts.ts';
import { classifySentryWebhook, verifySentrySignature } from '../src/actions/sentry-webhook.ts';
import { ActionError } from '../src/bot/errors.ts';

const clientSecret = randomBytes(32).toString('hex');

function sign(raw: Buffer, secret = clientSecret): string {
  return createHmac('sha256', secret).update(raw).digest('hex');
}

function issueAlertBody(ruleName: string, title = 'OperationalError: database is locked') {
  return {
    action: 'triggered',
    actor: { id: 'sentry', name: 'Sentry', type: 'application' },
    data: {
      event: {
        event_id: 'e4874d664c3540c1a32eab185f12c5ab',
        issue_id: '1117540176',
        issue_url: 'https://sentry.io/api/0/issues/1117540176/',
        level: 'error',
        title,
        web_url: 'https://sentry.io/organizations/acme/issues/1117540176/events/e4874d66/',
        request: { cookies: [['sessionid', 'abc']], data: { password: 'hunter2' } },
      },
      triggered_rule: ruleName,
      issue_alert: { title: ruleName, settings: [] },
    },
    installation: { uuid: 'a8e5d37a-696c-4c54-adb5-b3f28d64c7de' },
  };
}

function metricAlertBody(ruleName: string, action = 'critical') {
  return {
    action,
    actor: { id: 'sentry', name: 'Sentry', type: 'application' },
    data: {
      description_text: '62 events in the last 60 minutes\nFilter: event.type:csp',
      description_title: `Critical: ${ruleName}`,
      metric_alert: {
        alert_rule: { id: '7', name: ruleName, aggregate: 'count()', time_window: 60, triggers: [] },
        id: '4',
        status: 2,
      },
      web_url: 'https://sentry.io/organizations/acme/alerts/1/',
    },
    installation: { uuid: 'a8e5d37a-696c-4c54-adb5-b3f28d64c7de' },
  };
}

function bodyFor(alert: SentryAlertDefinition) {
  return alert.webhookResource === 'event_alert'
    ? issueAlertBody(alert.ruleName)
    : metricAlertBody(alert.ruleName);
}

describe('verifySentrySignature', () => {
  const raw = Buffer.from('{"action": "triggered",  "data": {"event": {}}}');

  it('good signature is accepted', () => {
    expect(verifySentrySignature(raw, sign(raw), clientSecret)).toBe(true);
  });

  it('signature of reserialised body fails', () => {
    const reserialised = Buffer.from(JSON.stringify(JSON.parse(raw.toString())));

    expect(verifySentrySignature(raw, sign(reserialised), clientSecret)).toBe(false);
  });

  it('changed body fails', () => {
    const changed = Buffer.from(raw.toString().replace('triggered', 'resolved'));

    expect(verifySentrySignature(changed, sign(raw), clientSecret)).toBe(false);
  });

  it('wrong secret fails', () => {
    expect(verifySentrySignature(raw, sign(raw, 'other secret'), clientSecret)).toBe(false);
  });

  it('missing signature fails', () => {
    expect(verifySentrySignature(raw, undefined, clientSecret)).toBe(false);
  });

  const malformed: Array<[string, string]> = [
    ['empty', ''],
    ['too short', sign(raw).slice(0, 63)],
    ['too long', `${sign(raw)}00`],
    ['not hex', `${sign(raw).slice(0, 63)}z`],
    ['prefixed', `sha256=${sign(raw)}`],
  ];
  for (const [name, header] of malformed) {
    it(`malformed signature fails: ${name}`, () => {
      expect(verifySentrySignature(raw, header, clientSecret)).toBe(false);
    });
  }

  it('empty client secret fails', () => {
    expect(verifySentrySignature(raw, sign(raw, ''), '')).toBe(false);
  });
});

describe('classifySentryWebhook', () => {
  for (const alert of SENTRY_ALERTS) {
    it(`recognises alert ${alert.id}`, () => {
      const summary = classifySentryWebhook(
        { 'Sentry-Hook-Resource': alert.webhookResource },
        bodyFor(alert),
      );

      expect(summary.alertId).toBe(alert.id);
      expect(summary.ruleName).toBe(alert.ruleName);
    });
  }

  it('unknown rule has no alert id', () => {
    const summary = classifySentryWebhook(
      { 'sentry-hook-resource': 'event_alert' },
      issueAlertBody('Send a notification for new issues'),
    );

    expect(summary.alertId).toBeNull();
    expect(summary.ruleName).toBe('Send a notification for new issues');
  });

  it('rule name under wrong resource is unknown', () => {
    const metricAlert = SENTRY_ALERTS.find((alert) => alert.webhookResource === 'metric_alert')!;

    const summary = classifySentryWebhook(
      { 'sentry-hook-resource': 'event_alert' },
      issueAlertBody(metricAlert.ruleName),
    );

    expect(summary.alertId).toBeNull();
  });

  it('issue alert fields are extracted', () => {
    const summary = classifySentryWebhook(
      { 'sentry-hook-resource': 'event_alert' },
      issueAlertBody('runbook-bot: DatabaseError'),
    );

    expect(summary).toEqual({
      resource: 'event_alert',
      action: 'triggered',
      alertId: 'database_error',
      ruleName: 'runbook-bot: DatabaseError',
      title: 'OperationalError: database is locked',
      level: 'error',
      webUrl: 'https://sentry.io/organizations/acme/issues/1117540176/events/e4874d66/',
      summary: 'runbook-bot: DatabaseError: OperationalError: database is locked',
    });
  });

  it('metric alert fields are extracted', () => {
    const summary = classifySentryWebhook(
      { 'sentry-hook-resource': 'metric_alert' },
      metricAlertBody('runbook-bot: more than 50 CSP violations in 1 h', 'resolved'),
    );

    expect(summary.level).toBe('resolved');
    expect(summary.title).toBe('Critical: runbook-bot: more than 50 CSP violations in 1 h');
    expect(summary.summary).toBe('62 events in the last 60 minutes\nFilter: event.type:csp');
    expect(summary.webUrl).toBe('https://sentry.io/organizations/acme/alerts/1/');
  });

  it('other resources are summarised', () => {
    const summary = classifySentryWebhook(
      { 'sentry-hook-resource': 'issue' },
      { action: 'created', data: { issue: { title: 'KeyError: user', level: 'error' } } },
    );

    expect(summary).toMatchObject({ resource: 'issue', action: 'created', alertId: null });
    expect(summary.title).toBe('KeyError: user');
  });

  it('tokens in titles are scrubbed', () => {
    const token = `xoxb-${randomBytes(8).toString('hex')}`;

    const summary = classifySentryWebhook(
      { 'sentry-hook-resource': 'event_alert' },
      issueAlertBody('runbook-bot: DatabaseError', `Error: auth failed for ${token}`),
    );

    expect(JSON.stringify(summary)).not.toContain(token);
  });

  it('keeps no raw body fields', () => {
    const summary = classifySentryWebhook(
      { 'sentry-hook-resource': 'event_alert' },
      issueAlertBody('runbook-bot: DatabaseError'),
    );

    expect(JSON.stringify(summary)).not.toContain('hunter2');
    expect(JSON.stringify(summary)).not.toContain('sessionid');
  });

  it('javascript link becomes null', () => {
    const body = issueAlertBody('runbook-bot: DatabaseError');
    body.data.event.web_url = 'javascript:alert(1)';

    const summary = classifySentryWebhook({ 'sentry-hook-resource': 'event_alert' }, body);

    expect(summary.webUrl).toBeNull();
  });

  const invalid: Array<[string, Record<string, string>, unknown, RegExp]> = [
    ['missing resource header', {}, issueAlertBody('x'), /no Sentry-Hook-Resource header/],
    ['odd resource header', { 'sentry-hook-resource': 'Event Alert' }, {}, /an invalid/],
    ['array body', { 'sentry-hook-resource': 'event_alert' }, [], /not a JSON object/],
    ['body without data', { 'sentry-hook-resource': 'event_alert' }, { action: 'x' }, /no "data"/],
  ];
  for (const [name, headers, body, message] of invalid) {
    it(`invalid webhook rejected: ${name}`, () => {
      let error: unknown;
      try {
        classifySentryWebhook(headers, body);
      } catch (caught) {
        error = caught;
      }

      expect(error).toBeInstanceOf(ActionError);
      expect((error as ActionError).code).toBe('sentry_webhook_invalid');
      expect((error as ActionError).message).toMatch(message);
    });
  }
});
