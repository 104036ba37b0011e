import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';

import { HTTPModuleFunctions, type App, type ReceiverProcessEventErrorHandlerArgs } from '@slack/bolt';

import type { Logger } from './logger.ts';

/** Time after which an unanswered Slack request gets a 400 response; Slack itself stops waiting after 3 s. */
export const UNANSWERED_REQUEST_MS = 3100;
/** Bolt's default body limit for HTTPReceiver, kept the same here. */
export const SLACK_BODY_LIMIT = HTTPModuleFunctions.defaultBodyLimit;

/** A signed request whose body is not a Slack payload that this bot handles. */
export class MalformedSlackRequest extends Error {
  readonly code = 'malformed_slack_request';
}

/** Payload types this bot has listeners for. Bolt would leave any other type without a response. */
const HANDLED_TYPES = new Set(['block_actions', 'view_submission', 'view_closed', 'shortcut', 'message_action']);

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Returns why a body is not a Slack payload this bot handles, or undefined
 * when it is one: a slash command, or a payload of a handled type with the
 * fields Bolt reads to route it.
 */
export function malformedBodyReason(body: unknown): string | undefined {
  if (body === null) return 'the request body is null';
  if (Array.isArray(body)) return 'the request body is an array';
  if (typeof body !== 'object') return `the request body is a ${typeof body}`;
  const fields = body as Record<string, unknown>;
  if (typeof fields.command === 'string') return undefined;
  if (typeof fields.type !== 'string') return 'the request body has no command and no type';
  if (!HANDLED_TYPES.has(fields.type)) return `this bot does not handle ${fields.type.slice(0, 40)} payloads`;
  if (!isObject(fields.user) || typeof fields.user.id !== 'string') return `a ${fields.type} payload has no user id`;
  if (fields.type === 'block_actions') {
    const actions = fields.actions;
    if (!Array.isArray(actions) || actions.length === 0) return 'a block_actions payload has no actions';
    if (!actions.every((action) => isObject(action) && typeof action.action_id === 'string')) return 'a block_actions payload has an action without an action_id';
  }
  if (fields.type === 'view_submission' || fields.type === 'view_closed') {
    if (!isObject(fields.view) || typeof fields.view.callback_id !== 'string') return `a ${fields.type} payload has no view with a callback_id`;
  }
  if ((fields.type === 'shortcut' || fields.type === 'message_action') && typeof fields.callback_id !== 'string') {
    return `a ${fields.type} payload has no callback_id`;
  }
  return undefined;
}

/**
 * Rejects a body that is not a Slack payload before Bolt dispatches it.
 * Without this, Bolt finds no listener and the request waits 2.9 s for the
 * unhandled-request timeout.
 */
export function rejectMalformedBodies(app: App): void {
  const processEvent = app.processEvent.bind(app);
  app.processEvent = async (event) => {
    const reason = malformedBodyReason(event.body);
    if (reason) throw new MalformedSlackRequest(reason);
    return processEvent(event);
  };
}

/** Returns a handler that responds 400 with the reason to MalformedSlackRequest and leaves other errors to Bolt's default handler. */
export function processEventErrorHandler(logger: Logger) {
  return async (args: ReceiverProcessEventErrorHandlerArgs): Promise<boolean> => {
    if (!(args.error instanceof MalformedSlackRequest) || args.response.headersSent) {
      return HTTPModuleFunctions.defaultProcessEventErrorHandler(args);
    }
    logger.warn({ remoteAddress: args.request.socket.remoteAddress, reason: args.error.message }, 'malformed Slack request rejected');
    args.response.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
    args.response.end(`Rejected: ${args.error.message}.`);
    return false;
  };
}

/**
 * Ends a Slack request that has no response after UNANSWERED_REQUEST_MS
 * with a 400, so a body that Bolt fails on before dispatching it does not
 * hold its connection open forever.
 */
export function answerIfUnanswered(request: IncomingMessage, response: ServerResponse, logger: Logger): void {
  const timer = setTimeout(() => {
    if (response.headersSent || response.writableEnded) return;
    logger.error({ remoteAddress: request.socket.remoteAddress, path: request.url }, 'Slack request had no response in time; responded 400');
    response.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' });
    response.end('Rejected: the request could not be processed. Check that it is a Slack payload.');
  }, UNANSWERED_REQUEST_MS);
  timer.unref();
  response.once('close', () => clearTimeout(timer));
}

/** Returns true when a Slack body parses to JSON null, the one value that Bolt's receiver fails on. */
function isNullPayload(raw: Buffer, contentType: string | undefined): boolean {
  const text = raw.toString('utf8');
  if (contentType === 'application/x-www-form-urlencoded') {
    // Decoded as Bolt decodes it, so an encoded key such as %70ayload counts too.
    const { payload } = parseQuery(text);
    return typeof payload === 'string' && payload.trim() === 'null';
  }
  return text.trim() === 'null';
}

/**
 * Reads a Slack request's body before Bolt does, and hands Bolt the buffered
 * request (Bolt uses `rawBody` when it is already set). A body of JSON null
 * makes Bolt's receiver throw before any handler could respond, so it gets a
 * 400 here. Bodies over SLACK_BODY_LIMIT get 413, as Bolt responds to them.
 */
export function bufferSlackRequest(request: IncomingMessage, response: ServerResponse, logger: Logger, next: () => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const reject = (status: number, text: string, message: string) => {
    logger.warn({ remoteAddress: request.socket.remoteAddress, path: request.url, status }, message);
    response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
    response.end(text);
  };
  request.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > SLACK_BODY_LIMIT) {
      request.pause();
      request.removeAllListeners('data');
      reject(413, `Rejected: the request body is over ${SLACK_BODY_LIMIT} bytes.`, 'Slack request body too large; rejected');
      return;
    }
    chunks.push(chunk);
  });
  request.on('end', () => {
    if (response.headersSent) return;
    const raw = Buffer.concat(chunks, size);
    if (isNullPayload(raw, request.headers['content-type'])) {
      reject(400, 'Rejected: the request body is null.', 'malformed Slack request rejected');
      return;
    }
    (request as IncomingMessage & { rawBody?: Buffer }).rawBody = raw;
    next();
  });
  request.on('error', (error) => logger.warn({ err: error, path: request.url }, 'reading a Slack request failed'));
}
