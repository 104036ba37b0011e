// An HTTPS double of the PagerDuty Events API v2 (`POST /v2/enqueue`) on
// 127.0.0.1. It validates events the way the Events API documents them and
// responds with the same status codes and body shapes. It records accepted
// events in order, and it can be scripted to fail: refuse connections, reset
// them, hang, or return 429 or 5xx for a number of requests or for a while.
import { randomBytes } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

import type { TestCertificates } from './tls.ts';

export type PagerDutyFailure =
  | { kind: 'status'; status: 429 | 500 | 502 | 503; retryAfterSeconds?: number }
  | { kind: 'reset' }
  | { kind: 'hang' };

export interface AcceptedPagerDutyEvent {
  receivedAt: number;
  action: 'trigger' | 'acknowledge' | 'resolve';
  dedupKey: string;
  body: Record<string, unknown>;
}

export interface PagerDutyRequestRecord {
  method: string;
  path: string;
  status: number | 'reset' | 'hang';
}

interface ScriptedFailure {
  failure: PagerDutyFailure;
  remaining: number;
  until: number;
}

const SEVERITIES = new Set(['critical', 'error', 'warning', 'info']);
const ACTIONS = new Set(['trigger', 'acknowledge', 'resolve']);
const TOP_LEVEL_FIELDS = new Set([
  'routing_key',
  'event_action',
  'dedup_key',
  'payload',
  'images',
  'links',
  'client',
  'client_url',
]);
const PAYLOAD_FIELDS = new Set([
  'summary',
  'source',
  'severity',
  'timestamp',
  'component',
  'group',
  'class',
  'custom_details',
]);
const MAX_BODY_BYTES = 512 * 1024;

/** Checks an event like the Events API does and returns the problems found. */
function validateEvent(body: unknown, routingKeys: Set<string>): string[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return ['Event must be a JSON object'];
  }

  const event = body as Record<string, unknown>;
  const errors: string[] = [];

  // The real API ignores unknown fields. The double rejects them, so that a
  // misspelt field (dedupKey for dedup_key) fails the test instead of passing.
  for (const field of Object.keys(event)) {
    if (!TOP_LEVEL_FIELDS.has(field)) errors.push(`'${field}' is not an event field`);
  }

  const routingKey = event.routing_key;
  if (typeof routingKey !== 'string' || routingKey === '') {
    errors.push("'routing_key' is missing or blank");
  } else if (routingKey.length !== 32 || !routingKeys.has(routingKey)) {
    errors.push("'routing_key' is invalid");
  }

  const action = event.event_action;
  if (typeof action !== 'string' || !ACTIONS.has(action)) {
    errors.push("'event_action' must be one of trigger, acknowledge, resolve");
  }

  const dedupKey = event.dedup_key;
  if (dedupKey !== undefined) {
    if (typeof dedupKey !== 'string' || dedupKey.length === 0 || dedupKey.length > 255) {
      errors.push("'dedup_key' must be a string of 1 to 255 characters");
    }
  } else if (action === 'acknowledge' || action === 'resolve') {
    errors.push("'dedup_key' is required to acknowledge or resolve");
  }

  if (action === 'trigger') errors.push(...validatePayload(event.payload));

  if (event.links !== undefined) {
    const links = event.links;
    const valid =
      Array.isArray(links) &&
      links.every((link) => typeof link === 'object' && link && typeof link.href === 'string');
    if (!valid) errors.push("'links' must be an array of objects with an 'href'");
  }

  return errors;
}

function validatePayload(payload: unknown): string[] {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    return ["'payload' is missing or not an object"];
  }

  const fields = payload as Record<string, unknown>;
  const errors: string[] = [];

  for (const field of Object.keys(fields)) {
    if (!PAYLOAD_FIELDS.has(field)) errors.push(`'payload.${field}' is not a payload field`);
  }

  const summary = fields.summary;
  if (typeof summary !== 'string' || summary.trim() === '') {
    errors.push("'payload.summary' is missing or blank");
  } else if (summary.length > 1024) {
    errors.push("'payload.summary' is longer than 1024 characters");
  }

  if (typeof fields.source !== 'string' || fields.source.trim() === '') {
    errors.push("'payload.source' is missing or blank");
  }

  if (typeof fields.severity !== 'string' || !SEVERITIES.has(fields.severity)) {
    errors.push("'payload.severity' must be one of critical, error, warning, info");
  }

  const details = fields.custom_details;
  if (details !== undefined && (typeof details !== 'object' || details === null)) {
    errors.push("'payload.custom_details' must be an object");
  }

  return errors;
}

function sendJson(response: ServerResponse, status: number, body: unknown, headers = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  response.end(text);
}

/** The PagerDuty Events API double. Create it with `startPagerDutyServer`. */
export class PagerDutyServer {
  readonly events: AcceptedPagerDutyEvent[] = [];
  readonly requests: PagerDutyRequestRecord[] = [];
  /** Dedup keys of alerts that are triggered and not yet resolved. */
  readonly openAlerts = new Set<string>();

  private server: https.Server;
  private readonly sockets = new Set<Socket>();
  private readonly hangingResponses = new Set<ServerResponse>();
  private failures: ScriptedFailure[] = [];
  private listeningPort = 0;
  private readonly routingKeys: Set<string>;

  constructor(
    private readonly certificates: TestCertificates,
    routingKeys: string[],
  ) {
    this.routingKeys = new Set(routingKeys);
    this.server = this.createServer();
  }

  get port(): number {
    return this.listeningPort;
  }

  /** The `server` option for the PagerDuty client: host and port, no scheme. */
  get host(): string {
    return `127.0.0.1:${this.listeningPort}`;
  }

  get isListening(): boolean {
    return this.server.listening;
  }

  /** Starts listening: on a free port the first time, then on the same port. */
  async listen(): Promise<void> {
    if (this.server.listening) return;

    if (this.listeningPort !== 0) this.server = this.createServer();

    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.listeningPort, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.listeningPort = (this.server.address() as AddressInfo).port;
  }

  /** Stops listening and drops open connections, so new requests are refused. */
  async stop(): Promise<void> {
    for (const response of this.hangingResponses) response.destroy();
    this.hangingResponses.clear();

    if (!this.server.listening) return;

    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** Refuses connections for `durationMs`, then listens again on the same port. */
  async goDownFor(durationMs: number): Promise<void> {
    await this.stop();
    setTimeout(() => void this.listen(), durationMs).unref();
  }

  /** Fails the next `count` requests with `failure`. */
  failNext(count: number, failure: PagerDutyFailure): void {
    this.failures.push({ failure, remaining: count, until: Number.POSITIVE_INFINITY });
  }

  /** Fails every request with `failure` for the next `durationMs`. */
  failFor(durationMs: number, failure: PagerDutyFailure): void {
    this.failures.push({
      failure,
      remaining: Number.POSITIVE_INFINITY,
      until: Date.now() + durationMs,
    });
  }

  clearFailures(): void {
    this.failures = [];
  }

  async close(): Promise<void> {
    this.clearFailures();
    await this.stop();
  }

  private createServer(): https.Server {
    const server = https.createServer(
      { key: this.certificates.key, cert: this.certificates.cert },
      (request, response) => void this.handle(request, response),
    );
    server.on('secureConnection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
    return server;
  }

  private nextFailure(): PagerDutyFailure | undefined {
    const now = Date.now();
    this.failures = this.failures.filter((entry) => entry.remaining > 0 && entry.until > now);

    const entry = this.failures[0];
    if (!entry) return undefined;

    entry.remaining -= 1;
    return entry.failure;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const path = new URL(request.url ?? '/', 'https://127.0.0.1').pathname;
    const record: PagerDutyRequestRecord = { method: request.method ?? '', path, status: 0 };
    this.requests.push(record);

    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      size += (chunk as Buffer).length;
      if (size <= MAX_BODY_BYTES + 1) chunks.push(chunk as Buffer);
    }

    const failure = this.nextFailure();
    if (failure?.kind === 'reset') {
      record.status = 'reset';
      request.socket.destroy();
      return;
    }
    if (failure?.kind === 'hang') {
      record.status = 'hang';
      this.hangingResponses.add(response);
      return;
    }
    if (failure?.kind === 'status') {
      record.status = failure.status;
      this.sendFailure(response, failure);
      return;
    }

    record.status = this.respond(request, response, path, Buffer.concat(chunks), size);
  }

  private sendFailure(
    response: ServerResponse,
    failure: Extract<PagerDutyFailure, { kind: 'status' }>,
  ): void {
    if (failure.status === 429) {
      const headers =
        failure.retryAfterSeconds === undefined
          ? {}
          : { 'retry-after': String(failure.retryAfterSeconds) };
      sendJson(
        response,
        429,
        { status: 'throttle event', message: 'Requests for this service are arriving too quickly' },
        headers,
      );
      return;
    }

    sendJson(response, failure.status, { status: 'error', message: 'Internal server error' });
  }

  private respond(
    request: IncomingMessage,
    response: ServerResponse,
    path: string,
    raw: Buffer,
    size: number,
  ): number {
    if (path !== '/v2/enqueue') {
      sendJson(response, 404, { status: 'not found', message: `No route for ${path}` });
      return 404;
    }
    if (request.method !== 'POST') {
      sendJson(response, 405, { status: 'method not allowed', message: 'Use POST' });
      return 405;
    }

    const invalid = (errors: string[]): number => {
      sendJson(response, 400, { status: 'invalid event', message: 'Event object is invalid', errors });
      return 400;
    };

    if (!(request.headers['content-type'] ?? '').startsWith('application/json')) {
      return invalid(['Content-Type must be application/json']);
    }
    if (size > MAX_BODY_BYTES) return invalid(['Event is larger than 512 KB']);

    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      return invalid(['Event is not valid JSON']);
    }

    const errors = validateEvent(body, this.routingKeys);
    if (errors.length > 0) return invalid(errors);

    const event = body as Record<string, unknown>;
    const action = event.event_action as AcceptedPagerDutyEvent['action'];
    const dedupKey = (event.dedup_key as string | undefined) ?? randomBytes(16).toString('hex');

    this.events.push({ receivedAt: Date.now(), action, dedupKey, body: event });
    if (action === 'trigger') this.openAlerts.add(dedupKey);
    if (action === 'resolve') this.openAlerts.delete(dedupKey);

    sendJson(response, 202, { status: 'success', message: 'Event processed', dedup_key: dedupKey });
    return 202;
  }
}

/** Starts a PagerDuty double that accepts the given routing keys. */
export async function startPagerDutyServer(
  certificates: TestCertificates,
  routingKeys: string[],
): Promise<PagerDutyServer> {
  const server = new PagerDutyServer(certificates, routingKeys);
  await server.listen();
  return server;
}
