import { createHash } from 'node:crypto';

import {
  WebAPIHTTPError,
  WebAPIPlatformError,
  WebAPIRateLimitedError,
  WebAPIRequestError,
  type ChatPostMessageArguments,
  type WebClient,
} from '@slack/web-api';

import type { Engine } from '../runbooks/engine.ts';
import { renderChecklist, renderIncidentMessage, type SlackMessage } from '../runbooks/render.ts';
import type { Db } from '../store/db.ts';
import * as incidents from '../store/incidents.ts';
import type { OutboxRow } from '../store/outbox.ts';
import type { Logger } from './logger.ts';
import type { DeliveryResult } from './outbox-worker.ts';

/**
 * Delivers Slack outbox messages: posts the incident message and its
 * checklist, updates them from the current state, and posts thread messages.
 * Updates render at delivery time, so the latest state always wins.
 */
export class SlackPublisher {
  constructor(
    private readonly deps: { db: Db; engine: Engine; client: WebClient; logger: Logger },
  ) {}

  readonly deliver = async (message: OutboxRow): Promise<DeliveryResult> => {
    try {
      return await this.deliverKind(message);
    } catch (error) {
      return classifySlackError(error);
    }
  };

  private async deliverKind(message: OutboxRow): Promise<DeliveryResult> {
    const incidentId = message.incidentId;
    const mark = { outbox_id: message.id };
    if (incidentId === null) {
      const channel = String(message.payload.channel);
      if (message.uncertain && (await this.findPosted(channel, undefined, mark, message.createdAt))) return { kind: 'delivered', result: { foundAfterRestart: true } };
      await this.post(channel, message.payload.message as SlackMessage, { mark });
      return { kind: 'delivered' };
    }
    const incident = incidents.getIncident(this.deps.db, incidentId);
    if (!incident) return { kind: 'failed', error: `incident ${incidentId} no longer exists` };
    switch (message.kind) {
      case 'post_incident':
        await this.ensureIncidentMessage(incident, message.uncertain);
        await this.syncChecklist(incident, message.uncertain);
        return { kind: 'delivered' };
      case 'refresh_incident':
        if (!incident.messageTs) return { kind: 'retry', error: 'incident message not posted yet' };
        await this.updateIncidentMessage(incident);
        return { kind: 'delivered' };
      case 'refresh_checklist':
        if (!incident.messageTs) return { kind: 'retry', error: 'incident message not posted yet' };
        await this.syncChecklist(incident, message.uncertain);
        return { kind: 'delivered' };
      case 'thread_post': {
        if (!incident.messageTs) return { kind: 'retry', error: 'incident message not posted yet' };
        // A process that died mid-post may have posted already: look first.
        const found = message.uncertain ? await this.findPosted(incident.channelId, incident.messageTs, mark, message.createdAt) : undefined;
        if (found) return { kind: 'delivered', result: { ts: found, foundAfterRestart: true } };
        const result = await this.post(incident.channelId, message.payload.message as SlackMessage, { threadTs: incident.messageTs, broadcast: message.payload.broadcast === true, mark });
        return { kind: 'delivered', result: { ts: result } };
      }
      default:
        return { kind: 'failed', error: `unknown Slack outbox kind ${message.kind}` };
    }
  }

  private async ensureIncidentMessage(incident: incidents.IncidentRow, uncertain: boolean): Promise<void> {
    if (incident.messageTs) return;
    const rendered = renderIncidentMessage(this.deps.engine.view(incident.id));
    const mark = { incident_id: incident.id, part: 'message' };
    const ts = (uncertain ? await this.findPosted(incident.channelId, undefined, mark, incident.declaredAt) : undefined) ?? (await this.post(incident.channelId, rendered, { mark }));
    incidents.setMessageTs(this.deps.db, incident.id, ts);
    incidents.setMessageHash(this.deps.db, incident.id, hashOf(rendered));
    incident.messageTs = ts;
    this.deps.logger.info({ incidentId: incident.id, channelId: incident.channelId, ts }, 'incident message posted');
  }

  private async updateIncidentMessage(incident: incidents.IncidentRow): Promise<void> {
    const rendered = renderIncidentMessage(this.deps.engine.view(incident.id));
    const hash = hashOf(rendered);
    if (incidents.getMessageHash(this.deps.db, incident.id) === hash) return;
    await this.deps.client.chat.update({ channel: incident.channelId, ts: incident.messageTs!, text: rendered.text, blocks: rendered.blocks });
    incidents.setMessageHash(this.deps.db, incident.id, hash);
  }

  /** Posts checklist parts that have no message yet and updates the ones that changed. */
  private async syncChecklist(incident: incidents.IncidentRow, uncertain = false): Promise<void> {
    const parts = renderChecklist(this.deps.engine.view(incident.id));
    const posted = new Map(incidents.listChecklistMessages(this.deps.db, incident.id).map((part) => [part.chunk, part]));
    for (const [chunk, rendered] of parts.entries()) {
      const hash = hashOf(rendered);
      const existing = posted.get(chunk);
      if (existing?.ts) {
        if (existing.renderHash === hash) continue;
        await this.deps.client.chat.update({ channel: incident.channelId, ts: existing.ts, text: rendered.text, blocks: rendered.blocks });
        incidents.saveChecklistMessage(this.deps.db, incident.id, chunk, existing.ts, hash);
      } else {
        const mark = { incident_id: incident.id, part: `checklist-${chunk}` };
        const found = uncertain ? await this.findPosted(incident.channelId, incident.messageTs!, mark, incident.declaredAt) : undefined;
        const ts = found ?? (await this.post(incident.channelId, rendered, { threadTs: incident.messageTs!, mark }));
        // A part found after a restart may show older state: store no hash, so the next sync updates it.
        incidents.saveChecklistMessage(this.deps.db, incident.id, chunk, ts, found ? '' : hash);
      }
    }
  }

  private async post(
    channel: string,
    message: SlackMessage,
    options: { threadTs?: string; broadcast?: boolean; mark: Record<string, string | number> },
  ): Promise<string> {
    const { threadTs, broadcast } = options;
    const response = await this.deps.client.chat.postMessage({
      channel,
      text: message.text,
      blocks: message.blocks,
      ...(threadTs ? { thread_ts: threadTs, ...(broadcast ? { reply_broadcast: true } : {}) } : {}),
      // The mark lets a restarted bot find a post it may have made before it died.
      metadata: { event_type: POST_MARK_EVENT, event_payload: options.mark },
      unfurl_links: false,
      unfurl_media: false,
    } as ChatPostMessageArguments);
    return String(response.ts);
  }

  /** Finds a message this bot posted with `mark`, in a thread or among the channel's recent messages. */
  /**
   * Looks for a post carrying `mark` in a thread, or in the channel since
   * `since`, page by page, so a busy channel cannot push it out of view.
   */
  private async findPosted(channel: string, threadTs: string | undefined, mark: Record<string, string | number>, since: number): Promise<string | undefined> {
    // A minute of slack for clocks that differ between the bot and Slack.
    const oldest = (Math.max(0, since - 60_000) / 1000).toFixed(6);
    let cursor: string | undefined;
    for (let page = 0; page < MAX_SEARCH_PAGES; page++) {
      const response = threadTs
        ? await this.deps.client.conversations.replies({ channel, ts: threadTs, include_all_metadata: true, limit: 200, cursor })
        : await this.deps.client.conversations.history({ channel, oldest, include_all_metadata: true, limit: 200, cursor });
      const messages = (response.messages ?? []) as Array<{ ts?: string; metadata?: { event_type?: string; event_payload?: Record<string, unknown> } }>;
      const found = messages.find(
        (candidate) =>
          candidate.metadata?.event_type === POST_MARK_EVENT &&
          Object.entries(mark).every(([key, value]) => candidate.metadata?.event_payload?.[key] === value),
      );
      if (found?.ts) {
        this.deps.logger.info({ channelId: channel, ts: found.ts, mark }, 'post found after a restart; not posted again');
        return found.ts;
      }
      cursor = response.response_metadata?.next_cursor || undefined;
      if (!cursor) return undefined;
    }
    // NOTE: a post older than MAX_SEARCH_PAGES pages of traffic since the crash is posted again.
    this.deps.logger.warn({ channelId: channel, mark, pages: MAX_SEARCH_PAGES }, 'post not found within the search limit; posting again');
    return undefined;
  }
}

/** Pages of 200 messages searched for a post that may have landed before a crash. */
const MAX_SEARCH_PAGES = 25;

/** Event type of the message metadata that marks the bot's posts. */
const POST_MARK_EVENT = 'runbook_bot_post';

function hashOf(message: SlackMessage): string {
  return createHash('sha256').update(JSON.stringify(message)).digest('hex').slice(0, 16);
}

/** Sorts a Web API failure into retry (network, 429, 5xx) or failed (everything Slack refused). */
export function classifySlackError(error: unknown): DeliveryResult {
  if (error instanceof WebAPIRateLimitedError) {
    return { kind: 'retry', error: 'Slack rate limit (429)', retryAfterMs: error.retryAfter * 1000 };
  }
  if (error instanceof WebAPIHTTPError) {
    return error.statusCode >= 500 || error.statusCode === 429
      ? { kind: 'retry', error: `Slack HTTP ${error.statusCode}` }
      : { kind: 'failed', error: `Slack HTTP ${error.statusCode}` };
  }
  if (error instanceof WebAPIRequestError) return { kind: 'retry', error: `Slack unreachable: ${error.original?.message ?? error.message}` };
  if (error instanceof WebAPIPlatformError) {
    const code = String(error.data.error);
    if (code === 'ratelimited' || code === 'internal_error' || code === 'fatal_error' || code === 'service_unavailable') {
      return { kind: 'retry', error: `Slack error ${code}` };
    }
    // Everything else (channel_not_found, invalid_blocks, invalid_auth, ...) no retry can fix.
    return { kind: 'failed', error: `Slack error ${code}` };
  }
  return { kind: 'retry', error: error instanceof Error ? error.message : String(error) };
}
