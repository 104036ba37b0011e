import type { WebClient } from '@slack/web-api';

import { sendPagerDutyEvent, type PagerDutySeverity } from '../actions/pagerduty.ts';
import { ActionError } from './errors.ts';
import type { Engine } from '../runbooks/engine.ts';
import type { OutboxRow } from '../store/outbox.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import type { DeliveryResult } from './outbox-worker.ts';

const SEVERITY: Record<string, PagerDutySeverity> = { critical: 'critical', high: 'error', medium: 'warning', low: 'info' };

/**
 * Delivers PagerDuty outbox messages through the Events API v2. The dedup
 * key is the incident's own, so a retry after a crash or an outage updates
 * the same PagerDuty alert instead of opening a second one.
 */
export class PagerDutyPublisher {
  constructor(
    private readonly deps: { engine: Engine; client: WebClient; config: Config; logger: Logger; ca?: string; timeoutMs?: number },
  ) {}

  /** Returns the routing key for a runbook, or undefined when paging is off for it. */
  routingKeyFor(runbookId: string): string | undefined {
    const { pagerDuty } = this.deps.config;
    return pagerDuty.routingKeys[runbookId] ?? pagerDuty.routingKey;
  }

  readonly deliver = async (message: OutboxRow): Promise<DeliveryResult> => {
    if (message.incidentId === null) return this.deliverOps(message);
    let view = this.deps.engine.view(message.incidentId!);
    // The page and the Slack thread go out at the same moment. Wait a little
    // for the thread, so the page can link to it; never hold a page for Slack.
    for (let waited = 0; !view.incident.messageTs && waited < 2000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      view = this.deps.engine.view(message.incidentId!);
    }
    const { incident } = view;
    const routingKey = this.routingKeyFor(incident.runbookId);
    if (!routingKey) return { kind: 'failed', error: 'PAGERDUTY_ROUTING_KEY is not set' };
    const action = message.payload.action === 'resolve' ? 'resolve' : 'trigger';
    const severity = message.payload.reason === 'declared' ? (SEVERITY[String(message.payload.severity)] ?? 'critical') : 'critical';
    const reason = describeReason(String(message.payload.reason));
    const thread = await this.threadLink(incident.channelId, incident.messageTs);
    try {
      const result = await sendPagerDutyEvent({
        server: this.deps.config.pagerDuty.server,
        routingKey,
        timeoutMs: this.deps.timeoutMs ?? 15_000,
        logger: this.deps.logger.child({ incidentId: incident.id, outboxId: message.id }),
        ca: this.deps.ca,
        event: {
          action,
          dedupKey: incident.dedupKey,
          summary: `[${incident.runbookId}] ${incident.title}${incident.summary ? `: ${incident.summary}` : ''}`.slice(0, 1024),
          source: 'runbook-bot',
          severity,
          customDetails: {
            incident: incident.id,
            runbook: incident.runbookId,
            reason,
            declared_by: incident.declaredBy,
            steps: Object.fromEntries(view.steps.map((step) => [step.def.id, step.row.status])),
          },
          links: thread ? [{ href: thread, text: `Slack thread of incident #${incident.id}` }] : [],
        },
      });
      if (result.outcome === 'accepted') return { kind: 'delivered', result: { dedupKey: result.dedupKey, action } };
      if (result.outcome === 'rejected') return { kind: 'failed', error: `PagerDuty rejected the event (HTTP ${result.status}): ${result.message}` };
      return { kind: 'retry', error: result.reason, retryAfterMs: result.retryAfterMs };
    } catch (error) {
      if (error instanceof ActionError) return { kind: 'failed', error: error.message };
      throw error;
    }
  };

  /**
   * Sends or resolves a page outside any incident, such as a failed backup,
   * through the routing key of its `runbook` (backup) or the default one.
   */
  private async deliverOps(message: OutboxRow): Promise<DeliveryResult> {
    const routingKey = this.routingKeyFor(String(message.payload.runbook ?? 'backup'));
    if (!routingKey) return { kind: 'failed', error: 'PAGERDUTY_ROUTING_KEY is not set' };
    const action = message.payload.action === 'resolve' ? 'resolve' : 'trigger';
    const result = await sendPagerDutyEvent({
      server: this.deps.config.pagerDuty.server,
      routingKey,
      timeoutMs: this.deps.timeoutMs ?? 15_000,
      logger: this.deps.logger.child({ outboxId: message.id }),
      ca: this.deps.ca,
      event: {
        action,
        dedupKey: String(message.payload.dedupKey),
        summary: String(message.payload.summary).slice(0, 1024),
        source: 'runbook-bot',
        severity: message.payload.severity as PagerDutySeverity,
      },
    });
    if (result.outcome === 'accepted') return { kind: 'delivered', result: { dedupKey: result.dedupKey, action } };
    if (result.outcome === 'rejected') return { kind: 'failed', error: `PagerDuty rejected the event (HTTP ${result.status}): ${result.message}` };
    return { kind: 'retry', error: result.reason, retryAfterMs: result.retryAfterMs };
  }

  private async threadLink(channel: string, ts: string | null): Promise<string | undefined> {
    if (!ts) return undefined;
    try {
      const response = await this.deps.client.chat.getPermalink({ channel, message_ts: ts });
      return response.permalink && /^https?:\/\//.test(response.permalink) ? response.permalink : undefined;
    } catch (error) {
      this.deps.logger.warn({ channelId: channel, ts, err: error }, 'permalink lookup for PagerDuty failed');
      return undefined;
    }
  }
}

function describeReason(reason: string): string {
  switch (reason) {
    case 'declared':
      return 'incident declared';
    case 'deadline_missed':
      return 'a deadline was missed';
    case 'page_again':
      return 'paged again from Slack';
    case 'resolved':
      return 'incident resolved';
    case 'cancelled':
      return 'incident cancelled';
    default:
      return reason;
  }
}
