// The four Sentry alerts that the operations guide requires, as data: what
// each one watches, how its webhook is recognised, which runbook it leads to,
// and the rule body that creates it. Rules are matched by name, so a rule
// created here and the webhooks it sends carry the same `ruleName`.
//
// Condition, filter and action ids come from Sentry's rule registry
// (sentry.rules.conditions.*, sentry.rules.filters.*); metric rule fields come
// from the public "Create a Metric Alert Rule" API.
// NOTE: failure_rate() is a ratio from 0 to 1 in Sentry's Discover, so the
// error-rate threshold is 0.1; that a metric alert compares it in the same
// unit was not checked against a live Sentry.
import { ActionError } from '../bot/errors.ts';
import type {
  IssueAlertRuleBody,
  MetricAlertRuleBody,
  SentryAlertRule,
  SentryAlertRuleBody,
  SentryApiClient,
} from './sentry-api.ts';

export type SentryAlertId =
  | 'high_error_rate'
  | 'csp_violations'
  | 'failed_login_burst'
  | 'database_error';

/**
 * The bot's response to a fired alert. `suggest` posts the alert with a
 * button that declares an incident of `runbook`, and `notify` only posts it.
 * Neither declares an incident by itself, because none of these alerts proves
 * a leaked key.
 */
export interface SentryAlertResponse {
  mode: 'suggest' | 'notify';
  runbook: string | null;
  reason: string;
}

interface IssueRuleTemplate {
  kind: 'issue';
  actionMatch: IssueAlertRuleBody['actionMatch'];
  filterMatch: IssueAlertRuleBody['filterMatch'];
  frequency: number;
  conditions: Array<Record<string, unknown>>;
  filters: Array<Record<string, unknown>>;
}

interface MetricRuleTemplate {
  kind: 'metric';
  dataset: string;
  queryType?: number;
  eventTypes?: string[];
  aggregate: string;
  query: string;
  timeWindow: number;
  alertThreshold: number;
}

export interface SentryAlertDefinition {
  id: SentryAlertId;
  title: string;
  /** The rule's name in Sentry, by which its webhooks are recognised. */
  ruleName: string;
  /** The Sentry-Hook-Resource header of the alert's webhooks. */
  webhookResource: 'event_alert' | 'metric_alert';
  response: SentryAlertResponse;
  rule: IssueRuleTemplate | MetricRuleTemplate;
}

/** Notification settings for new rules. Sentry needs at least one action on an issue rule. */
export interface AlertRuleTarget {
  environment?: string | null;
  /** Issue rule actions, for example the bot's internal integration. */
  issueActions: Array<Record<string, unknown>>;
  /** Actions of the critical trigger of metric rules, possibly none. */
  metricActions: Array<Record<string, unknown>>;
}

const EVENT_FREQUENCY = 'sentry.rules.conditions.event_frequency.EventFrequencyCondition';
const EVENT_ATTRIBUTE = 'sentry.rules.filters.event_attribute.EventAttributeFilter';

// Django raises DatabaseError and its DB-API subclasses. Sentry records the
// class name, so each subclass needs its own filter.
const DATABASE_ERROR_TYPES = [
  'DatabaseError',
  'OperationalError',
  'IntegrityError',
  'ProgrammingError',
  'DataError',
  'InterfaceError',
  'InternalError',
  'NotSupportedError',
];

export const SENTRY_ALERTS: readonly SentryAlertDefinition[] = [
  {
    id: 'high_error_rate',
    title: 'Error rate above 10% in 5 minutes',
    ruleName: 'runbook-bot: error rate above 10% in 5 min',
    webhookResource: 'metric_alert',
    response: {
      mode: 'notify',
      runbook: null,
      reason: 'An error spike is an outage signal, and no security runbook covers outages.',
    },
    rule: {
      kind: 'metric',
      dataset: 'transactions',
      queryType: 1,
      aggregate: 'failure_rate()',
      query: '',
      timeWindow: 5,
      alertThreshold: 0.1,
    },
  },
  {
    id: 'csp_violations',
    title: 'More than 50 CSP violations in 1 hour',
    ruleName: 'runbook-bot: more than 50 CSP violations in 1 h',
    webhookResource: 'metric_alert',
    response: {
      mode: 'suggest',
      runbook: 'security-audit',
      reason: 'Many CSP reports can mean injected scripts; the audit checks CSP and recent errors.',
    },
    rule: {
      kind: 'metric',
      dataset: 'events',
      queryType: 0,
      aggregate: 'count()',
      query: 'event.type:csp',
      timeWindow: 60,
      alertThreshold: 50,
    },
  },
  {
    id: 'failed_login_burst',
    title: 'More than 20 failed logins in 5 minutes',
    ruleName: 'runbook-bot: more than 20 failed logins in 5 min',
    webhookResource: 'event_alert',
    response: {
      mode: 'suggest',
      runbook: 'security-audit',
      reason:
        'A burst of failed logins is a brute-force attempt, not proof of a leaked SECRET_KEY; audit access first.',
    },
    rule: {
      kind: 'issue',
      actionMatch: 'all',
      filterMatch: 'all',
      frequency: 30,
      conditions: [{ id: EVENT_FREQUENCY, interval: '5m', value: 20, comparisonType: 'count' }],
      filters: [{ id: EVENT_ATTRIBUTE, attribute: 'message', match: 'co', value: 'Failed login' }],
    },
  },
  {
    id: 'database_error',
    title: 'Any DatabaseError',
    ruleName: 'runbook-bot: DatabaseError',
    webhookResource: 'event_alert',
    response: {
      mode: 'suggest',
      runbook: 'backup',
      reason: 'Take a fresh copy of db.sqlite3 before anyone repairs it; restoring stays a decision.',
    },
    rule: {
      kind: 'issue',
      actionMatch: 'all',
      filterMatch: 'any',
      frequency: 5,
      // More than 0 events in 1 minute passes for every event, and Sentry's
      // own "every event" condition is disabled in its registry.
      conditions: [{ id: EVENT_FREQUENCY, interval: '1m', value: 0, comparisonType: 'count' }],
      filters: DATABASE_ERROR_TYPES.map((type) => ({
        id: EVENT_ATTRIBUTE,
        attribute: 'exception.type',
        match: 'eq',
        value: type,
      })),
    },
  },
];

function normalise(name: string): string {
  return name.trim().toLowerCase();
}

/** Finds the alert whose rule sent a webhook, by resource and rule name. */
export function findAlertByRuleName(
  resource: string,
  ruleName: string,
): SentryAlertDefinition | undefined {
  return SENTRY_ALERTS.find(
    (alert) =>
      alert.webhookResource === resource && normalise(alert.ruleName) === normalise(ruleName),
  );
}

/** Builds the body that creates `alert` in `project`. */
export function buildAlertRuleBody(
  alert: SentryAlertDefinition,
  project: string,
  target: AlertRuleTarget,
): SentryAlertRuleBody {
  const environment = target.environment ?? null;

  if (alert.rule.kind === 'issue') {
    const body: IssueAlertRuleBody = {
      name: alert.ruleName,
      actionMatch: alert.rule.actionMatch,
      filterMatch: alert.rule.filterMatch,
      frequency: alert.rule.frequency,
      conditions: alert.rule.conditions.map((condition) => ({ ...condition })),
      filters: alert.rule.filters.map((filter) => ({ ...filter })),
      actions: target.issueActions.map((action) => ({ ...action })),
      environment,
    };
    return { kind: 'issue', body };
  }

  const { rule } = alert;
  const body: MetricAlertRuleBody = {
    name: alert.ruleName,
    dataset: rule.dataset,
    ...(rule.queryType === undefined ? {} : { queryType: rule.queryType }),
    ...(rule.eventTypes === undefined ? {} : { eventTypes: rule.eventTypes }),
    aggregate: rule.aggregate,
    query: rule.query,
    timeWindow: rule.timeWindow,
    thresholdType: 0,
    resolveThreshold: null,
    triggers: [
      {
        label: 'critical',
        alertThreshold: rule.alertThreshold,
        actions: target.metricActions.map((action) => ({ ...action })),
      },
    ],
    projects: [project],
    environment,
  };
  return { kind: 'metric', body };
}

export interface AlertRuleCheck {
  present: Array<{ alert: SentryAlertDefinition; rule: SentryAlertRule }>;
  missing: SentryAlertDefinition[];
}

/** Reports which of the four alert rules exist in Sentry, matched by kind and name. */
export async function checkAlertRules(
  client: Pick<SentryApiClient, 'listAlertRules'>,
): Promise<AlertRuleCheck> {
  const rules = await client.listAlertRules();
  const check: AlertRuleCheck = { present: [], missing: [] };

  for (const alert of SENTRY_ALERTS) {
    const rule = rules.find(
      (candidate) =>
        candidate.kind === alert.rule.kind && normalise(candidate.name) === normalise(alert.ruleName),
    );
    if (rule) check.present.push({ alert, rule });
    else check.missing.push(alert);
  }
  return check;
}

/** Creates the alert rules that `checkAlertRules` reports missing, in definition order. */
export async function createMissingAlertRules(
  client: Pick<SentryApiClient, 'listAlertRules' | 'createAlertRule' | 'project'>,
  target: AlertRuleTarget,
): Promise<{ created: SentryAlertRule[]; alreadyPresent: SentryAlertRule[] }> {
  const check = await checkAlertRules(client);
  const needsIssueActions = check.missing.some((alert) => alert.rule.kind === 'issue');
  if (needsIssueActions && target.issueActions.length === 0) {
    throw new ActionError(
      'sentry_invalid_input',
      'Sentry issue alert rules need at least one action; pass the action of the integration that sends webhooks to the bot. No rule was created.',
    );
  }

  const created: SentryAlertRule[] = [];
  for (const alert of check.missing) {
    created.push(await client.createAlertRule(buildAlertRuleBody(alert, client.project, target)));
  }
  return { created, alreadyPresent: check.present.map((entry) => entry.rule) };
}
