import { createHmac, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

import type { Logger } from '../bot/logger.ts';
import {
  checkMessage,
  findElement,
  formatIssue,
  inputBlocks,
  isObject,
  validateView,
  type BlockKitIssue,
} from './block-kit.ts';
import { readBody, sendJson } from './web-api.ts';
import {
  MAX_VIEW_STACK,
  type SandboxChannel,
  type SandboxUser,
  type SandboxView,
  type SandboxWorkspace,
} from './workspace.ts';

/**
 * Delivery of what users do in the sandbox to the bot, in Slack's formats.
 * Slash commands go as form fields, interactions as a form field `payload`
 * with JSON, and message events as JSON. Each is POSTed to the bot's events
 * URL with Slack's signature headers. This module also serves the
 * response_url endpoint that Bolt's `respond()` posts to.
 */

type Json = Record<string, unknown>;

export interface DeliveryOptions {
  /** The bot's `/slack/events` URL, or a function returning it once the bot listens. */
  botEventsUrl: string | (() => string);
  signingSecret: string;
  /** The sandbox's origin for response URLs; by default the origin of `botEventsUrl`. */
  publicUrl?: string | (() => string);
  /** How long Slack waits for the bot's HTTP reply (3 seconds). */
  timeoutMs?: number;
  logger?: Logger;
}

/** Error codes that Slack shows when the bot fails to acknowledge an interaction. */
export type DeliveryError =
  'dispatch_failed' | 'operation_timeout' | 'http_client_error' | 'http_service_error';

type DeliveryOutcome =
  | { ok: true; status: number; body: string; contentType: string }
  | { ok: false; error: DeliveryError; status?: number };

export type InteractionResult =
  { ok: true } | { ok: false; error: DeliveryError | string; message?: string };

export type SubmissionResult =
  | { ok: true; action: 'closed' | 'updated' | 'pushed' | 'cleared' }
  | { ok: false; errors: Record<string, string> }
  | { ok: false; error: DeliveryError | 'invalid_response'; message?: string };

export interface CommandInput {
  user: string;
  channel: string;
  /** The text the user typed, such as "/incident secret-key Key leaked". */
  text: string;
}

export interface MessageInput {
  user: string;
  channel: string;
  text: string;
  threadTs?: string;
}

export interface ClickInput {
  user: string;
  channel?: string;
  messageTs?: string;
  viewId?: string;
  blockId: string;
  actionId: string;
  /** Set when the user confirmed the element's confirm dialog. */
  confirmed?: boolean;
  /** The option value picked in a static_select. */
  selectedOption?: string;
  selectedUser?: string;
  selectedUsers?: string[];
  /** Current input values of the view, as for `SubmitInput.values`. */
  values?: RawValues;
}

/** Input values by block_id and action_id: text, an option value, a user id or user ids. */
export type RawValues = Record<string, Record<string, string | string[] | null>>;

export interface SubmitInput {
  user: string;
  viewId: string;
  values: RawValues;
}

export interface CloseInput {
  user: string;
  viewId: string;
}

/** A request from the page that the sandbox cannot carry out; `status` is the HTTP status. */
export class SandboxRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'SandboxRequestError';
  }
}

interface ResponseUrl {
  userId: string;
  channel: string;
  /** The message a replace_original or delete_original acts on. */
  originalTs: string | null;
  threadTs: string | null;
  createdAt: number;
  uses: number;
}

/** A response_url accepts 5 posts within 30 minutes. */
export const RESPONSE_URL_MAX_USES = 5;
export const RESPONSE_URL_LIFETIME_MS = 30 * 60 * 1000;

const SLACKBOT = 'USLACKBOT';
const VERIFICATION_TOKEN = 'sandbox-verification-token';

/** Computes Slack's request signature: `v0=` and the hex HMAC-SHA256 of `v0:<ts>:<body>`. */
export function signatureFor(signingSecret: string, timestamp: number, body: string): string {
  const digest = createHmac('sha256', signingSecret)
    .update(`v0:${timestamp}:${body}`)
    .digest('hex');
  return `v0=${digest}`;
}

export class SandboxDelivery {
  private botEventsUrl: string | (() => string);
  private readonly responseUrls = new Map<string, ResponseUrl>();
  private readonly timeoutMs: number;

  constructor(
    private readonly workspace: SandboxWorkspace,
    private readonly options: DeliveryOptions,
  ) {
    this.botEventsUrl = options.botEventsUrl;
    this.timeoutMs = options.timeoutMs ?? 3000;
  }

  setBotEventsUrl(url: string): void {
    this.botEventsUrl = url;
  }

  private eventsUrl(): string {
    return typeof this.botEventsUrl === 'function' ? this.botEventsUrl() : this.botEventsUrl;
  }

  private publicUrl(): string {
    const configured = this.options.publicUrl;
    if (typeof configured === 'function') return configured();
    if (typeof configured === 'string') return configured;
    return new URL(this.eventsUrl()).origin;
  }

  // ----- slash commands -----

  /** Delivers a slash command and shows the bot's ack body as the command reply. */
  async command(input: CommandInput): Promise<InteractionResult> {
    const user = this.requireUser(input.user);
    const channel = this.requireMember(input.channel, user);

    const match = /^(\/[a-z0-9_-]{1,31})(?:\s+([\s\S]*))?$/i.exec(input.text.trim());
    if (!match) {
      const message =
        `"${input.text}" is not a slash command; ` + 'type / and a command name such as /incident';
      throw new SandboxRequestError('invalid_command', message);
    }
    const command = match[1].toLowerCase();
    const text = (match[2] ?? '').trim();

    const responseUrlId = this.createResponseUrl(user.id, channel.id, null, null);
    const fields = {
      token: VERIFICATION_TOKEN,
      team_id: this.workspace.teamId,
      team_domain: this.workspace.teamDomain,
      channel_id: channel.id,
      channel_name: channel.name,
      user_id: user.id,
      user_name: user.name,
      command,
      text,
      api_app_id: this.workspace.appId,
      is_enterprise_install: 'false',
      response_url: this.responseUrlFor(responseUrlId),
      trigger_id: this.workspace.issueTrigger(user.id),
    };

    const outcome = await this.post(new URLSearchParams(fields).toString(), 'form');
    if (!outcome.ok) {
      this.slackbotNotice(
        user.id,
        channel.id,
        `${command} failed with the error "${outcome.error}"`,
      );
      return { ok: false, error: outcome.error };
    }

    return this.showCommandReply(outcome, { command, text, user, channel, responseUrlId });
  }

  private showCommandReply(
    outcome: { body: string; contentType: string },
    context: {
      command: string;
      text: string;
      user: SandboxUser;
      channel: SandboxChannel;
      responseUrlId: string;
    },
  ): InteractionResult {
    if (outcome.body === '') return { ok: true };

    let reply: Json = { text: outcome.body };
    if (outcome.contentType.startsWith('application/json')) {
      try {
        const parsed: unknown = JSON.parse(outcome.body);
        if (isObject(parsed)) reply = parsed;
      } catch {
        // Slack shows a body that is not JSON as plain text, and so does the sandbox.
      }
    }

    const { user, channel } = context;
    const text = typeof reply.text === 'string' ? reply.text : '';
    const blocks = reply.blocks;
    const check = checkMessage(text, blocks);
    if (!check.ok) {
      this.slackbotNotice(
        user.id,
        channel.id,
        `${context.command} failed with the error "${check.error}"`,
      );
      return { ok: false, error: check.error, message: check.issues.map(formatIssue).join('; ') };
    }

    const hasBlocks = Array.isArray(blocks) && blocks.length > 0;
    if (text === '' && !hasBlocks) return { ok: true };

    const inChannel = reply.response_type === 'in_channel';
    if (inChannel) {
      const typed = `${context.command}${context.text ? ` ${context.text}` : ''}`;
      this.workspace.addMessage({ channel: channel.id, userId: user.id, text: escapeText(typed) });
    }

    const message = this.workspace.addMessage({
      channel: channel.id,
      userId: this.workspace.botUserId,
      botId: this.workspace.botId,
      text,
      blocks: hasBlocks ? (blocks as unknown[]) : null,
      ephemeralTo: inChannel ? null : user.id,
    });

    const responseUrl = this.responseUrls.get(context.responseUrlId);
    if (responseUrl) responseUrl.originalTs = message.ts;
    return { ok: true };
  }

  // ----- messages -----

  /** Posts a message as a user and delivers the Events API `message` event to the bot. */
  async message(input: MessageInput): Promise<InteractionResult> {
    const user = this.requireUser(input.user);
    const channel = this.requireMember(input.channel, user);
    if (input.text.trim() === '') {
      throw new SandboxRequestError(
        'no_text',
        'The message is empty; type some text before sending',
      );
    }

    let threadTs: string | null = null;
    if (input.threadTs) {
      const parent = this.workspace.getMessage(channel.id, input.threadTs);
      if (!parent || parent.ephemeralTo) {
        const message = `No message with ts ${input.threadTs} in #${channel.name} to reply to`;
        throw new SandboxRequestError('thread_not_found', message, 404);
      }
      threadTs = parent.threadTs ?? parent.ts;
    }

    const text = this.encodeMentions(escapeText(input.text));
    const message = this.workspace.addMessage({
      channel: channel.id,
      userId: user.id,
      text,
      threadTs,
    });

    const event: Json = {
      type: 'message',
      channel: channel.id,
      user: user.id,
      text,
      ts: message.ts,
      event_ts: message.ts,
      channel_type: 'channel',
      team: this.workspace.teamId,
    };
    if (threadTs) {
      event.thread_ts = threadTs;
      event.parent_user_id = this.workspace.getMessage(channel.id, threadTs)?.userId;
    }

    const envelope = {
      token: VERIFICATION_TOKEN,
      team_id: this.workspace.teamId,
      api_app_id: this.workspace.appId,
      event,
      type: 'event_callback',
      event_id: `Ev0SBX${randomBytes(5).toString('hex').toUpperCase()}`,
      event_time: Math.floor(this.workspace.clock.now() / 1000),
      authorizations: [
        {
          enterprise_id: null,
          team_id: this.workspace.teamId,
          user_id: this.workspace.botUserId,
          is_bot: true,
          is_enterprise_install: false,
        },
      ],
      is_ext_shared_channel: false,
    };

    const outcome = await this.post(JSON.stringify(envelope), 'json');
    return outcome.ok ? { ok: true } : { ok: false, error: outcome.error };
  }

  /** Turns "@alex" into "<@U0SBXALEX>" for the sandbox's people, as Slack's client does. */
  private encodeMentions(text: string): string {
    return text.replace(/(^|\s)@([a-z][a-z0-9._-]*)/gi, (whole, space: string, name: string) => {
      const user = this.workspace.users.find((candidate) => candidate.name === name.toLowerCase());
      return user ? `${space}<@${user.id}>` : whole;
    });
  }

  // ----- block_actions -----

  /** Delivers a button press or a select change in a message or a modal. */
  async click(input: ClickInput): Promise<InteractionResult> {
    const user = this.requireUser(input.user);
    if (input.viewId) return this.clickInView(user, input);

    if (!input.channel || !input.messageTs) {
      const message = 'A click needs channel and messageTs (a message button) or viewId (a modal)';
      throw new SandboxRequestError('invalid_request', message);
    }

    const channel = this.requireMember(input.channel, user);
    const message = this.workspace.getMessage(channel.id, input.messageTs);
    if (!message || (message.ephemeralTo !== null && message.ephemeralTo !== user.id)) {
      const text = `No message with ts ${input.messageTs} in #${channel.name} for ${user.name}`;
      throw new SandboxRequestError('message_not_found', text, 404);
    }

    const { block, element } = this.requireElement(message.blocks, input, `message ${message.ts}`);
    const action = this.actionFor(block, element, input);
    const stateValues: Json = {};
    if (action.type !== 'button') {
      stateValues[action.block_id as string] = { [action.action_id as string]: stateOf(action) };
    }

    const responseUrlId = this.createResponseUrl(user.id, channel.id, message.ts, message.threadTs);
    const container: Json = {
      type: 'message',
      message_ts: message.ts,
      channel_id: channel.id,
      is_ephemeral: message.ephemeralTo !== null,
    };
    if (message.threadTs) container.thread_ts = message.threadTs;

    const payload: Json = {
      type: 'block_actions',
      user: this.payloadUser(user),
      api_app_id: this.workspace.appId,
      token: VERIFICATION_TOKEN,
      container,
      trigger_id: this.workspace.issueTrigger(user.id),
      team: { id: this.workspace.teamId, domain: this.workspace.teamDomain },
      enterprise: null,
      is_enterprise_install: false,
      channel: { id: channel.id, name: channel.name },
      state: { values: stateValues },
      response_url: this.responseUrlFor(responseUrlId),
      actions: [action],
    };
    // NOTE: the double leaves `message` out of payloads from ephemeral
    // messages, as users report of Slack, but Slack's docs do not confirm it.
    // A bot replaces an ephemeral message through response_url.
    if (message.ephemeralTo === null) payload.message = this.workspace.slackMessage(message);

    return this.deliverInteraction(payload);
  }

  private async clickInView(user: SandboxUser, input: ClickInput): Promise<InteractionResult> {
    const view = this.requireOpenView(input.viewId as string, user);
    const { block, element } = this.requireElement(
      view.definition.blocks,
      input,
      `view ${view.id}`,
    );
    const action = this.actionFor(block, element, input);

    const state = buildState(this.workspace, view, input.values ?? {}, false);
    if (!state.ok) {
      throw new SandboxRequestError('invalid_values', Object.values(state.errors).join('; '));
    }
    this.workspace.setViewValues(view.id, state.values);

    const payload: Json = {
      type: 'block_actions',
      user: this.payloadUser(user),
      api_app_id: this.workspace.appId,
      token: VERIFICATION_TOKEN,
      container: { type: 'view', view_id: view.id },
      trigger_id: this.workspace.issueTrigger(user.id, view.id),
      team: { id: this.workspace.teamId, domain: this.workspace.teamDomain },
      enterprise: null,
      is_enterprise_install: false,
      view: this.workspace.slackView(view),
      actions: [action],
    };

    return this.deliverInteraction(payload);
  }

  private async deliverInteraction(payload: Json): Promise<InteractionResult> {
    const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
    const outcome = await this.post(body, 'form');
    return outcome.ok ? { ok: true } : { ok: false, error: outcome.error };
  }

  private requireElement(blocks: unknown, input: ClickInput, where: string) {
    const found = findElement(blocks, input.blockId, input.actionId);
    if (!found) {
      const message =
        `No element with block_id "${input.blockId}" and action_id "${input.actionId}" ` +
        `in ${where}`;
      throw new SandboxRequestError('element_not_found', message, 404);
    }

    if (isObject(found.element.confirm) && input.confirmed !== true) {
      const message =
        `The element "${input.actionId}" has a confirm dialog; ` +
        'show it and send confirmed: true once the user confirms';
      throw new SandboxRequestError('confirm_required', message, 409);
    }

    return found;
  }

  /** Builds `actions[0]` for the element, with the selection the user made. */
  private actionFor(block: Json, element: Json, input: ClickInput): Json {
    const base: Json = {
      type: element.type,
      block_id: block.block_id,
      action_id: element.action_id,
      action_ts: actionTs(this.workspace.clock.now()),
    };

    switch (element.type) {
      case 'button': {
        const action: Json = { ...base, text: element.text };
        if (element.value !== undefined) action.value = element.value;
        if (element.style !== undefined) action.style = element.style;
        if (element.url !== undefined) action.url = element.url;
        return action;
      }
      case 'static_select': {
        const option = optionsOf(element).find(
          (candidate) => candidate.value === input.selectedOption,
        );
        if (!option) {
          const choice = String(input.selectedOption);
          const message = `"${choice}" is not an option of ${String(element.action_id)}`;
          throw new SandboxRequestError('invalid_option', message);
        }
        return { ...base, selected_option: option };
      }
      case 'users_select':
        return { ...base, selected_user: this.requireUser(input.selectedUser ?? '').id };
      case 'multi_users_select':
        return {
          ...base,
          selected_users: (input.selectedUsers ?? []).map((id) => this.requireUser(id).id),
        };
      default: {
        const type = String(element.type);
        const message = `Elements of type ${type} do not send block_actions in the sandbox`;
        throw new SandboxRequestError('not_interactive', message);
      }
    }
  }

  // ----- modals -----

  /** Submits a modal and applies the bot's `response_action`. */
  async submit(input: SubmitInput): Promise<SubmissionResult> {
    const user = this.requireUser(input.user);
    const view = this.requireOpenView(input.viewId, user);
    if (view.definition.submit === undefined) {
      throw new SandboxRequestError('no_submit', `View ${view.id} has no submit button`, 409);
    }

    const state = buildState(this.workspace, view, input.values, true);
    if (!state.ok) return { ok: false, errors: state.errors };
    this.workspace.setViewValues(view.id, state.values);

    const payload: Json = {
      type: 'view_submission',
      team: { id: this.workspace.teamId, domain: this.workspace.teamDomain },
      user: this.payloadUser(user),
      api_app_id: this.workspace.appId,
      token: VERIFICATION_TOKEN,
      trigger_id: this.workspace.issueTrigger(user.id, view.id),
      view: this.workspace.slackView(view),
      response_urls: [],
      is_enterprise_install: false,
      enterprise: null,
    };

    const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
    const outcome = await this.post(body, 'form');
    if (!outcome.ok) return { ok: false, error: outcome.error };

    return this.applyResponseAction(view, outcome.body);
  }

  private applyResponseAction(view: SandboxView, body: string): SubmissionResult {
    if (body.trim() === '') {
      this.workspace.closeView(view.id, view.definition.clear_on_close === true);
      return { ok: true, action: 'closed' };
    }

    let response: unknown;
    try {
      response = JSON.parse(body);
    } catch {
      return this.invalidResponse(view, 'the reply to view_submission is not JSON');
    }
    if (!isObject(response)) return this.invalidResponse(view, 'the reply is not a JSON object');

    switch (response.response_action) {
      case 'errors':
        return this.submissionErrors(view, response.errors);
      case 'update': {
        const issues = validateView(response.view);
        if (issues.length > 0) return this.invalidResponse(view, issuesText(issues));
        this.workspace.updateView(view.id, response.view as Json);
        return { ok: true, action: 'updated' };
      }
      case 'push': {
        const issues = validateView(response.view);
        if (issues.length > 0) return this.invalidResponse(view, issuesText(issues));
        if (this.workspace.openStack(view.userId).length >= MAX_VIEW_STACK) {
          return this.invalidResponse(view, `a modal stack holds at most ${MAX_VIEW_STACK} views`);
        }
        this.workspace.pushView(view.id, response.view as Json);
        return { ok: true, action: 'pushed' };
      }
      case 'clear':
        this.workspace.closeView(view.id, true);
        return { ok: true, action: 'cleared' };
      case undefined:
        this.workspace.closeView(view.id, view.definition.clear_on_close === true);
        return { ok: true, action: 'closed' };
      default:
        return this.invalidResponse(
          view,
          `unknown response_action ${JSON.stringify(response.response_action)}`,
        );
    }
  }

  private submissionErrors(view: SandboxView, errors: unknown): SubmissionResult {
    if (!isObject(errors) || Object.keys(errors).length === 0) {
      return this.invalidResponse(view, 'response_action "errors" needs a non-empty errors object');
    }

    const inputIds = inputBlocks(view.definition.blocks).map(({ block }) => block.block_id);
    const blockErrors: Record<string, string> = {};
    for (const [blockId, message] of Object.entries(errors)) {
      if (!inputIds.includes(blockId) || typeof message !== 'string') {
        const reason =
          `errors key "${blockId}" is not the block_id of an input block ` +
          'with a string message';
        return this.invalidResponse(view, reason);
      }
      blockErrors[blockId] = message;
    }

    return { ok: false, errors: blockErrors };
  }

  private invalidResponse(view: SandboxView, reason: string): SubmissionResult {
    this.options.logger?.warn(
      { viewId: view.id, reason },
      'sandbox rejected the reply to view_submission',
    );
    return { ok: false, error: 'invalid_response', message: reason };
  }

  /**
   * Closes the top view, or the whole stack when the view clears on close, and
   * sends view_closed when the view asked for notify_on_close.
   */
  async close(input: CloseInput): Promise<InteractionResult> {
    const user = this.requireUser(input.user);
    const view = this.requireOpenView(input.viewId, user);
    const notify = view.definition.notify_on_close === true;
    const snapshot = this.workspace.slackView(view);

    this.workspace.closeView(view.id, view.definition.clear_on_close === true);
    if (!notify) return { ok: true };

    const payload: Json = {
      type: 'view_closed',
      team: { id: this.workspace.teamId, domain: this.workspace.teamDomain },
      user: this.payloadUser(user),
      view: snapshot,
      api_app_id: this.workspace.appId,
      token: VERIFICATION_TOKEN,
      is_cleared: view.definition.clear_on_close === true,
      is_enterprise_install: false,
      enterprise: null,
    };
    return this.deliverInteraction(payload);
  }

  // ----- response_url -----

  private createResponseUrl(
    userId: string,
    channel: string,
    originalTs: string | null,
    threadTs: string | null,
  ) {
    const createdAt = this.workspace.realClock.now();
    for (const [oldId, old] of this.responseUrls) {
      if (createdAt - old.createdAt > RESPONSE_URL_LIFETIME_MS) this.responseUrls.delete(oldId);
    }

    const id = randomBytes(12).toString('hex');
    this.responseUrls.set(id, { userId, channel, originalTs, threadTs, createdAt, uses: 0 });
    return id;
  }

  private responseUrlFor(id: string): string {
    return `${this.publicUrl()}/sandbox/response/${id}`;
  }

  /** Handles `POST /sandbox/response/<id>` as Slack's response_url endpoint does. */
  async handleResponseUrl(id: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const entry = this.responseUrls.get(id);
    const now = this.workspace.realClock.now();

    // NOTE: Slack does not document the replies of a used-up or expired
    // response_url. The double replies 404 with these codes, so Bolt's
    // respond() throws RespondError.
    if (!entry || now - entry.createdAt > RESPONSE_URL_LIFETIME_MS) {
      this.replyToResponseUrl(res, id, { status: 404, body: { ok: false, error: 'expired_url' } });
      return;
    }
    if (entry.uses >= RESPONSE_URL_MAX_USES) {
      this.replyToResponseUrl(res, id, { status: 404, body: { ok: false, error: 'used_url' } });
      return;
    }

    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    let body: unknown;
    try {
      body = type === 'application/json' ? JSON.parse(await readBody(req, 1_000_000)) : undefined;
    } catch {
      body = undefined;
    }
    if (!isObject(body)) {
      this.replyToResponseUrl(res, id, {
        status: 400,
        body: { ok: false, error: 'invalid_payload' },
      });
      return;
    }

    entry.uses += 1;
    this.replyToResponseUrl(res, id, this.applyResponse(entry, body));
  }

  private replyToResponseUrl(
    res: ServerResponse,
    id: string,
    result: { status: number; body: Json },
  ) {
    if (result.status !== 200) {
      const error = result.body.error;
      this.options.logger?.warn(
        { responseUrlId: id, error },
        'sandbox rejected a response_url post',
      );
    }
    sendJson(res, result.status, result.body);
  }

  private applyResponse(entry: ResponseUrl, body: Json): { status: number; body: Json } {
    const { workspace } = this;

    if (body.delete_original === true) {
      if (!entry.originalTs || !workspace.removeMessage(entry.channel, entry.originalTs)) {
        return { status: 404, body: { ok: false, error: 'message_not_found' } };
      }
      entry.originalTs = null;
      return { status: 200, body: { ok: true } };
    }

    const text = typeof body.text === 'string' ? body.text : '';
    const blocks = Array.isArray(body.blocks) && body.blocks.length > 0 ? body.blocks : undefined;
    if (text === '' && blocks === undefined) {
      return { status: 400, body: { ok: false, error: 'no_text' } };
    }

    const check = checkMessage(text, body.blocks);
    if (!check.ok) {
      // A strict choice of the double: a 400 makes respond() throw on bad blocks.
      const errors = check.issues.map(formatIssue);
      return { status: 400, body: { ok: false, error: check.error, errors } };
    }

    if (body.replace_original === true) {
      const original = entry.originalTs
        ? workspace.getMessage(entry.channel, entry.originalTs)
        : undefined;
      if (!original) return { status: 404, body: { ok: false, error: 'message_not_found' } };
      workspace.editMessage(entry.channel, original.ts, { text, blocks: blocks ?? null });
      return { status: 200, body: { ok: true } };
    }

    const threadTs = typeof body.thread_ts === 'string' ? body.thread_ts : entry.threadTs;
    if (threadTs && !workspace.getMessage(entry.channel, threadTs)) {
      return { status: 400, body: { ok: false, error: 'invalid_thread_ts' } };
    }

    const message = workspace.addMessage({
      channel: entry.channel,
      threadTs,
      userId: workspace.botUserId,
      botId: workspace.botId,
      text,
      blocks: blocks ?? null,
      ephemeralTo: body.response_type === 'in_channel' ? null : entry.userId,
    });
    entry.originalTs = message.ts;
    return { status: 200, body: { ok: true } };
  }

  // ----- transport -----

  /** POSTs a signed body to the bot's events URL and classifies the reply as Slack does. */
  private async post(body: string, kind: 'form' | 'json'): Promise<DeliveryOutcome> {
    const timestamp = Math.floor(this.workspace.realClock.now() / 1000);
    const headers = {
      // Bolt recognises form bodies only with exactly this content type.
      'Content-Type': kind === 'form' ? 'application/x-www-form-urlencoded' : 'application/json',
      'X-Slack-Request-Timestamp': String(timestamp),
      'X-Slack-Signature': signatureFor(this.options.signingSecret, timestamp, body),
      'User-Agent': 'Slackbot 1.0 (+https://api.slack.com/robots)',
    };

    const url = this.eventsUrl();
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      this.options.logger?.warn({ url, err: error }, 'sandbox delivery to the bot failed');
      return { ok: false, error: timedOut ? 'operation_timeout' : 'dispatch_failed' };
    }

    let text = '';
    try {
      text = await response.text();
    } catch (error) {
      this.options.logger?.warn({ url, err: error }, 'sandbox delivery reply could not be read');
      return { ok: false, error: 'operation_timeout', status: response.status };
    }

    if (response.status !== 200) {
      this.options.logger?.warn(
        { url, status: response.status },
        'bot answered a sandbox delivery with an error',
      );
      const error = response.status >= 500 ? 'http_service_error' : 'http_client_error';
      return { ok: false, error, status: response.status };
    }

    return {
      ok: true,
      status: 200,
      body: text,
      contentType: response.headers.get('content-type') ?? '',
    };
  }

  // ----- lookups -----

  private requireUser(id: string): SandboxUser {
    const user = this.workspace.findUser(id);
    if (!user || user.isBot) {
      const people = this.workspace.users
        .filter((candidate) => !candidate.isBot)
        .map((candidate) => candidate.id);
      throw new SandboxRequestError(
        'user_not_found',
        `No person with id "${id}"; use one of ${people.join(', ')}`,
        404,
      );
    }
    return user;
  }

  private requireMember(channelId: string, user: SandboxUser): SandboxChannel {
    const channel = this.workspace.findChannel(channelId);
    if (!channel) {
      const ids = this.workspace.channels.map((candidate) => candidate.id).join(', ');
      throw new SandboxRequestError(
        'channel_not_found',
        `No channel "${channelId}"; use one of ${ids}`,
        404,
      );
    }
    if (!channel.members.includes(user.id)) {
      throw new SandboxRequestError(
        'not_in_channel',
        `${user.name} is not a member of #${channel.name}`,
        403,
      );
    }
    return channel;
  }

  private requireOpenView(viewId: string, user: SandboxUser): SandboxView {
    const view = this.workspace.getView(viewId);
    if (!view || !view.open || view.userId !== user.id) {
      throw new SandboxRequestError(
        'view_not_found',
        `No open view "${viewId}" for ${user.name}`,
        404,
      );
    }
    return view;
  }

  private payloadUser(user: SandboxUser): Json {
    return { id: user.id, username: user.name, name: user.name, team_id: this.workspace.teamId };
  }

  private slackbotNotice(userId: string, channel: string, text: string): void {
    this.workspace.addMessage({ channel, userId: SLACKBOT, text, ephemeralTo: userId });
  }
}

type StateResult =
  | { ok: true; values: Record<string, Record<string, unknown>> }
  | { ok: false; errors: Record<string, string> };

/**
 * Builds a view's `state.values` from the page's raw input values. Every input
 * block appears, empty ones with a null value, as in Slack. With `enforce`,
 * required inputs and length limits are checked as Slack's client does before
 * it submits.
 */
export function buildState(
  workspace: SandboxWorkspace,
  view: SandboxView,
  raw: RawValues,
  enforce: boolean,
): StateResult {
  const values: Record<string, Record<string, unknown>> = {};
  const errors: Record<string, string> = {};
  const inputs = inputBlocks(view.definition.blocks);

  for (const [blockId, actions] of Object.entries(raw)) {
    const input = inputs.find(({ block }) => block.block_id === blockId);
    const known =
      input &&
      isObject(actions) &&
      Object.keys(actions).every((id) => id === input.element.action_id);
    if (!known)
      errors[blockId] =
        `View ${view.id} has no input with block_id "${blockId}" and those action_ids`;
  }
  if (Object.keys(errors).length > 0) return { ok: false, errors };

  for (const { block, element } of inputs) {
    const blockId = block.block_id as string;
    const actionId = element.action_id as string;
    const rawValue = raw[blockId]?.[actionId] ?? null;
    const state = inputState(workspace, element, rawValue);

    if (state.error) errors[blockId] = state.error;
    else if (enforce && block.optional !== true && state.empty)
      errors[blockId] = 'Please complete this required field.';
    else if (enforce && state.lengthError) errors[blockId] = state.lengthError;

    values[blockId] = { [actionId]: state.value };
  }

  return Object.keys(errors).length > 0 ? { ok: false, errors } : { ok: true, values };
}

interface InputState {
  value: Json;
  empty: boolean;
  error?: string;
  lengthError?: string;
}

function inputState(
  workspace: SandboxWorkspace,
  element: Json,
  rawValue: string | string[] | null,
): InputState {
  const type = element.type as string;

  if (type === 'plain_text_input') {
    const text = typeof rawValue === 'string' && rawValue !== '' ? rawValue : null;
    const length = text ? [...text].length : 0;
    let lengthError: string | undefined;
    if (text && typeof element.min_length === 'number' && length < element.min_length) {
      lengthError = `Please enter at least ${element.min_length} characters.`;
    }
    if (text && typeof element.max_length === 'number' && length > element.max_length) {
      lengthError = `Please enter no more than ${element.max_length} characters.`;
    }
    return { value: { type, value: text }, empty: text === null, lengthError };
  }

  if (type === 'static_select') {
    if (rawValue === null || rawValue === '')
      return { value: { type, selected_option: null }, empty: true };
    const option = optionsOf(element).find((candidate) => candidate.value === rawValue);
    if (!option)
      return {
        value: { type },
        empty: false,
        error: `"${String(rawValue)}" is not one of the options`,
      };
    return { value: { type, selected_option: option }, empty: false };
  }

  if (type === 'users_select') {
    if (rawValue === null || rawValue === '')
      return { value: { type, selected_user: null }, empty: true };
    if (typeof rawValue !== 'string' || !workspace.findUser(rawValue)) {
      return {
        value: { type },
        empty: false,
        error: `"${String(rawValue)}" is not a user of the workspace`,
      };
    }
    return { value: { type, selected_user: rawValue }, empty: false };
  }

  let users: string[] = [];
  if (Array.isArray(rawValue)) users = rawValue;
  else if (rawValue) users = [rawValue];
  const unknown = users.find((id) => !workspace.findUser(id));
  if (unknown)
    return { value: { type }, empty: false, error: `"${unknown}" is not a user of the workspace` };
  return { value: { type, selected_users: users }, empty: users.length === 0 };
}

function optionsOf(element: Json): Json[] {
  if (Array.isArray(element.options)) return element.options as Json[];
  if (Array.isArray(element.option_groups)) {
    return (element.option_groups as Json[]).flatMap((group) => (group.options as Json[]) ?? []);
  }
  return [];
}

function stateOf(action: Json): Json {
  const { type, selected_option, selected_user, selected_users } = action;
  if (type === 'static_select') return { type, selected_option };
  if (type === 'users_select') return { type, selected_user };
  return { type, selected_users };
}

/** Escapes &, < and > as Slack does in message text that people type. */
function escapeText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function actionTs(nowMs: number): string {
  return (nowMs / 1000).toFixed(6);
}

function issuesText(issues: BlockKitIssue[]): string {
  return issues.map(formatIssue).join('; ');
}

