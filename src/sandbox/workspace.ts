import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';

import { systemClock, type Clock } from '../bot/clock.ts';
import { SandboxMessageStore, type StoredMessage } from '../store/sandbox-messages.ts';
import { withGeneratedIds } from './block-kit.ts';

export type { StoredMessage } from '../store/sandbox-messages.ts';

/** A person (or the bot) in the sandbox workspace. */
export interface SandboxUser {
  id: string;
  name: string;
  realName: string;
  displayName: string;
  isBot: boolean;
  isAdmin: boolean;
  /** A guest account: Slack's `is_restricted`. */
  isGuest: boolean;
  tz: string;
  email: string | null;
}

export interface SandboxChannel {
  id: string;
  name: string;
  topic: string;
  purpose: string;
  members: string[];
  /** Unix seconds. */
  created: number;
}

export interface SandboxUserGroup {
  id: string;
  handle: string;
  name: string;
  users: string[];
}

/** A modal as the sandbox stores it, with the view object Slack returns. */
export interface SandboxView {
  id: string;
  userId: string;
  open: boolean;
  rootViewId: string;
  previousViewId: string | null;
  hash: string;
  externalId: string | null;
  /** The view definition as sent by the bot, with generated block and action ids. */
  definition: Record<string, unknown>;
  /** `state.values`: block_id → action_id → value object. */
  values: Record<string, Record<string, unknown>>;
}

/** A change that the page shows live. */
export type WorkspaceChange =
  | { type: 'message'; message: StoredMessage }
  | { type: 'message_deleted'; channel: string; ts: string }
  | { type: 'view_opened' | 'view_updated'; view: PageView }
  | { type: 'view_closed'; viewId: string; userId: string }
  | { type: 'clock'; now: number };

/** A view as the page receives it. */
export interface PageView {
  id: string;
  userId: string;
  rootViewId: string;
  previousViewId: string | null;
  view: Record<string, unknown>;
}

/** One Web API call the double received, for tests that scan payloads. */
export interface WebApiCall {
  method: string;
  /** The parsed arguments, without the token. */
  args: Record<string, unknown>;
  /** The HTTP status the double replied with. */
  status: number;
  ok: boolean;
  error?: string;
  /** Milliseconds since the epoch on the sandbox clock. */
  at: number;
}

export interface FaultSpec {
  method: string;
  status: 429 | 500 | 503;
  /** Seconds for the Retry-After header of a 429 (default 1). */
  retryAfterSeconds?: number;
  /** How many of the next calls of `method` fail. */
  times: number;
}

export interface NewMessage {
  channel: string;
  threadTs?: string | null;
  userId: string;
  botId?: string | null;
  text: string;
  blocks?: unknown[] | null;
  ephemeralTo?: string | null;
  replyBroadcast?: boolean;
  metadata?: unknown;
}

export interface SandboxWorkspaceOptions {
  /** SQLite file for the channel history, or ':memory:'. */
  dbPath: string;
  botUserId: string;
  botId: string;
  teamId: string;
  /** The bot's clock: message timestamps follow it when the sandbox moves time. */
  clock: Clock;
  /** Wall-clock time for trigger expiry, which Slack measures in real seconds. */
  realClock?: Clock;
  appId?: string;
}

export type TriggerExchange =
  | { ok: true; userId: string; viewId: string | null }
  | { ok: false; error: 'invalid_trigger_id' | 'expired_trigger_id' | 'exchanged_trigger_id' };

interface Trigger {
  userId: string;
  issuedAt: number;
  exchanged: boolean;
  viewId: string | null;
}

/** A trigger_id is valid for 3 seconds and for one exchange (views.open or views.push). */
export const TRIGGER_LIFETIME_MS = 3000;

/** Slack keeps at most 3 views in a modal's stack (`push_limit_reached`). */
export const MAX_VIEW_STACK = 3;

/**
 * The state of the sandbox Slack workspace: its people, channels and user
 * group, the channel history (persisted), open modals, trigger ids, the Web
 * API calls received and the faults queued for them. Changes are published
 * to subscribers so the page updates live.
 */
export class SandboxWorkspace {
  readonly teamId: string;
  readonly teamDomain = 'sandbox';
  readonly teamName = 'runbook-bot sandbox';
  readonly botUserId: string;
  readonly botId: string;
  readonly appId: string;
  readonly clock: Clock;
  readonly realClock: Clock;
  readonly users: SandboxUser[];
  readonly channels: SandboxChannel[];
  readonly userGroups: SandboxUserGroup[];
  readonly calls: WebApiCall[] = [];

  private readonly store: SandboxMessageStore;
  private readonly emitter = new EventEmitter();
  private readonly views = new Map<string, SandboxView>();
  private readonly triggers = new Map<string, Trigger>();
  private readonly faults: FaultSpec[] = [];
  private lastTsMicros: number;
  private idCounter = 0;

  constructor(options: SandboxWorkspaceOptions) {
    this.teamId = options.teamId;
    this.botUserId = options.botUserId;
    this.botId = options.botId;
    this.appId = options.appId ?? 'A0SBXAPP';
    this.clock = options.clock;
    this.realClock = options.realClock ?? systemClock;
    this.store = new SandboxMessageStore(options.dbPath);
    this.emitter.setMaxListeners(0);

    const maxTs = this.store.maxTs();
    this.lastTsMicros = maxTs === null ? 0 : tsToMicros(maxTs);

    this.users = seedUsers(this.botUserId);
    const created = Math.floor(this.clock.now() / 1000);
    this.channels = seedChannels(this.botUserId, created);
    this.userGroups = [
      {
        id: 'S0SBXRESP',
        handle: 'responders',
        name: 'Responders',
        users: ['U0SBXALEX', 'U0SBXSAM'],
      },
    ];
  }

  // ----- directory -----

  findUser(id: string): SandboxUser | undefined {
    return this.users.find((user) => user.id === id);
  }

  /** Finds a channel by id, by name, or by `#name`, as chat.postMessage accepts. */
  findChannel(idOrName: string): SandboxChannel | undefined {
    const name = idOrName.startsWith('#') ? idOrName.slice(1) : idOrName;
    return this.channels.find((channel) => channel.id === idOrName || channel.name === name);
  }

  findUserGroup(id: string): SandboxUserGroup | undefined {
    return this.userGroups.find((group) => group.id === id);
  }

  isMember(channelId: string, userId: string): boolean {
    return this.findChannel(channelId)?.members.includes(userId) ?? false;
  }

  // ----- messages -----

  /** Returns a new message ts on the sandbox clock, greater than every ts issued before. */
  nextTs(): string {
    const micros = Math.max(Math.floor(this.clock.now() * 1000), this.lastTsMicros + 1);
    this.lastTsMicros = micros;
    return microsToTs(micros);
  }

  addMessage(input: NewMessage): StoredMessage {
    const message: StoredMessage = {
      channel: input.channel,
      ts: this.nextTs(),
      threadTs: input.threadTs ?? null,
      userId: input.userId,
      botId: input.botId ?? null,
      text: input.text,
      blocks: input.blocks ? withGeneratedIds(input.blocks) : null,
      ephemeralTo: input.ephemeralTo ?? null,
      replyBroadcast: input.replyBroadcast ?? false,
      metadata: input.metadata ?? null,
      createdAt: this.clock.now(),
      updatedAt: null,
    };

    this.store.insert(message);
    this.publish({ type: 'message', message });
    return message;
  }

  /** Replaces a message's text and blocks; returns the updated message or undefined. */
  editMessage(
    channel: string,
    ts: string,
    changes: { text: string; blocks: unknown[] | null; metadata?: unknown },
  ): StoredMessage | undefined {
    const blocks = changes.blocks ? withGeneratedIds(changes.blocks) : null;
    const updatedAt = this.clock.now();
    const updated = this.store.update(channel, ts, {
      text: changes.text,
      blocks,
      metadata: changes.metadata,
      updatedAt,
    });
    if (!updated) return undefined;

    const message = this.store.get(channel, ts) as StoredMessage;
    this.publish({ type: 'message', message });
    return message;
  }

  removeMessage(channel: string, ts: string): boolean {
    const removed = this.store.remove(channel, ts);
    if (removed) this.publish({ type: 'message_deleted', channel, ts });
    return removed;
  }

  getMessage(channel: string, ts: string): StoredMessage | undefined {
    return this.store.get(channel, ts);
  }

  listMessages(): StoredMessage[] {
    return this.store.list();
  }

  /** Returns the message in the shape of Slack's Web API responses and interaction payloads. */
  slackMessage(message: StoredMessage): Record<string, unknown> {
    const slack: Record<string, unknown> = {
      type: 'message',
      ts: message.ts,
      user: message.userId,
      text: message.text,
      team: this.teamId,
    };

    if (message.botId) {
      slack.bot_id = message.botId;
      slack.app_id = this.appId;
      slack.bot_profile = {
        id: message.botId,
        app_id: this.appId,
        name: 'runbook-bot',
        team_id: this.teamId,
      };
    }
    if (message.blocks) slack.blocks = message.blocks;
    if (message.metadata) slack.metadata = message.metadata;
    if (message.updatedAt !== null) {
      slack.edited = { user: message.userId, ts: microsToTs(Math.floor(message.updatedAt * 1000)) };
    }

    if (message.threadTs) {
      slack.thread_ts = message.threadTs;
      const parent = this.store.get(message.channel, message.threadTs);
      if (parent) slack.parent_user_id = parent.userId;
      if (message.replyBroadcast) slack.subtype = 'thread_broadcast';
    } else {
      Object.assign(slack, this.threadSummary(message));
    }

    return slack;
  }

  private threadSummary(parent: StoredMessage): Record<string, unknown> {
    const replies = this.store
      .list()
      .filter((m) => m.channel === parent.channel && m.threadTs === parent.ts && !m.ephemeralTo);
    if (replies.length === 0) return {};

    const replyUsers = [...new Set(replies.map((reply) => reply.userId))];
    return {
      thread_ts: parent.ts,
      reply_count: replies.length,
      reply_users: replyUsers,
      reply_users_count: replyUsers.length,
      latest_reply: replies[replies.length - 1].ts,
    };
  }

  // ----- trigger ids -----

  /** Issues a trigger_id for an interaction by `userId`, optionally from inside a view. */
  issueTrigger(userId: string, viewId: string | null = null): string {
    this.pruneTriggers();
    const issuedAt = this.realClock.now();
    // Slack's trigger ids look like "12345.98765.abcd2358fdea".
    const id = `${++this.idCounter}.${Math.floor(issuedAt / 1000)}.${randomHex(16)}`;
    this.triggers.set(id, { userId, issuedAt, exchanged: false, viewId });
    return id;
  }

  /** Uses up a trigger_id; each can open or push one view, within 3 seconds of real time. */
  exchangeTrigger(triggerId: string): TriggerExchange {
    const trigger = this.triggers.get(triggerId);
    if (!trigger) return { ok: false, error: 'invalid_trigger_id' };
    if (trigger.exchanged) return { ok: false, error: 'exchanged_trigger_id' };
    if (this.realClock.now() - trigger.issuedAt > TRIGGER_LIFETIME_MS) {
      return { ok: false, error: 'expired_trigger_id' };
    }

    trigger.exchanged = true;
    return { ok: true, userId: trigger.userId, viewId: trigger.viewId };
  }

  private pruneTriggers(): void {
    const cutoff = this.realClock.now() - 10 * 60 * 1000;
    for (const [id, trigger] of this.triggers) {
      if (trigger.issuedAt < cutoff) this.triggers.delete(id);
    }
  }

  // ----- views -----

  /** Opens a new modal stack for the user, closing any stack the user had open. */
  openView(userId: string, definition: Record<string, unknown>): SandboxView {
    for (const view of this.openStack(userId)) this.closeOne(view);

    const id = this.newViewId();
    const view = this.createView(id, userId, definition, id, null);
    this.publish({ type: 'view_opened', view: this.pageView(view) });
    return view;
  }

  /** Pushes a view on top of the stack that `belowViewId` belongs to. */
  pushView(belowViewId: string, definition: Record<string, unknown>): SandboxView {
    const below = this.views.get(belowViewId) as SandboxView;
    const view = this.createView(
      this.newViewId(),
      below.userId,
      definition,
      below.rootViewId,
      below.id,
    );
    this.publish({ type: 'view_opened', view: this.pageView(view) });
    return view;
  }

  /** Replaces a view's definition, keeping input values whose block_id and action_id remain. */
  updateView(viewId: string, definition: Record<string, unknown>): SandboxView {
    const view = this.views.get(viewId) as SandboxView;
    view.definition = { ...definition, blocks: withGeneratedIds(definition.blocks as unknown[]) };
    view.externalId = (definition.external_id as string | undefined) ?? view.externalId;
    view.hash = this.newHash();
    this.publish({ type: 'view_updated', view: this.pageView(view) });
    return view;
  }

  /** Stores the input values the user entered, as `state.values`. */
  setViewValues(viewId: string, values: Record<string, Record<string, unknown>>): void {
    const view = this.views.get(viewId);
    if (view) view.values = values;
  }

  /** Closes one view, or with `all` its whole stack; returns the views closed. */
  closeView(viewId: string, all = false): SandboxView[] {
    const view = this.views.get(viewId);
    if (!view || !view.open) return [];

    const stack = this.openStack(view.userId);
    const closing = all ? stack : stack.slice(stack.indexOf(view));
    for (const closed of closing) this.closeOne(closed);
    return closing;
  }

  getView(viewId: string): SandboxView | undefined {
    return this.views.get(viewId);
  }

  findViewByExternalId(externalId: string): SandboxView | undefined {
    return [...this.views.values()].find((view) => view.externalId === externalId);
  }

  /** Returns the user's open views, root first. */
  openStack(userId: string): SandboxView[] {
    return [...this.views.values()].filter((view) => view.userId === userId && view.open);
  }

  /** Returns every open view in the shape the page receives. */
  openViews(): PageView[] {
    return [...this.views.values()].filter((view) => view.open).map((view) => this.pageView(view));
  }

  /** Returns the view object that Slack's views.* responses and payloads contain. */
  slackView(view: SandboxView): Record<string, unknown> {
    const definition = view.definition;
    return {
      id: view.id,
      team_id: this.teamId,
      type: definition.type,
      blocks: definition.blocks,
      private_metadata: definition.private_metadata ?? '',
      callback_id: definition.callback_id ?? '',
      state: { values: view.values },
      hash: view.hash,
      title: definition.title,
      clear_on_close: definition.clear_on_close ?? false,
      notify_on_close: definition.notify_on_close ?? false,
      close: definition.close ?? null,
      submit: definition.submit ?? null,
      previous_view_id: view.previousViewId,
      root_view_id: view.rootViewId,
      app_id: this.appId,
      external_id: view.externalId ?? '',
      app_installed_team_id: this.teamId,
      bot_id: this.botId,
    };
  }

  private createView(
    id: string,
    userId: string,
    definition: Record<string, unknown>,
    rootViewId: string,
    previousViewId: string | null,
  ): SandboxView {
    const view: SandboxView = {
      id,
      userId,
      open: true,
      rootViewId,
      previousViewId,
      hash: this.newHash(),
      externalId: (definition.external_id as string | undefined) ?? null,
      definition: { ...definition, blocks: withGeneratedIds(definition.blocks as unknown[]) },
      values: {},
    };
    this.views.set(id, view);
    return view;
  }

  private closeOne(view: SandboxView): void {
    view.open = false;
    this.publish({ type: 'view_closed', viewId: view.id, userId: view.userId });
  }

  private pageView(view: SandboxView): PageView {
    return {
      id: view.id,
      userId: view.userId,
      rootViewId: view.rootViewId,
      previousViewId: view.previousViewId,
      view: this.slackView(view),
    };
  }

  private newViewId(): string {
    return `V0SBX${String(++this.idCounter).padStart(6, '0')}`;
  }

  private newHash(): string {
    return `${Math.floor(this.clock.now() / 1000)}.${randomHex(8)}`;
  }

  // ----- Web API calls and faults -----

  recordCall(call: WebApiCall): void {
    this.calls.push(call);
  }

  /** Returns the recorded calls of one method, oldest first. */
  callsOf(method: string): WebApiCall[] {
    return this.calls.filter((call) => call.method === method);
  }

  /** Makes the next `times` calls of `method` fail with an HTTP error, as Slack's would. */
  injectFault(spec: FaultSpec): void {
    if (typeof spec.method !== 'string' || spec.method === '') {
      throw new RangeError(
        'injectFault needs a Web API method name such as "chat.postMessage", ' +
          `got ${String(spec.method)}`,
      );
    }
    if (![429, 500, 503].includes(spec.status)) {
      throw new RangeError(
        `injectFault status must be 429, 500 or 503, got ${String(spec.status)}`,
      );
    }
    if (!Number.isInteger(spec.times) || spec.times < 1) {
      throw new RangeError(
        `injectFault times must be a positive integer, got ${String(spec.times)}`,
      );
    }
    const retryAfter = spec.retryAfterSeconds;
    if (retryAfter !== undefined && (!Number.isInteger(retryAfter) || retryAfter < 0)) {
      throw new RangeError(
        'injectFault retryAfterSeconds must be a whole number of seconds, ' +
          `got ${String(retryAfter)}`,
      );
    }

    this.faults.push({ ...spec });
  }

  /** Takes one queued failure for `method`, or returns undefined when none is queued. */
  takeFault(method: string): FaultSpec | undefined {
    const fault = this.faults.find((candidate) => candidate.method === method);
    if (!fault) return undefined;

    fault.times -= 1;
    if (fault.times === 0) this.faults.splice(this.faults.indexOf(fault), 1);
    return { ...fault };
  }

  // ----- live updates -----

  /** Calls `listener` for every change; returns the function that unsubscribes it. */
  subscribe(listener: (change: WorkspaceChange) => void): () => void {
    this.emitter.on('change', listener);
    return () => this.emitter.off('change', listener);
  }

  publish(change: WorkspaceChange): void {
    this.emitter.emit('change', change);
  }

  close(): void {
    this.emitter.removeAllListeners();
    this.store.close();
  }
}

function seedUsers(botUserId: string): SandboxUser[] {
  const person = (id: string, name: string, realName: string, tz: string, isGuest = false) => ({
    id,
    name,
    realName,
    displayName: realName.split(' ')[0],
    isBot: false,
    isAdmin: false,
    isGuest,
    tz,
    email: `${name}@sandbox.example`,
  });

  return [
    { ...person('U0SBXALEX', 'alex', 'Alex Rivera', 'Europe/Berlin'), isAdmin: true },
    person('U0SBXSAM', 'sam', 'Sam Okafor', 'America/New_York'),
    person('U0SBXGUEST', 'gus', 'Gus Guest', 'UTC', true),
    {
      id: botUserId,
      name: 'runbook-bot',
      realName: 'runbook-bot',
      displayName: 'runbook-bot',
      isBot: true,
      isAdmin: false,
      isGuest: false,
      tz: 'UTC',
      email: null,
    },
    {
      id: 'USLACKBOT',
      name: 'slackbot',
      realName: 'Slackbot',
      displayName: 'Slackbot',
      isBot: true,
      isAdmin: false,
      isGuest: false,
      tz: 'UTC',
      email: null,
    },
  ];
}

function seedChannels(botUserId: string, created: number): SandboxChannel[] {
  return [
    {
      id: 'C0SBXINCIDENTS',
      name: 'incidents',
      topic: 'Security incidents: type /incident secret-key to start one',
      purpose: 'Incident threads run by runbook-bot',
      members: ['U0SBXALEX', 'U0SBXSAM', 'U0SBXGUEST', botUserId],
      created,
    },
    {
      id: 'C0SBXOPS',
      name: 'ops',
      topic: 'Backups, restore tests and audits',
      purpose: 'Scheduled operations work',
      members: ['U0SBXALEX', 'U0SBXSAM', botUserId],
      created,
    },
  ];
}

/** Parses a Slack ts ("1700000000.000123") into microseconds since the epoch. */
export function tsToMicros(ts: string): number {
  const [seconds, fraction = '0'] = ts.split('.');
  return Number(seconds) * 1_000_000 + Number(fraction.padEnd(6, '0').slice(0, 6));
}

export function microsToTs(micros: number): string {
  const seconds = Math.floor(micros / 1_000_000);
  const fraction = String(micros % 1_000_000).padStart(6, '0');
  return `${seconds}.${fraction}`;
}

function randomHex(length: number): string {
  return randomBytes(Math.ceil(length / 2))
    .toString('hex')
    .slice(0, length);
}
