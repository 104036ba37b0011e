// An HTTP double of the parts of Sentry that runbook-bot uses, on 127.0.0.1:
// project client keys, the organization issue search and an issue's events,
// issue and metric alert rules, and the envelope intake that the SDK posts to.
// It checks bearer tokens and their scopes like Sentry, returns 404 for
// unknown organizations, projects, keys and issues, paginates with Link
// headers, and can be scripted to return 429 (with Retry-After) or 5xx.
import { randomBytes } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export interface SentryServerOptions {
  org: string;
  project: string;
  projectId: number;
  /** Auth tokens and the scopes each one has. */
  tokens: Record<string, string[]>;
  /** Items per page for paginated lists. Sentry's default is 100. */
  pageSize?: number;
}

export interface StoredClientKey {
  id: string;
  name: string;
  public: string;
  secret: string;
  isActive: boolean;
  dateCreated: string;
}

export interface SeededIssue {
  id: string;
  title: string;
  logger?: string;
  errorType?: string;
  message?: string;
  level?: string;
  status?: 'unresolved' | 'resolved';
  /** ISO timestamps of the issue's events. */
  events: string[];
}

export interface CapturedEnvelope {
  projectId: string;
  publicKey: string;
  header: Record<string, unknown>;
  items: Array<{ header: Record<string, unknown>; payload: unknown }>;
  /** The whole envelope as text, after gunzip. */
  raw: string;
}

export interface SentryRequestRecord {
  method: string;
  path: string;
  query: Record<string, string[]>;
  status: number;
}

interface ScriptedFailure {
  status: number;
  retryAfterSeconds?: number;
  remaining: number;
}

type Route = {
  method: string;
  pattern: RegExp;
  scopes: string[];
  handle: (context: RouteContext) => void;
};

type RouteContext = {
  request: IncomingMessage;
  response: ServerResponse;
  url: URL;
  params: string[];
  body: unknown;
};

const NOT_FOUND = { detail: 'The requested resource does not exist' };
const ISSUE_RULE_MATCHES = new Set(['all', 'any', 'none']);
const METRIC_TIME_WINDOWS = new Set([1, 5, 10, 15, 30, 60, 120, 240, 1440]);
const SEARCH_KEYS = new Set(['logger', 'error.type', 'message', 'level', 'is']);

function send(response: ServerResponse, status: number, body?: unknown, headers = {}): void {
  if (body === undefined) {
    response.writeHead(status, headers);
    response.end();
    return;
  }
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  response.end(text);
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

function wildcard(value: string): RegExp {
  const escaped = value.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`, 'i');
}

type SearchTerm = { negated: boolean; key: string | null; value: string };

/** Parses the subset of Sentry's search syntax that the double supports. */
function parseSearch(query: string): SearchTerm[] | string {
  const terms: SearchTerm[] = [];
  const pattern = /(!?)([\w.]+):(?:"([^"]*)"|(\S+))|"([^"]*)"|(\S+)/g;

  for (const match of query.matchAll(pattern)) {
    const [, bang, key, quotedValue, bareValue, quotedText, bareText] = match;
    if (key !== undefined) {
      if (!SEARCH_KEYS.has(key)) return `Invalid search query: unsupported key "${key}"`;
      terms.push({ negated: bang === '!', key, value: quotedValue ?? bareValue ?? '' });
    } else {
      terms.push({ negated: false, key: null, value: quotedText ?? bareText ?? '' });
    }
  }
  return terms;
}

function issueMatches(issue: SeededIssue, terms: SearchTerm[]): boolean {
  return terms.every((term) => {
    let matched: boolean;
    if (term.key === null) {
      const text = `${issue.title} ${issue.message ?? ''}`.toLowerCase();
      matched = text.includes(term.value.toLowerCase());
    } else if (term.key === 'is') {
      matched = (issue.status ?? 'unresolved') === term.value;
    } else if (term.key === 'message') {
      const text = `${issue.message ?? ''} ${issue.title}`.toLowerCase();
      matched = text.includes(term.value.toLowerCase());
    } else {
      const field = { logger: issue.logger, 'error.type': issue.errorType, level: issue.level }[
        term.key
      ];
      matched = field !== undefined && wildcard(term.value).test(field);
    }
    return term.negated ? !matched : matched;
  });
}

/** The Sentry double. Create it with `startSentryServer`. */
export class SentryServer {
  readonly keys: StoredClientKey[] = [];
  readonly issues: SeededIssue[] = [];
  readonly issueRules: Array<Record<string, unknown>> = [];
  readonly metricRules: Array<Record<string, unknown>> = [];
  readonly envelopes: CapturedEnvelope[] = [];
  readonly requests: SentryRequestRecord[] = [];

  private readonly server: http.Server;
  private readonly routes: Route[];
  private failures: ScriptedFailure[] = [];
  private nextRuleId = 1;
  private port = 0;

  constructor(readonly options: SentryServerOptions) {
    this.server = http.createServer((request, response) => void this.handle(request, response));
    this.routes = this.buildRoutes();
  }

  /** The REST base URL, ending in `/api/0/`. */
  get baseUrl(): string {
    return `http://127.0.0.1:${this.port}/api/0/`;
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Adds a client key as if it had been created in the Sentry UI. */
  addKey(name: string, isActive = true): StoredClientKey {
    const publicKey = hex(16);
    const key: StoredClientKey = {
      id: publicKey,
      name,
      public: publicKey,
      secret: hex(16),
      isActive,
      dateCreated: new Date().toISOString(),
    };
    this.keys.push(key);
    return key;
  }

  /** Returns the public DSN of a key, which points at this double's envelope intake. */
  dsnFor(key: StoredClientKey): string {
    return `http://${key.public}@127.0.0.1:${this.port}/${this.options.projectId}`;
  }

  addIssue(issue: SeededIssue): void {
    this.issues.push(issue);
  }

  /** Fails the next `count` REST requests with `status` (and Retry-After for 429). */
  failNext(count: number, status: number, retryAfterSeconds?: number): void {
    this.failures.push({ status, retryAfterSeconds, remaining: count });
  }

  private serializeKey(key: StoredClientKey): Record<string, unknown> {
    const host = `127.0.0.1:${this.port}`;
    const projectId = this.options.projectId;
    return {
      id: key.id,
      name: key.name,
      label: key.name,
      public: key.public,
      secret: key.secret,
      projectId,
      isActive: key.isActive,
      rateLimit: null,
      dsn: {
        secret: `http://${key.public}:${key.secret}@${host}/${projectId}`,
        public: this.dsnFor(key),
        csp: `http://${host}/api/${projectId}/csp-report/?sentry_key=${key.public}`,
        security: `http://${host}/api/${projectId}/security/?sentry_key=${key.public}`,
      },
      browserSdkVersion: '8.x',
      dateCreated: key.dateCreated,
    };
  }

  private serializeIssue(issue: SeededIssue, count: number): Record<string, unknown> {
    const { org, project } = this.options;
    return {
      id: issue.id,
      shortId: `${project.toUpperCase()}-${issue.id}`,
      title: issue.title,
      culprit: issue.logger ?? '',
      level: issue.level ?? 'error',
      logger: issue.logger ?? null,
      status: issue.status ?? 'unresolved',
      count: String(count),
      permalink: `http://127.0.0.1:${this.port}/organizations/${org}/issues/${issue.id}/`,
      project: { id: String(this.options.projectId), slug: project, name: project },
    };
  }

  /** Sends one page of `items` with Sentry-style Link headers. */
  private sendPage(context: RouteContext, items: unknown[]): void {
    const pageSize = this.options.pageSize ?? 100;
    const cursor = context.url.searchParams.get('cursor') ?? '0:0:0';
    const offset = Number(cursor.split(':')[1] ?? 0);
    const page = items.slice(offset, offset + pageSize);
    const hasNext = offset + pageSize < items.length;

    const link = (rel: string, target: number, results: boolean, previous: boolean): string => {
      const url = new URL(context.url);
      const value = `0:${target}:${previous ? 1 : 0}`;
      url.searchParams.set('cursor', value);
      return `<${url}>; rel="${rel}"; results="${results}"; cursor="${value}"`;
    };
    const headers = {
      link: [
        link('previous', Math.max(0, offset - pageSize), offset > 0, true),
        link('next', offset + pageSize, hasNext, false),
      ].join(', '),
    };
    send(context.response, 200, page, headers);
  }

  private eventsInRange(issue: SeededIssue, url: URL): string[] {
    const start = Date.parse(url.searchParams.get('start') ?? '') || Number.NEGATIVE_INFINITY;
    const end = Date.parse(url.searchParams.get('end') ?? '') || Number.POSITIVE_INFINITY;
    return issue.events.filter((timestamp) => {
      const time = Date.parse(timestamp);
      return time >= start && time <= end;
    });
  }

  private buildRoutes(): Route[] {
    const org = '([^/]+)';
    const slug = '([^/]+)';
    const projectRead = ['project:read', 'project:write', 'project:admin'];
    const projectWrite = ['project:write', 'project:admin'];
    const eventRead = ['event:read', 'event:write', 'event:admin'];
    const issueAlertRead = ['alerts:read', 'alerts:write', ...projectRead];
    const issueAlertWrite = ['alerts:write', ...projectWrite];
    const metricAlertRead = ['alerts:read', 'alerts:write', 'org:read', 'org:write', 'org:admin'];
    const metricAlertWrite = ['alerts:write', 'org:write', 'org:admin'];

    return [
      {
        method: 'GET',
        pattern: new RegExp(`^/api/0/projects/${org}/${slug}/$`),
        scopes: projectRead,
        handle: (context) => {
          const { projectId, project } = this.options;
          send(context.response, 200, { id: String(projectId), slug: project, name: project });
        },
      },
      {
        method: 'GET',
        pattern: new RegExp(`^/api/0/projects/${org}/${slug}/keys/$`),
        scopes: projectRead,
        handle: (context) => {
          const status = context.url.searchParams.get('status');
          const keys = this.keys.filter(
            (key) => status === null || (status === 'active') === key.isActive,
          );
          this.sendPage(context, keys.map((key) => this.serializeKey(key)));
        },
      },
      {
        method: 'POST',
        pattern: new RegExp(`^/api/0/projects/${org}/${slug}/keys/$`),
        scopes: projectWrite,
        handle: (context) => {
          const body = (context.body ?? {}) as { name?: unknown };
          if (body.name !== undefined && (typeof body.name !== 'string' || body.name.length > 64)) {
            send(context.response, 400, { name: ['Ensure this field has no more than 64 characters.'] });
            return;
          }
          const key = this.addKey((body.name as string | undefined) ?? 'Default');
          send(context.response, 201, this.serializeKey(key));
        },
      },
      {
        method: 'PUT',
        pattern: new RegExp(`^/api/0/projects/${org}/${slug}/keys/([^/]+)/$`),
        scopes: projectWrite,
        handle: (context) => {
          const key = this.keys.find((candidate) => candidate.id === context.params[2]);
          if (!key) return send(context.response, 404, NOT_FOUND);

          const body = (context.body ?? {}) as { isActive?: unknown; name?: unknown };
          if (body.isActive !== undefined && typeof body.isActive !== 'boolean') {
            return send(context.response, 400, { isActive: ['Must be a valid boolean.'] });
          }
          if (typeof body.isActive === 'boolean') key.isActive = body.isActive;
          if (typeof body.name === 'string') key.name = body.name;
          send(context.response, 200, this.serializeKey(key));
        },
      },
      {
        method: 'GET',
        pattern: new RegExp(`^/api/0/organizations/${org}/issues/$`),
        scopes: eventRead,
        handle: (context) => this.searchIssues(context),
      },
      {
        method: 'GET',
        pattern: new RegExp(`^/api/0/organizations/${org}/issues/([^/]+)/events/$`),
        scopes: eventRead,
        handle: (context) => {
          const issue = this.issues.find((candidate) => candidate.id === context.params[1]);
          if (!issue) return send(context.response, 404, NOT_FOUND);

          const events = this.eventsInRange(issue, context.url)
            .sort((a, b) => Date.parse(b) - Date.parse(a))
            .map((timestamp, index) => ({
              id: `${issue.id}${index.toString(16).padStart(8, '0')}`,
              eventID: `${issue.id}${index.toString(16).padStart(8, '0')}`,
              groupID: issue.id,
              title: issue.title,
              message: issue.message ?? '',
              dateCreated: timestamp,
            }));
          this.sendPage(context, events);
        },
      },
      {
        method: 'GET',
        pattern: new RegExp(`^/api/0/projects/${org}/${slug}/rules/$`),
        scopes: issueAlertRead,
        handle: (context) => send(context.response, 200, this.issueRules),
      },
      {
        method: 'POST',
        pattern: new RegExp(`^/api/0/projects/${org}/${slug}/rules/$`),
        scopes: issueAlertWrite,
        handle: (context) => this.createIssueRule(context),
      },
      {
        method: 'GET',
        pattern: new RegExp(`^/api/0/organizations/${org}/alert-rules/$`),
        scopes: metricAlertRead,
        handle: (context) => send(context.response, 200, this.metricRules),
      },
      {
        method: 'POST',
        pattern: new RegExp(`^/api/0/organizations/${org}/alert-rules/$`),
        scopes: metricAlertWrite,
        handle: (context) => this.createMetricRule(context),
      },
    ];
  }

  private searchIssues(context: RouteContext): void {
    const { url, response } = context;
    const project = url.searchParams.getAll('project');
    if (project.length > 0 && !project.every((id) => id === String(this.options.projectId))) {
      return send(response, 403, { detail: 'You do not have permission to perform this action.' });
    }

    const query = url.searchParams.get('query') ?? 'is:unresolved';
    const terms = parseSearch(query);
    if (typeof terms === 'string') return send(response, 400, { detail: terms });

    const matches = this.issues
      .filter((issue) => issueMatches(issue, terms))
      .map((issue) => ({ issue, inRange: this.eventsInRange(issue, url) }))
      .filter(({ inRange }) => inRange.length > 0)
      .map(({ issue, inRange }) => this.serializeIssue(issue, inRange.length));
    this.sendPage(context, matches);
  }

  private createIssueRule(context: RouteContext): void {
    const body = (context.body ?? {}) as Record<string, unknown>;
    const errors: Record<string, string[]> = {};
    const listOf = (field: string, prefixes: string[], required: boolean): void => {
      const value = body[field];
      if (value === undefined && !required) return;
      const valid =
        Array.isArray(value) &&
        (!required || value.length > 0) &&
        value.every(
          (item) =>
            typeof item === 'object' &&
            item !== null &&
            typeof item.id === 'string' &&
            prefixes.some((prefix) => (item.id as string).startsWith(prefix)),
        );
      if (!valid) errors[field] = [`Ensure each ${field} entry has a known id.`];
    };

    if (typeof body.name !== 'string' || body.name.trim() === '' || body.name.length > 256) {
      errors.name = ['This field is required and must be at most 256 characters.'];
    }
    if (typeof body.actionMatch !== 'string' || !ISSUE_RULE_MATCHES.has(body.actionMatch)) {
      errors.actionMatch = ['Must be one of all, any, none.'];
    }
    if (body.filterMatch !== undefined && !ISSUE_RULE_MATCHES.has(String(body.filterMatch))) {
      errors.filterMatch = ['Must be one of all, any, none.'];
    }
    const frequency = body.frequency;
    if (!Number.isInteger(frequency) || (frequency as number) < 5 || (frequency as number) > 43200) {
      errors.frequency = ['Must be an integer from 5 to 43200.'];
    }
    listOf('conditions', ['sentry.rules.conditions.'], true);
    listOf('filters', ['sentry.rules.filters.'], false);
    listOf('actions', ['sentry.rules.actions.', 'sentry.mail.', 'sentry.integrations.'], true);

    if (Object.keys(errors).length > 0) return send(context.response, 400, errors);

    const rule = {
      ...body,
      id: String(this.nextRuleId++),
      projects: [this.options.project],
      dateCreated: new Date().toISOString(),
    };
    this.issueRules.push(rule);
    send(context.response, 201, rule);
  }

  private createMetricRule(context: RouteContext): void {
    const body = (context.body ?? {}) as Record<string, unknown>;
    const errors: Record<string, string[]> = {};

    if (typeof body.name !== 'string' || body.name.trim() === '') errors.name = ['Required.'];
    if (typeof body.aggregate !== 'string' || body.aggregate === '') {
      errors.aggregate = ['Required.'];
    }
    if (typeof body.query !== 'string') errors.query = ['Required.'];
    if (!METRIC_TIME_WINDOWS.has(body.timeWindow as number)) {
      errors.timeWindow = ['Invalid time window.'];
    }
    const projects = body.projects;
    if (!Array.isArray(projects) || !projects.includes(this.options.project)) {
      errors.projects = [`Must include the project slug ${this.options.project}.`];
    }
    if (body.thresholdType !== 0 && body.thresholdType !== 1) {
      errors.thresholdType = ['Must be 0 (above) or 1 (below).'];
    }
    const triggers = body.triggers;
    const validTriggers =
      Array.isArray(triggers) &&
      triggers.some((trigger) => trigger?.label === 'critical') &&
      triggers.every(
        (trigger) =>
          typeof trigger?.alertThreshold === 'number' && Array.isArray(trigger?.actions),
      );
    if (!validTriggers) {
      errors.triggers = ['Need a critical trigger; each trigger needs alertThreshold and actions.'];
    }

    if (Object.keys(errors).length > 0) return send(context.response, 400, errors);

    const rule = { ...body, id: String(this.nextRuleId++), dateCreated: new Date().toISOString() };
    this.metricRules.push(rule);
    send(context.response, 201, rule);
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', `http://127.0.0.1:${this.port}`);
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);

    const record: SentryRequestRecord = {
      method: request.method ?? '',
      path: url.pathname,
      query: {},
      status: 0,
    };
    for (const key of new Set(url.searchParams.keys())) {
      record.query[key] = url.searchParams.getAll(key);
    }
    this.requests.push(record);

    const originalWriteHead = response.writeHead.bind(response);
    response.writeHead = ((status: number, ...rest: unknown[]) => {
      record.status = status;
      return (originalWriteHead as (...args: unknown[]) => ServerResponse)(status, ...rest);
    }) as typeof response.writeHead;

    if (/^\/api\/\d+\/envelope\/$/.test(url.pathname) && request.method === 'POST') {
      this.receiveEnvelope(request, response, url, raw);
      return;
    }
    this.handleApi(request, response, url, raw);
  }

  private handleApi(request: IncomingMessage, response: ServerResponse, url: URL, raw: Buffer): void {
    const authorization = request.headers.authorization;
    if (!authorization) {
      return send(response, 401, { detail: 'Authentication credentials were not provided.' });
    }
    const token = /^Bearer (.+)$/.exec(authorization)?.[1];
    const scopes = token === undefined ? undefined : this.options.tokens[token];
    if (!scopes) return send(response, 401, { detail: 'Invalid token' });

    const failure = this.failures.find((entry) => entry.remaining > 0);
    if (failure) {
      failure.remaining -= 1;
      const headers =
        failure.retryAfterSeconds === undefined
          ? {}
          : { 'retry-after': String(failure.retryAfterSeconds) };
      const detail =
        failure.status === 429
          ? 'You are attempting to use this endpoint too frequently.'
          : 'Internal Error';
      return send(response, failure.status, { detail }, headers);
    }

    const candidates = this.routes.filter((route) => route.pattern.test(url.pathname));
    const route = candidates.find((candidate) => candidate.method === request.method);
    if (!route) {
      return candidates.length > 0
        ? send(response, 405, { detail: `Method "${request.method}" not allowed.` })
        : send(response, 404, NOT_FOUND);
    }

    const params = route.pattern.exec(url.pathname)?.slice(1) ?? [];
    if (params[0] !== this.options.org) return send(response, 404, NOT_FOUND);
    if (url.pathname.startsWith('/api/0/projects/') && params[1] !== this.options.project) {
      return send(response, 404, NOT_FOUND);
    }
    if (!route.scopes.some((scope) => scopes.includes(scope))) {
      return send(response, 403, { detail: 'You do not have permission to perform this action.' });
    }

    let body: unknown;
    if (raw.length > 0) {
      if (!(request.headers['content-type'] ?? '').startsWith('application/json')) {
        return send(response, 415, { detail: 'Unsupported media type in request.' });
      }
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        return send(response, 400, { detail: 'JSON parse error' });
      }
    }

    route.handle({ request, response, url, params, body });
  }

  private receiveEnvelope(
    request: IncomingMessage,
    response: ServerResponse,
    url: URL,
    raw: Buffer,
  ): void {
    const projectId = /^\/api\/(\d+)\//.exec(url.pathname)?.[1] ?? '';
    const auth = request.headers['x-sentry-auth'];
    const publicKey =
      (typeof auth === 'string' ? /sentry_key=([0-9a-f]+)/.exec(auth)?.[1] : undefined) ??
      url.searchParams.get('sentry_key') ??
      '';
    const key = this.keys.find((candidate) => candidate.public === publicKey);

    if (projectId !== String(this.options.projectId) || !key || !key.isActive) {
      return send(response, 403, { detail: 'client key is unknown or inactive' });
    }

    const body = request.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
    const envelope = parseEnvelope(body);
    this.envelopes.push({ projectId, publicKey, ...envelope, raw: body.toString('utf8') });
    send(response, 200, { id: envelope.header.event_id ?? null });
  }
}

/** Splits a Sentry envelope into its header and items, honouring item `length`. */
function parseEnvelope(body: Buffer): Pick<CapturedEnvelope, 'header' | 'items'> {
  let position = 0;
  const readLine = (): Buffer => {
    const end = body.indexOf(0x0a, position);
    const line = body.subarray(position, end === -1 ? body.length : end);
    position = end === -1 ? body.length : end + 1;
    return line;
  };

  const header = JSON.parse(readLine().toString('utf8')) as Record<string, unknown>;
  const items: CapturedEnvelope['items'] = [];

  while (position < body.length) {
    const headerLine = readLine();
    if (headerLine.length === 0) continue;

    const itemHeader = JSON.parse(headerLine.toString('utf8')) as Record<string, unknown>;
    let payload: Buffer;
    if (typeof itemHeader.length === 'number') {
      payload = body.subarray(position, position + itemHeader.length);
      position += itemHeader.length + 1;
    } else {
      payload = readLine();
    }

    const text = payload.toString('utf8');
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Attachments and other non-JSON items stay as text.
    }
    items.push({ header: itemHeader, payload: parsed });
  }

  return { header, items };
}

export async function startSentryServer(options: SentryServerOptions): Promise<SentryServer> {
  const server = new SentryServer(options);
  await server.listen();
  return server;
}
