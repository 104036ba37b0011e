// A small client for the Sentry REST API (https://sentry.io/api/0/ or a
// self-hosted base URL): project client keys, the forged-session signals that
// the audit step and the 48-hour watch look for, and alert rules. Failures
// become ActionError codes whose messages never contain the auth token, a key
// id or a DSN.
import { performance } from 'node:perf_hooks';

import { systemClock, type Clock } from '../bot/clock.ts';
import { ActionError } from '../bot/errors.ts';
import { fingerprint } from '../bot/fingerprint.ts';
import type { Logger } from '../bot/logger.ts';
import { registerSecret, scrubText } from '../bot/redact.ts';

export interface SentryApiOptions {
  /** REST base URL ending in /api/0/, for example https://sentry.io/api/0/. */
  baseUrl: string;
  /** Auth token, sent as a bearer token and nowhere else. */
  token: string;
  /** Organization slug. */
  org: string;
  /** Project slug. */
  project: string;
  /** Deadline for each HTTP request. */
  timeoutMs: number;
  logger?: Logger;
  /** Replaces the default search query of a signal, for apps that log differently. */
  signalQueries?: Partial<Record<SuspiciousSignalId, string>>;
  /** Clock for reading a Retry-After date; the system clock by default. */
  clock?: Clock;
  /** Maximum pages read from one paginated list. A longer list is reported as truncated. */
  maxPages?: number;
}

/**
 * A project client key. Sentry uses the key's public key as its id, and the
 * public key is the credential inside the DSN, so `id` and `dsn` are secrets:
 * show `dsnFingerprint` instead.
 */
export interface SentryClientKey {
  id: string;
  name: string;
  isActive: boolean;
  /** The public DSN (`dsn.public`), never the legacy form with the secret. */
  dsn: string;
  dsnFingerprint: string;
  dateCreated: string | null;
}

export type SuspiciousSignalId =
  | 'session_corrupted'
  | 'bad_signature'
  | 'suspicious_operation'
  | 'failed_login_burst';

export interface SuspiciousSignalDefinition {
  id: SuspiciousSignalId;
  title: string;
  /** Sentry issue search query. */
  query: string;
  /** For bursts: more than `threshold` events within `windowMinutes` counts as a burst. */
  burst?: { windowMinutes: number; threshold: number };
}

export interface SuspiciousIssue {
  id: string;
  shortId: string;
  title: string;
  /** Events of this issue between `since` and `until`. */
  count: number;
  permalink: string;
}

export interface SuspiciousSignalResult {
  id: SuspiciousSignalId;
  title: string;
  query: string;
  count: number;
  issues: SuspiciousIssue[];
  permalinks: string[];
  /** True when a list had more pages than `maxPages`, so `count` is a lower bound. */
  truncated: boolean;
  burst?: {
    windowMinutes: number;
    threshold: number;
    maxInWindow: number;
    windowStart: string | null;
    detected: boolean;
  };
}

export interface SuspiciousEventReport {
  since: string;
  until: string;
  total: number;
  signals: SuspiciousSignalResult[];
}

export interface IssueAlertRuleBody {
  name: string;
  actionMatch: 'all' | 'any' | 'none';
  filterMatch?: 'all' | 'any' | 'none';
  /** Minutes between notifications for one issue, 5 to 43200. */
  frequency: number;
  conditions: Array<Record<string, unknown>>;
  filters?: Array<Record<string, unknown>>;
  actions: Array<Record<string, unknown>>;
  environment?: string | null;
}

export interface MetricAlertTrigger {
  label: 'critical' | 'warning';
  alertThreshold: number;
  actions: Array<Record<string, unknown>>;
}

export interface MetricAlertRuleBody {
  name: string;
  dataset: string;
  queryType?: number;
  eventTypes?: string[];
  aggregate: string;
  query: string;
  /** Minutes. */
  timeWindow: number;
  /** 0 alerts above the threshold, 1 below it. */
  thresholdType: 0 | 1;
  resolveThreshold?: number | null;
  triggers: MetricAlertTrigger[];
  projects: string[];
  environment?: string | null;
}

export type SentryAlertRuleBody =
  | { kind: 'issue'; body: IssueAlertRuleBody }
  | { kind: 'metric'; body: MetricAlertRuleBody };

export interface SentryAlertRule {
  kind: 'issue' | 'metric';
  id: string;
  name: string;
}

// Django logs an invalid session cookie as WARNING "Session data corrupted" on
// the logger django.security.SuspiciousSession, and every other
// SuspiciousOperation on django.security.<ExceptionClass>. sentry-python's
// logging integration turns only ERROR and above into events by default, so
// the Django app must set event_level=logging.WARNING for the first signal to
// reach Sentry. Django logs no failed logins by itself; the default query
// expects the app to log "Failed login" from the user_login_failed signal.
export const SUSPICIOUS_SIGNALS: readonly SuspiciousSignalDefinition[] = [
  {
    id: 'session_corrupted',
    title: 'Session data corrupted (forged or stale session cookies)',
    query: 'logger:django.security.SuspiciousSession message:"Session data corrupted"',
  },
  {
    id: 'bad_signature',
    title: 'BadSignature raised by django.core.signing',
    query: 'error.type:BadSignature',
  },
  {
    id: 'suspicious_operation',
    title: 'Other SuspiciousOperation reports',
    query: 'logger:django.security.* !logger:django.security.SuspiciousSession',
  },
  {
    id: 'failed_login_burst',
    title: 'Failed logins',
    query: 'message:"Failed login"',
    burst: { windowMinutes: 5, threshold: 20 },
  },
];

const PROJECT_READ = ['project:read', 'project:write', 'project:admin'];
const PROJECT_WRITE = ['project:write', 'project:admin'];
const EVENT_READ = ['event:read', 'event:write', 'event:admin'];
const ISSUE_ALERT_READ = ['alerts:read', 'alerts:write', ...PROJECT_READ];
const ISSUE_ALERT_WRITE = ['alerts:write', ...PROJECT_WRITE];
const METRIC_ALERT_READ = ['alerts:read', 'alerts:write', 'org:read', 'org:write', 'org:admin'];
const METRIC_ALERT_WRITE = ['alerts:write', 'org:write', 'org:admin'];
const MAX_KEY_NAME_LENGTH = 64;

interface RequestSpec {
  method: 'GET' | 'POST' | 'PUT';
  /** Path below the base URL, or an absolute URL on the same origin (pagination). */
  path: string;
  /** Path with placeholders instead of ids, for logs. */
  endpoint: string;
  query?: Record<string, string | string[]>;
  body?: unknown;
  /** Description of the call as a gerund phrase for messages ("listing client keys"). */
  doing: string;
  scopes: string[];
  /** Added to the 404 message when something other than the slugs may be missing. */
  notFoundHint?: string;
}

interface ApiResponse {
  data: unknown;
  headers: Headers;
}

function detailOf(data: unknown): string {
  if (typeof data === 'string') return data;
  if (typeof data !== 'object' || data === null) return '';

  const detail = (data as { detail?: unknown }).detail;
  if (typeof detail === 'string') return detail;
  return JSON.stringify(data);
}

function shortDetail(data: unknown): string {
  const text = scrubText(detailOf(data)).trim();
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (!value) return undefined;

  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);

  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Returns the `next` URL of a Sentry Link header when it marks more results. */
function nextPageUrl(link: string | null): string | undefined {
  if (!link) return undefined;

  for (const part of link.split(/,\s*(?=<)/)) {
    const match = /^<([^>]+)>(.*)$/.exec(part.trim());
    if (!match) continue;

    const [, url, parameters] = match;
    if (/rel="next"/.test(parameters) && /results="true"/.test(parameters)) return url;
  }
  return undefined;
}

function toIso(value: number | Date, name: string): string {
  const time = value instanceof Date ? value.getTime() : value;
  if (!Number.isFinite(time)) {
    throw new ActionError('sentry_invalid_input', `${name} must be a valid time; got ${String(value)}.`);
  }
  return new Date(time).toISOString();
}

/** Largest number of timestamps inside any window of `windowMs`, and where it starts. */
function densestWindow(timestamps: number[], windowMs: number): { count: number; start: number | null } {
  const sorted = [...timestamps].sort((a, b) => a - b);
  let best = { count: 0, start: null as number | null };
  let first = 0;

  for (let last = 0; last < sorted.length; last += 1) {
    while (sorted[last] - sorted[first] >= windowMs) first += 1;

    const count = last - first + 1;
    if (count > best.count) best = { count, start: sorted[first] };
  }
  return best;
}

export class SentryApiClient {
  private readonly base: URL;
  private projectIdPromise: Promise<string> | undefined;

  constructor(private readonly options: SentryApiOptions) {
    let base: URL;
    try {
      base = new URL(options.baseUrl);
    } catch {
      throw new ActionError(
        'sentry_invalid_input',
        `Sentry base URL ${JSON.stringify(options.baseUrl)} is not a URL; use one like https://sentry.io/api/0/.`,
      );
    }
    if (base.protocol !== 'https:' && base.protocol !== 'http:') {
      throw new ActionError(
        'sentry_invalid_input',
        `Sentry base URL must use https (or http for a local server); got ${base.protocol}.`,
      );
    }
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    if (!base.pathname.endsWith('/api/0/')) {
      throw new ActionError(
        'sentry_invalid_input',
        `Sentry base URL must end in /api/0/; got path ${base.pathname}.`,
      );
    }
    for (const [name, value] of [['organization', options.org], ['project', options.project]]) {
      if (!/^[A-Za-z0-9_-]+$/.test(value)) {
        throw new ActionError(
          'sentry_invalid_input',
          `Sentry ${name} slug ${JSON.stringify(value)} is invalid; use the slug from the Sentry URL.`,
        );
      }
    }
    if (options.token.trim() === '') {
      throw new ActionError('sentry_invalid_input', 'Sentry auth token is empty; set SENTRY_AUTH_TOKEN.');
    }

    registerSecret(options.token);
    this.base = base;
  }

  get org(): string {
    return this.options.org;
  }

  get project(): string {
    return this.options.project;
  }

  private get projectPath(): string {
    return `projects/${this.options.org}/${this.options.project}/`;
  }

  /** Lists every client key of the project, active and inactive. */
  async listClientKeys(): Promise<SentryClientKey[]> {
    const { items } = await this.listAll({
      method: 'GET',
      path: `${this.projectPath}keys/`,
      endpoint: 'projects/:org/:project/keys/',
      doing: `listing the client keys of project ${this.options.project}`,
      scopes: PROJECT_READ,
    });
    return items.map((item) => this.toClientKey(item));
  }

  /** Creates a client key. Sentry generates its public key server-side. */
  async createClientKey(name: string): Promise<SentryClientKey> {
    if (name.trim() === '' || name.length > MAX_KEY_NAME_LENGTH) {
      throw new ActionError(
        'sentry_invalid_input',
        `Sentry client key name must be 1 to ${MAX_KEY_NAME_LENGTH} characters; got ${name.length}.`,
      );
    }

    const { data } = await this.request({
      method: 'POST',
      path: `${this.projectPath}keys/`,
      endpoint: 'projects/:org/:project/keys/',
      body: { name },
      doing: `creating a client key in project ${this.options.project}`,
      scopes: PROJECT_WRITE,
    });
    return this.toClientKey(data);
  }

  /** Deactivates a client key, so Sentry stops accepting events sent with its DSN. */
  async deactivateClientKey(id: string): Promise<SentryClientKey> {
    const label = `client key ${fingerprint(id)}`;
    if (!/^[A-Za-z0-9]+$/.test(id)) {
      throw new ActionError('sentry_invalid_input', `Sentry ${label} has an invalid id.`);
    }

    const { data } = await this.request({
      method: 'PUT',
      path: `${this.projectPath}keys/${id}/`,
      endpoint: 'projects/:org/:project/keys/:key/',
      body: { isActive: false },
      doing: `deactivating ${label}`,
      scopes: PROJECT_WRITE,
      notFoundHint: `, and whether ${label} still exists`,
    });
    return this.toClientKey(data);
  }

  /**
   * Counts the forged-session signals between `since` and `until`, per
   * signal, with the issues and their permalinks. Counts come from listing
   * each issue's events in the window, so they do not depend on how Sentry
   * scopes an issue's own `count`.
   */
  async findSuspiciousEvents(range: {
    since: number | Date;
    until: number | Date;
  }): Promise<SuspiciousEventReport> {
    const since = toIso(range.since, 'since');
    const until = toIso(range.until, 'until');
    if (Date.parse(since) >= Date.parse(until)) {
      throw new ActionError(
        'sentry_invalid_input',
        `The search window is empty: since ${since} is not before until ${until}.`,
      );
    }

    const projectId = await this.projectId();
    const signals: SuspiciousSignalResult[] = [];
    for (const definition of SUSPICIOUS_SIGNALS) {
      signals.push(await this.countSignal(definition, projectId, since, until));
    }

    const total = signals.reduce((sum, signal) => sum + signal.count, 0);
    this.options.logger?.info(
      { since, until, total, counts: Object.fromEntries(signals.map((s) => [s.id, s.count])) },
      'sentry signals counted',
    );
    return { since, until, total, signals };
  }

  /** Lists the project's issue alert rules and the metric alert rules that cover it. */
  async listAlertRules(): Promise<SentryAlertRule[]> {
    const issueRules = await this.listAll({
      method: 'GET',
      path: `${this.projectPath}rules/`,
      endpoint: 'projects/:org/:project/rules/',
      doing: `listing the issue alert rules of project ${this.options.project}`,
      scopes: ISSUE_ALERT_READ,
    });
    const metricRules = await this.listAll({
      method: 'GET',
      path: `organizations/${this.options.org}/alert-rules/`,
      endpoint: 'organizations/:org/alert-rules/',
      doing: `listing the metric alert rules of organization ${this.options.org}`,
      scopes: METRIC_ALERT_READ,
    });

    const rules: SentryAlertRule[] = [];
    for (const item of issueRules.items) rules.push(this.toAlertRule('issue', item));
    for (const item of metricRules.items) {
      const projects = (item as { projects?: unknown }).projects;
      if (Array.isArray(projects) && projects.includes(this.options.project)) {
        rules.push(this.toAlertRule('metric', item));
      }
    }
    return rules;
  }

  /** Creates an issue alert rule on the project or a metric alert rule in the organization. */
  async createAlertRule(rule: SentryAlertRuleBody): Promise<SentryAlertRule> {
    const spec: RequestSpec =
      rule.kind === 'issue'
        ? {
            method: 'POST',
            path: `${this.projectPath}rules/`,
            endpoint: 'projects/:org/:project/rules/',
            body: rule.body,
            doing: `creating the issue alert rule "${rule.body.name}"`,
            scopes: ISSUE_ALERT_WRITE,
          }
        : {
            method: 'POST',
            path: `organizations/${this.options.org}/alert-rules/`,
            endpoint: 'organizations/:org/alert-rules/',
            body: rule.body,
            doing: `creating the metric alert rule "${rule.body.name}"`,
            scopes: METRIC_ALERT_WRITE,
          };

    const { data } = await this.request(spec);
    return this.toAlertRule(rule.kind, data);
  }

  private async countSignal(
    definition: SuspiciousSignalDefinition,
    projectId: string,
    since: string,
    until: string,
  ): Promise<SuspiciousSignalResult> {
    const query = this.options.signalQueries?.[definition.id] ?? definition.query;
    const found = await this.listAll({
      method: 'GET',
      path: `organizations/${this.options.org}/issues/`,
      endpoint: 'organizations/:org/issues/',
      query: { project: projectId, query, start: since, end: until, limit: '100' },
      doing: `searching issues for "${definition.title}"`,
      scopes: EVENT_READ,
    });

    let truncated = found.truncated;
    const issues: SuspiciousIssue[] = [];
    const timestamps: number[] = [];
    for (const item of found.items) {
      const issue = item as { id?: unknown; shortId?: unknown; title?: unknown; permalink?: unknown };
      const id = String(issue.id ?? '');
      const events = await this.listAll({
        method: 'GET',
        path: `organizations/${this.options.org}/issues/${encodeURIComponent(id)}/events/`,
        endpoint: 'organizations/:org/issues/:issue/events/',
        query: { start: since, end: until },
        doing: `listing the events of issue ${id}`,
        scopes: EVENT_READ,
        notFoundHint: `; issue ${id} may have been deleted or merged`,
      });
      truncated ||= events.truncated;

      for (const event of events.items) {
        const time = Date.parse(String((event as { dateCreated?: unknown }).dateCreated ?? ''));
        if (!Number.isNaN(time)) timestamps.push(time);
      }
      issues.push({
        id,
        shortId: String(issue.shortId ?? id),
        title: scrubText(String(issue.title ?? '')),
        count: events.items.length,
        permalink: String(issue.permalink ?? ''),
      });
    }

    const result: SuspiciousSignalResult = {
      id: definition.id,
      title: definition.title,
      query,
      count: issues.reduce((sum, issue) => sum + issue.count, 0),
      issues,
      permalinks: issues.map((issue) => issue.permalink).filter(Boolean),
      truncated,
    };

    if (definition.burst) {
      const { windowMinutes, threshold } = definition.burst;
      const densest = densestWindow(timestamps, windowMinutes * 60_000);
      result.burst = {
        windowMinutes,
        threshold,
        maxInWindow: densest.count,
        windowStart: densest.start === null ? null : new Date(densest.start).toISOString(),
        detected: densest.count > threshold,
      };
    }
    return result;
  }

  private projectId(): Promise<string> {
    this.projectIdPromise ??= this.request({
      method: 'GET',
      path: this.projectPath,
      endpoint: 'projects/:org/:project/',
      doing: `reading project ${this.options.project}`,
      scopes: PROJECT_READ,
    }).then(({ data }) => {
      const id = (data as { id?: unknown }).id;
      if (typeof id !== 'string' && typeof id !== 'number') {
        throw new ActionError('sentry_invalid_response', 'Sentry returned a project without an id.');
      }
      return String(id);
    });

    this.projectIdPromise.catch(() => {
      this.projectIdPromise = undefined;
    });
    return this.projectIdPromise;
  }

  private toClientKey(data: unknown): SentryClientKey {
    const key = (data ?? {}) as {
      id?: unknown;
      name?: unknown;
      isActive?: unknown;
      dsn?: { public?: unknown };
      dateCreated?: unknown;
    };
    const id = typeof key.id === 'string' ? key.id : '';
    const dsn = typeof key.dsn?.public === 'string' ? key.dsn.public : '';
    if (id === '' || dsn === '') {
      throw new ActionError(
        'sentry_invalid_response',
        'Sentry returned a client key without an id or a public DSN.',
      );
    }

    registerSecret(id);
    registerSecret(dsn);
    return {
      id,
      name: typeof key.name === 'string' ? key.name : '',
      isActive: key.isActive === true,
      dsn,
      dsnFingerprint: fingerprint(dsn),
      dateCreated: typeof key.dateCreated === 'string' ? key.dateCreated : null,
    };
  }

  private toAlertRule(kind: 'issue' | 'metric', data: unknown): SentryAlertRule {
    const rule = (data ?? {}) as { id?: unknown; name?: unknown };
    return { kind, id: String(rule.id ?? ''), name: String(rule.name ?? '') };
  }

  /** Reads every page of a list, following Link headers on the same origin only. */
  private async listAll(spec: RequestSpec): Promise<{ items: unknown[]; truncated: boolean }> {
    const maxPages = this.options.maxPages ?? 10;
    const items: unknown[] = [];
    let current: RequestSpec | undefined = spec;
    let pages = 0;

    while (current && pages < maxPages) {
      const response: ApiResponse = await this.request(current);
      pages += 1;

      if (!Array.isArray(response.data)) {
        throw new ActionError(
          'sentry_invalid_response',
          `Sentry did not return a list while ${spec.doing}.`,
        );
      }
      items.push(...response.data);

      const next = nextPageUrl(response.headers.get('link'));
      current =
        next && new URL(next).origin === this.base.origin
          ? { ...spec, path: next, query: undefined }
          : undefined;
    }

    if (current) {
      this.options.logger?.warn({ endpoint: spec.endpoint, pages }, 'sentry list truncated');
    }
    return { items, truncated: current !== undefined };
  }

  private buildUrl(spec: RequestSpec): URL {
    const url = new URL(spec.path, this.base);
    for (const [name, value] of Object.entries(spec.query ?? {})) {
      for (const item of Array.isArray(value) ? value : [value]) url.searchParams.append(name, item);
    }
    return url;
  }

  private async request(spec: RequestSpec): Promise<ApiResponse> {
    const url = this.buildUrl(spec);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.options.timeoutMs);
    const started = performance.now();

    const headers: Record<string, string> = {
      authorization: `Bearer ${this.options.token}`,
      accept: 'application/json',
    };
    if (spec.body !== undefined) headers['content-type'] = 'application/json';

    let response: Response;
    let text: string;
    try {
      response = await fetch(url, {
        method: spec.method,
        headers,
        body: spec.body === undefined ? undefined : JSON.stringify(spec.body),
        signal: controller.signal,
        redirect: 'error',
      });
      text = await response.text();
    } catch (error) {
      throw this.networkError(error, controller.signal.aborted, spec);
    } finally {
      clearTimeout(timer);
    }

    this.options.logger?.debug(
      {
        method: spec.method,
        endpoint: spec.endpoint,
        status: response.status,
        durationMs: Math.round(performance.now() - started),
      },
      'sentry request',
    );

    let data: unknown;
    if (text !== '') {
      try {
        data = JSON.parse(text);
      } catch {
        if (response.ok) {
          throw new ActionError(
            'sentry_invalid_response',
            `Sentry returned a body that is not JSON while ${spec.doing}.`,
          );
        }
        data = undefined;
      }
    }

    if (!response.ok) throw this.statusError(response, data, spec);
    return { data, headers: response.headers };
  }

  private networkError(error: unknown, timedOut: boolean, spec: RequestSpec): ActionError {
    if (timedOut) {
      return new ActionError(
        'sentry_timeout',
        `Sentry timed out after ${this.options.timeoutMs} ms while ${spec.doing}.`,
      );
    }

    const cause = (error as { cause?: { code?: unknown } })?.cause;
    const code = typeof cause?.code === 'string' ? cause.code : 'network error';
    return new ActionError(
      'sentry_unreachable',
      `Could not reach Sentry at ${this.base.origin} while ${spec.doing}: ${code}.`,
      { code },
    );
  }

  private statusError(response: Response, data: unknown, spec: RequestSpec): ActionError {
    const { status } = response;
    const detail = shortDetail(data);
    const suffix = detail ? `: ${detail}` : '';

    switch (status) {
      case 400:
        return new ActionError('sentry_bad_request', `Sentry rejected ${spec.doing} (400)${suffix}.`, {
          status,
        });
      case 401:
        return new ActionError(
          'sentry_unauthorized',
          `Sentry did not accept the auth token while ${spec.doing} (401${suffix}). Check SENTRY_AUTH_TOKEN: it may be wrong, expired or revoked.`,
          { status },
        );
      case 403:
        return new ActionError(
          'sentry_forbidden',
          `The Sentry auth token lacks permission for ${spec.doing} (403). Give it one of these scopes: ${spec.scopes.join(', ')}.`,
          { status, scopes: spec.scopes },
        );
      case 404:
        return new ActionError(
          'sentry_not_found',
          `Sentry found nothing while ${spec.doing} (404). Check the organization slug "${this.options.org}" and the project slug "${this.options.project}"${spec.notFoundHint ?? ''}.`,
          { status },
        );
      case 429: {
        const now = (this.options.clock ?? systemClock).now();
        const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), now);
        const wait = retryAfterMs === undefined ? 'later' : `in ${Math.ceil(retryAfterMs / 1000)} s`;
        return new ActionError(
          'sentry_rate_limited',
          `Sentry rate-limited ${spec.doing} (429); try again ${wait}.`,
          { status, retryAfterMs },
        );
      }
      default:
        if (status >= 500) {
          return new ActionError(
            'sentry_unavailable',
            `Sentry returned HTTP ${status} while ${spec.doing}; try again later.`,
            { status },
          );
        }
        return new ActionError(
          'sentry_unexpected_status',
          `Sentry returned HTTP ${status} while ${spec.doing}${suffix}.`,
          { status },
        );
    }
  }
}
