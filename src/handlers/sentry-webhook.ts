import type { IncomingMessage, ServerResponse } from 'node:http';

import type { CustomRoute } from '@slack/bolt';

import { ActionError } from '../bot/errors.ts';
import { findAlertByRuleName } from '../actions/sentry-alerts.ts';
import { classifySentryWebhook, verifySentrySignature, type SentryWebhookSummary } from '../actions/sentry-webhook.ts';
import { escapeText, truncate } from '../runbooks/mrkdwn.ts';
import { ACTION_IDS, type SlackMessage } from '../runbooks/render.ts';
import type { HandlerDeps } from './deps.ts';

const MAX_BODY_BYTES = 1_000_000;

/**
 * `POST /webhooks/sentry`: verifies Sentry-Hook-Signature over the raw body,
 * records the alert and replies at once (Sentry waits one second at most);
 * the channel message is delivered afterwards through the outbox. A bad or
 * missing signature gets 401 and is logged with its source address only.
 */
export interface SentryWebhookDeps extends HandlerDeps {
  secret: string | undefined;
  channel: string | undefined;
  now: () => number;
}

/** Creates the route; `deps` is read per request, because Bolt needs routes before the engine exists. */
export function sentryWebhookRoute(deps: () => SentryWebhookDeps): CustomRoute {
  return {
    path: '/webhooks/sentry',
    method: ['POST'],
    handler: (req: IncomingMessage, res: ServerResponse) => {
      handle(req, res, deps()).catch((error: unknown) => {
        deps().logger.error({ err: error }, 'Sentry webhook failed');
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    },
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: SentryWebhookDeps): Promise<void> {
  const remoteAddress = req.socket.remoteAddress;
  const logger = deps.logger.child({ route: '/webhooks/sentry', remoteAddress, requestId: req.headers['request-id'] });
  const reply = (status: number, body: Record<string, unknown>) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (!deps.secret) {
    logger.warn('Sentry webhook received but SENTRY_WEBHOOK_SECRET is not set');
    return reply(503, { error: 'Sentry webhooks are off: set SENTRY_WEBHOOK_SECRET to the integration client secret' });
  }

  let raw: Buffer;
  try {
    raw = await readRaw(req);
  } catch {
    logger.warn('Sentry webhook body too large or unreadable');
    return reply(413, { error: `body larger than ${MAX_BODY_BYTES} bytes` });
  }
  const signature = req.headers['sentry-hook-signature'];
  if (!verifySentrySignature(raw, Array.isArray(signature) ? signature[0] : signature, deps.secret)) {
    logger.warn({ hasSignature: signature !== undefined }, 'Sentry webhook signature invalid');
    return reply(401, { error: 'invalid or missing sentry-hook-signature' });
  }

  let summary: SentryWebhookSummary;
  try {
    summary = classifySentryWebhook(req.headers, JSON.parse(raw.toString('utf8')));
  } catch (error) {
    const message = error instanceof ActionError ? error.message : 'body is not JSON';
    logger.warn({ error: message }, 'Sentry webhook rejected');
    return reply(400, { error: message });
  }

  const alert = summary.ruleName ? findAlertByRuleName(summary.resource, summary.ruleName) : undefined;
  const alerting = alert && summary.action !== 'resolved';
  const runbookId = alerting && alert.response.runbook && deps.runbooks.find(alert.response.runbook) ? alert.response.runbook : null;
  const requestHeader = req.headers['request-id'];
  const requestId = typeof requestHeader === 'string' && /^[\w-]{1,100}$/.test(requestHeader) ? requestHeader : undefined;
  const { id: eventId, replay } = deps.engine.recordAlert(
    { source: 'sentry', receivedAt: deps.now(), resource: summary.resource, alert: alert?.id ?? null, matchedRunbook: runbookId, summary: { ...summary }, requestId },
    alerting ? deps.channel : undefined,
    alerting ? alertMessage(summary, alert.title, runbookId, alert.response.reason) : undefined,
  );
  if (replay) {
    logger.info({ eventId }, 'Sentry webhook already received; ignored');
    return reply(200, { ok: true, eventId, duplicate: true });
  }
  logger.info({ eventId, resource: summary.resource, alert: alert?.id ?? null, runbookId }, alerting ? 'Sentry alert received' : 'Sentry webhook recorded and ignored');
  if (alerting && !deps.channel) logger.warn({ eventId }, 'Sentry alert not posted: set SENTRY_ALERT_CHANNEL or INCIDENT_CHANNEL');
  reply(200, { ok: true, eventId });
}

function alertMessage(summary: SentryWebhookSummary, title: string, runbookId: string | null, reason: string): SlackMessage {
  const lines = [
    `:rotating_light: *Sentry alert: ${escapeText(title)}*`,
    escapeText(truncate(summary.title, 500)),
    summary.webUrl ? `<${summary.webUrl.replace(/[<>|]/g, '')}|Open in Sentry>` : '',
    `_${escapeText(reason)}_`,
  ].filter(Boolean);
  const blocks: SlackMessage['blocks'] = [{ type: 'section', text: { type: 'mrkdwn', text: lines.join('\n') } }];
  if (runbookId) {
    blocks.push({
      type: 'actions',
      block_id: 'sentry-alert',
      elements: [
        {
          type: 'button',
          text: { type: 'plain_text', text: `Start ${runbookId}` },
          style: 'danger',
          action_id: ACTION_IDS.startRunbook,
          value: JSON.stringify({ runbook: runbookId, summary: truncate(`Sentry alert: ${title}. ${summary.title}`, 1800) }),
        },
      ],
    });
  }
  return { text: `Sentry alert: ${title}`, blocks };
}

function readRaw(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        // Keep reading so the 413 reaches the sender instead of a reset connection.
        chunks.length = 0;
        reject(new Error('too large'));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
