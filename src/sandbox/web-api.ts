import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse as parseQuery } from 'node:querystring';

import type { Logger } from '../bot/logger.ts';

import {
  checkMessage,
  formatIssue,
  isObject,
  MAX_VIEW_BYTES,
  validateView,
  type BlockKitIssue,
} from './block-kit.ts';
import {
  MAX_VIEW_STACK,
  type SandboxChannel,
  type SandboxUser,
  type SandboxView,
  type SandboxWorkspace,
  type StoredMessage,
} from './workspace.ts';

/**
 * The sandbox's Slack Web API double: `POST /api/<method>` with Slack's
 * request formats, response shapes and error codes. Platform errors are HTTP
 * 200 with `{ ok: false, error }`, as in Slack; only rate limits and injected
 * faults use other statuses.
 */

export interface WebApiOptions {
  botToken: string;
  /** Logs each failed call at warn level, which shows a newcomer what the bot got wrong. */
  logger?: Logger;
}

/** The largest request body the double reads. */
export const MAX_BODY_BYTES = 1_000_000;

type Args = Record<string, unknown>;
type Result = Record<string, unknown>;

/** A Slack platform error: its code and any extra fields of the error response. */
export class SlackApiError extends Error {
  constructor(
    readonly code: string,
    readonly extra: Result = {},
  ) {
    super(code);
    this.name = 'SlackApiError';
  }
}

/** A request body over the size limit. */
export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body is larger than ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

interface MethodCall {
  workspace: SandboxWorkspace;
  args: Args;
  /** The double's own origin, for permalinks and auth.test's url. */
  origin: string;
}

type MethodHandler = (call: MethodCall) => Result;

/** Handles `POST /api/<method>`; the method name is the last path segment. */
export async function handleWebApi(
  workspace: SandboxWorkspace,
  options: WebApiOptions,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const method = methodFromUrl(req.url ?? '');
  const record = (args: Args, status: number, body: Result) => {
    const call = { method, args, status, ok: body.ok === true, at: workspace.clock.now() };
    const error = typeof body.error === 'string' ? { error: body.error } : {};
    workspace.recordCall({ ...call, ...error });
    if (body.ok !== true) {
      options.logger?.warn({ method, status, error: body.error }, 'sandbox Web API call failed');
    }
  };

  let raw: string;
  try {
    raw = await readBody(req, MAX_BODY_BYTES);
  } catch (error) {
    if (!(error instanceof BodyTooLargeError)) throw error;
    const body = { ok: false, error: 'request_too_large' };
    record({}, 413, body);
    sendJson(res, 413, body);
    return;
  }

  let parsed: ParsedArgs;
  try {
    parsed = parseArgs(req.headers['content-type'], raw);
  } catch (error) {
    if (!(error instanceof SlackApiError)) throw error;
    const body = { ok: false, error: error.code, ...error.extra };
    record({}, 200, body);
    sendJson(res, 200, body);
    return;
  }

  const { token: bodyToken, ...args } = parsed.args;
  const handler = Object.hasOwn(METHODS, method) ? METHODS[method] : undefined;
  if (!handler) {
    const body = { ok: false, error: 'unknown_method', req_method: method };
    record(args, 200, body);
    sendJson(res, 200, body);
    return;
  }

  const fault = workspace.takeFault(method);
  if (fault) {
    const body = { ok: false, error: faultError(fault.status) };
    const headers: Record<string, string> = {};
    if (fault.status === 429) headers['Retry-After'] = String(fault.retryAfterSeconds ?? 1);
    record(args, fault.status, body);
    sendJson(res, fault.status, body, headers);
    return;
  }

  const authError = checkToken(
    req.headers.authorization,
    parsed.form ? bodyToken : undefined,
    options.botToken,
  );
  if (authError) {
    const body = { ok: false, error: authError };
    record(args, 200, body);
    sendJson(res, 200, body);
    return;
  }

  let body: Result;
  try {
    const origin = `http://${req.headers.host ?? '127.0.0.1'}`;
    body = { ok: true, ...handler({ workspace, args, origin }) };
  } catch (error) {
    if (!(error instanceof SlackApiError)) throw error;
    body = { ok: false, error: error.code, ...error.extra };
  }

  record(args, 200, body);
  sendJson(res, 200, body);
}

function methodFromUrl(url: string): string {
  const path = new URL(url, 'http://127.0.0.1').pathname;
  return decodeURIComponent(path.slice(path.lastIndexOf('/') + 1));
}

function faultError(status: number): string {
  if (status === 429) return 'ratelimited';
  // Slack does not document the bodies of its 5xx replies, so these codes
  // come from the generic error list on its method pages.
  return status === 503 ? 'service_unavailable' : 'internal_error';
}

// ----- request parsing -----

interface ParsedArgs {
  args: Args;
  /** Whether the body was form-encoded, the only format that may carry the token. */
  form: boolean;
}

/** Reads the whole request body as UTF-8, rejecting bodies over `limit` bytes. */
export async function readBody(req: IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;

  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > limit) throw new BodyTooLargeError(limit);
    chunks.push(buffer);
  }

  return Buffer.concat(chunks).toString('utf8');
}

function parseArgs(contentType: string | undefined, raw: string): ParsedArgs {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();

  if (type === 'application/x-www-form-urlencoded') {
    const fields = parseQuery(raw);
    const args: Args = {};
    for (const [key, value] of Object.entries(fields)) {
      args[key] = Array.isArray(value) ? value[0] : value;
    }
    return { args, form: true };
  }

  if (type === 'application/json') {
    let value: unknown;
    try {
      value = raw === '' ? {} : JSON.parse(raw);
    } catch {
      throw new SlackApiError('invalid_json');
    }
    if (!isObject(value)) throw new SlackApiError('json_not_object');
    return { args: value, form: false };
  }

  if (type === '' && raw === '') return { args: {}, form: true };
  if (type === '') throw new SlackApiError('missing_post_type');

  // Slack also accepts multipart/form-data (file uploads), but the double does not.
  throw new SlackApiError('invalid_post_type');
}

function checkToken(
  header: string | undefined,
  bodyToken: unknown,
  botToken: string,
): string | undefined {
  let token: string | undefined;

  if (header !== undefined) {
    const match = /^Bearer (\S+)$/.exec(header);
    if (!match) return 'invalid_auth';
    token = match[1];
  } else if (typeof bodyToken === 'string' && bodyToken !== '') {
    token = bodyToken;
  }

  if (token === undefined) return 'not_authed';

  const tokenBytes = Buffer.from(token);
  const expectedBytes = Buffer.from(botToken);
  const matches =
    tokenBytes.length === expectedBytes.length && timingSafeEqual(tokenBytes, expectedBytes);
  if (!matches) return 'invalid_auth';
  return undefined;
}

/** Sends a JSON reply. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
}

// ----- argument helpers -----

function missing(name: string): SlackApiError {
  return invalidArguments([`missing required field: ${name}`]);
}

function invalidArguments(messages: string[]): SlackApiError {
  return new SlackApiError('invalid_arguments', {
    response_metadata: { messages: messages.map((message) => `[ERROR] ${message}`) },
  });
}

function optionalString(args: Args, name: string): string | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  throw invalidArguments([`${name} must be a string [json-pointer:/${name}]`]);
}

function requiredString(args: Args, name: string): string {
  const value = optionalString(args, name);
  if (value === undefined || value === '') throw missing(name);
  return value;
}

function optionalBoolean(args: Args, name: string): boolean | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (value === true || value === 'true' || value === '1' || value === 1) return true;
  if (value === false || value === 'false' || value === '0' || value === 0) return false;
  throw invalidArguments([
    `${name} must be a boolean, got ${JSON.stringify(value)} [json-pointer:/${name}]`,
  ]);
}

/** Parses a JSON argument, which form bodies send as a JSON string and JSON bodies as a value. */
function jsonArgument(args: Args, name: string, errorCode: string): unknown {
  const value = args[name];
  if (typeof value !== 'string') return value;

  try {
    return JSON.parse(value);
  } catch {
    throw new SlackApiError(errorCode);
  }
}

function blockErrors(code: string, issues: BlockKitIssue[]): SlackApiError {
  const formatted = issues.map(formatIssue);
  return new SlackApiError(code, {
    errors: formatted,
    response_metadata: { messages: formatted.map((message) => `[ERROR] ${message}`) },
  });
}

function viewErrors(issues: BlockKitIssue[]): SlackApiError {
  return invalidArguments(issues.map(formatIssue));
}

// ----- shared lookups -----

function channelArgument(call: MethodCall, name = 'channel'): SandboxChannel {
  const id = optionalString(call.args, name);
  const channel = id ? call.workspace.findChannel(id) : undefined;
  if (!channel) throw new SlackApiError('channel_not_found');
  return channel;
}

function visibleMessage(call: MethodCall, channel: SandboxChannel, tsName: string): StoredMessage {
  const ts = optionalString(call.args, tsName);
  const message = ts ? call.workspace.getMessage(channel.id, ts) : undefined;
  // Ephemeral messages live only in the client, so Slack's API cannot find them.
  if (!message || message.ephemeralTo) throw new SlackApiError('message_not_found');
  return message;
}

interface MessageContent {
  text: string;
  blocks: unknown[] | undefined;
}

/** Reads and validates `text` and `blocks` as every chat.* method does. */
function messageContent(args: Args): MessageContent {
  if (args.attachments !== undefined) {
    throw invalidArguments([
      'the sandbox does not render attachments; send blocks instead [json-pointer:/attachments]',
    ]);
  }

  const text = optionalString(args, 'text');
  const blocks = jsonArgument(args, 'blocks', 'invalid_blocks_format');
  const hasBlocks = Array.isArray(blocks) ? blocks.length > 0 : blocks !== undefined;
  if ((text === undefined || text === '') && !hasBlocks) throw new SlackApiError('no_text');

  const check = checkMessage(text, blocks);
  if (!check.ok) throw blockErrors(check.error, check.issues);

  return { text: text ?? '', blocks: hasBlocks ? (blocks as unknown[]) : undefined };
}

function messageMetadata(args: Args): unknown {
  const metadata = jsonArgument(args, 'metadata', 'invalid_metadata_format');
  if (metadata === undefined) return undefined;

  if (!isObject(metadata) || typeof metadata.event_type !== 'string') {
    throw new SlackApiError('invalid_metadata_schema');
  }
  return metadata;
}

/** Resolves `thread_ts` to the parent's ts; a reply's ts threads under its parent, as in Slack. */
function threadParent(call: MethodCall, channel: SandboxChannel): string | undefined {
  const threadTs = optionalString(call.args, 'thread_ts');
  if (threadTs === undefined || threadTs === '') return undefined;

  if (!/^\d{1,12}\.\d{1,6}$/.test(threadTs)) throw new SlackApiError('invalid_thread_ts');
  const parent = call.workspace.getMessage(channel.id, threadTs);
  if (!parent || parent.ephemeralTo) throw new SlackApiError('invalid_thread_ts');
  return parent.threadTs ?? parent.ts;
}

function checkFlags(args: Args): void {
  for (const flag of ['unfurl_links', 'unfurl_media', 'mrkdwn', 'as_user', 'link_names']) {
    optionalBoolean(args, flag);
  }
}

// ----- chat.* -----

function postMessage(call: MethodCall): Result {
  const { workspace } = call;
  const channel = channelArgument(call);
  if (!channel.members.includes(workspace.botUserId)) throw new SlackApiError('not_in_channel');

  const content = messageContent(call.args);
  const metadata = messageMetadata(call.args);
  const threadTs = threadParent(call, channel);
  const broadcast = optionalBoolean(call.args, 'reply_broadcast') ?? false;
  checkFlags(call.args);

  const message = workspace.addMessage({
    channel: channel.id,
    threadTs: threadTs ?? null,
    userId: workspace.botUserId,
    botId: workspace.botId,
    text: content.text,
    blocks: content.blocks ?? null,
    replyBroadcast: threadTs !== undefined && broadcast,
    metadata,
  });

  return { channel: channel.id, ts: message.ts, message: workspace.slackMessage(message) };
}

function updateMessage(call: MethodCall): Result {
  const { workspace } = call;
  const channel = channelArgument(call);
  requiredString(call.args, 'ts');
  const message = visibleMessage(call, channel, 'ts');
  if (message.userId !== workspace.botUserId) throw new SlackApiError('cant_update_message');

  const content = messageContent(call.args);
  const metadata = messageMetadata(call.args);
  checkFlags(call.args);

  // Slack removes a message's blocks when chat.update sends text without blocks.
  const updated = workspace.editMessage(channel.id, message.ts, {
    text: content.text,
    blocks: content.blocks ?? null,
    metadata,
  }) as StoredMessage;

  return {
    channel: channel.id,
    ts: updated.ts,
    text: updated.text,
    message: workspace.slackMessage(updated),
  };
}

function deleteMessage(call: MethodCall): Result {
  const { workspace } = call;
  const channel = channelArgument(call);
  requiredString(call.args, 'ts');
  const message = visibleMessage(call, channel, 'ts');
  if (message.userId !== workspace.botUserId) throw new SlackApiError('cant_delete_message');

  workspace.removeMessage(channel.id, message.ts);
  return { channel: channel.id, ts: message.ts };
}

function postEphemeral(call: MethodCall): Result {
  const { workspace } = call;
  const channel = channelArgument(call);
  const userId = requiredString(call.args, 'user');
  if (!workspace.findUser(userId)) throw new SlackApiError('user_not_found');
  if (!channel.members.includes(userId)) throw new SlackApiError('user_not_in_channel');
  if (!channel.members.includes(workspace.botUserId)) throw new SlackApiError('not_in_channel');

  const content = messageContent(call.args);
  const threadTs = threadParent(call, channel);
  checkFlags(call.args);

  const message = workspace.addMessage({
    channel: channel.id,
    threadTs: threadTs ?? null,
    userId: workspace.botUserId,
    botId: workspace.botId,
    text: content.text,
    blocks: content.blocks ?? null,
    ephemeralTo: userId,
  });

  return { message_ts: message.ts };
}

function getPermalink(call: MethodCall): Result {
  const channel = channelArgument(call);
  requiredString(call.args, 'message_ts');
  const message = visibleMessage(call, channel, 'message_ts');

  let permalink = `${call.origin}/archives/${channel.id}/p${message.ts.replace('.', '')}`;
  if (message.threadTs) permalink += `?thread_ts=${message.threadTs}&cid=${channel.id}`;
  return { channel: channel.id, permalink };
}

// ----- views.* -----

/** Parses and validates the `view` argument of views.open, views.push and views.update. */
function viewArgument(call: MethodCall, updatingViewId?: string): Record<string, unknown> {
  if (call.args.view === undefined) throw missing('view');

  const view = jsonArgument(call.args, 'view', 'invalid_arguments');
  if (JSON.stringify(view).length > MAX_VIEW_BYTES) throw new SlackApiError('view_too_large');

  const issues = validateView(view);
  if (issues.length > 0) throw viewErrors(issues);

  const definition = view as Record<string, unknown>;
  const externalId = definition.external_id;
  if (typeof externalId === 'string') {
    const holder = call.workspace.findViewByExternalId(externalId);
    if (holder && holder.id !== updatingViewId) throw new SlackApiError('duplicate_external_id');
  }

  return definition;
}

function openView(call: MethodCall): Result {
  const triggerId = requiredString(call.args, 'trigger_id');
  const definition = viewArgument(call);

  const exchange = call.workspace.exchangeTrigger(triggerId);
  if (!exchange.ok) throw new SlackApiError(exchange.error);

  const view = call.workspace.openView(exchange.userId, definition);
  return { view: call.workspace.slackView(view) };
}

function pushView(call: MethodCall): Result {
  const { workspace } = call;
  const triggerId = requiredString(call.args, 'trigger_id');
  const definition = viewArgument(call);

  const exchange = workspace.exchangeTrigger(triggerId);
  if (!exchange.ok) throw new SlackApiError(exchange.error);

  const below = exchange.viewId ? workspace.getView(exchange.viewId) : undefined;
  // NOTE: the error code for a push whose trigger did not come from an open
  // modal is not documented; the double returns `not_found`.
  if (!below || !below.open) throw new SlackApiError('not_found');
  if (workspace.openStack(below.userId).length >= MAX_VIEW_STACK) {
    throw new SlackApiError('push_limit_reached');
  }

  const view = workspace.pushView(below.id, definition);
  return { view: workspace.slackView(view) };
}

function updateView(call: MethodCall): Result {
  const { workspace } = call;
  const viewId = optionalString(call.args, 'view_id');
  const externalId = optionalString(call.args, 'external_id');
  if (!viewId && !externalId) throw missing('view_id or external_id');
  if (viewId && externalId) {
    throw invalidArguments(['send view_id or external_id, not both [json-pointer:/external_id]']);
  }

  const target: SandboxView | undefined = viewId
    ? workspace.getView(viewId)
    : workspace.findViewByExternalId(externalId as string);
  if (!target || !target.open) throw new SlackApiError('not_found');

  const definition = viewArgument(call, target.id);
  const hash = optionalString(call.args, 'hash');
  if (hash !== undefined && hash !== target.hash) throw new SlackApiError('hash_conflict');

  const view = workspace.updateView(target.id, definition);
  return { view: workspace.slackView(view) };
}

// ----- directory -----

function authTest(call: MethodCall): Result {
  const { workspace } = call;
  return {
    url: `${call.origin}/`,
    team: workspace.teamName,
    user: 'runbook-bot',
    team_id: workspace.teamId,
    user_id: workspace.botUserId,
    bot_id: workspace.botId,
    is_enterprise_install: false,
  };
}

function usersInfo(call: MethodCall): Result {
  const id = optionalString(call.args, 'user');
  const user = id ? call.workspace.findUser(id) : undefined;
  if (!user) throw new SlackApiError('user_not_found');
  return { user: slackUser(call.workspace, user) };
}

function userGroupUsers(call: MethodCall): Result {
  const id = optionalString(call.args, 'usergroup');
  const group = id ? call.workspace.findUserGroup(id) : undefined;
  if (!group) throw new SlackApiError('no_such_subteam');
  return { users: [...group.users] };
}

function conversationsInfo(call: MethodCall): Result {
  const channel = channelArgument(call);
  const creator = call.workspace.users[0].id;
  return {
    channel: {
      id: channel.id,
      name: channel.name,
      is_channel: true,
      is_group: false,
      is_im: false,
      is_mpim: false,
      is_private: false,
      is_archived: false,
      is_general: false,
      is_member: channel.members.includes(call.workspace.botUserId),
      created: channel.created,
      creator,
      name_normalized: channel.name,
      topic: { value: channel.topic, creator, last_set: channel.created },
      purpose: { value: channel.purpose, creator, last_set: channel.created },
      num_members: channel.members.length,
    },
  };
}

function slackUser(workspace: SandboxWorkspace, user: SandboxUser): Result {
  const now = workspace.clock.now();
  return {
    id: user.id,
    team_id: workspace.teamId,
    name: user.name,
    deleted: false,
    real_name: user.realName,
    tz: user.tz,
    tz_label: timeZoneLabel(user.tz, now),
    tz_offset: timeZoneOffsetSeconds(user.tz, now),
    is_admin: user.isAdmin,
    is_owner: false,
    is_primary_owner: false,
    is_restricted: user.isGuest,
    is_ultra_restricted: false,
    is_bot: user.isBot,
    is_app_user: false,
    profile: {
      real_name: user.realName,
      display_name: user.displayName,
      ...(user.email ? { email: user.email } : {}),
      ...(user.id === workspace.botUserId ? { bot_id: workspace.botId } : {}),
    },
  };
}

function timeZoneLabel(timeZone: string, at: number): string {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, timeZoneName: 'long' }).formatToParts(
    at,
  );
  return parts.find((part) => part.type === 'timeZoneName')?.value ?? timeZone;
}

function timeZoneOffsetSeconds(timeZone: string, at: number): number {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  const part = (type: string) =>
    Number(format.formatToParts(at).find((p) => p.type === type)?.value);
  const wall = Date.UTC(
    part('year'),
    part('month') - 1,
    part('day'),
    part('hour'),
    part('minute'),
    part('second'),
  );
  return Math.round((wall - Math.floor(at / 1000) * 1000) / 1000);
}

/**
 * conversations.history and conversations.replies: newest first for history,
 * oldest first for replies, as Slack returns them. Message metadata is
 * included only with include_all_metadata, as in Slack. `oldest` keeps
 * messages after that ts, and at it too with `inclusive`. `limit` sets the
 * page size (default 100, at most 1000). `cursor` takes the `next_cursor` of
 * the page before, and the last page has an empty one.
 */
function listMessagesOf(call: MethodCall, threadTs: string | undefined): Result {
  const channel = channelArgument(call);
  const limit = Math.min(Math.max(Number(optionalString(call.args, 'limit') ?? 100) || 100, 1), 1000);
  const withMetadata = ['true', '1'].includes(String(call.args.include_all_metadata ?? ''));
  const oldest = Number(optionalString(call.args, 'oldest') ?? 0);
  const inclusive = ['true', '1'].includes(String(call.args.inclusive ?? ''));
  if (!Number.isFinite(oldest)) throw new SlackApiError('invalid_arguments');
  const cursor = optionalString(call.args, 'cursor');
  const offset = cursor ? Number(Buffer.from(cursor, 'base64').toString('utf8').replace(/^offset:/, '')) : 0;
  if (!Number.isInteger(offset) || offset < 0) throw new SlackApiError('invalid_cursor');
  const visible = call.workspace
    .listMessages()
    .filter((message) => message.channel === channel.id && message.ephemeralTo === null)
    .filter((message) => (threadTs ? message.ts === threadTs || message.threadTs === threadTs : message.threadTs === null || message.replyBroadcast));
  if (threadTs && !visible.some((message) => message.ts === threadTs)) throw new SlackApiError('thread_not_found');
  const recent = visible.filter((message) => (inclusive ? Number(message.ts) >= oldest : Number(message.ts) > oldest));
  const ordered = threadTs ? recent : [...recent].reverse();
  const page = ordered.slice(offset, offset + limit);
  const messages = page.map((message) => {
    const shown = call.workspace.slackMessage(message);
    if (!withMetadata) delete shown.metadata;
    return shown;
  });
  const hasMore = ordered.length > offset + limit;
  const nextCursor = hasMore ? Buffer.from(`offset:${offset + limit}`).toString('base64') : '';
  return { messages, has_more: hasMore, response_metadata: { next_cursor: nextCursor } };
}

function conversationsHistory(call: MethodCall): Result {
  return listMessagesOf(call, undefined);
}

function conversationsReplies(call: MethodCall): Result {
  const ts = optionalString(call.args, 'ts');
  if (!ts) throw new SlackApiError('invalid_arguments');
  return listMessagesOf(call, ts);
}

/** Every Web API method the double implements. */
const METHODS: Record<string, MethodHandler> = {
  'auth.test': authTest,
  'chat.postMessage': postMessage,
  'chat.update': updateMessage,
  'chat.delete': deleteMessage,
  'chat.postEphemeral': postEphemeral,
  'chat.getPermalink': getPermalink,
  'views.open': openView,
  'views.push': pushView,
  'views.update': updateView,
  'users.info': usersInfo,
  'usergroups.users.list': userGroupUsers,
  'conversations.info': conversationsInfo,
  'conversations.history': conversationsHistory,
  'conversations.replies': conversationsReplies,
};

export const WEB_API_METHODS = Object.keys(METHODS);
