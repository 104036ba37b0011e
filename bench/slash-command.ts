import { Agent, request } from 'node:http';

import { systemClock, type Clock } from '../src/bot/clock.ts';
import { signatureFor } from '../src/sandbox/delivery.ts';

/** One acknowledged (or failed) slash command as the sender saw it. */
export interface Sample {
  /** The command's channel id, which is also the last segment of its response_url. */
  key: string;
  /** process.hrtime.bigint() when the request was sent. */
  sentAtNs: bigint;
  latencyMs: number;
  /** The HTTP status, or 0 when the request failed before a reply. */
  status: number;
  body: string;
  error?: string;
}

export interface SlashCommandSenderOptions {
  port: number;
  signingSecret: string;
  /** Letter that starts this sender's channel ids, so two senders never share a channel. */
  channelPrefix: string;
  /** Origin for the response_url field, where the bot confirms each declaration. */
  responseUrlBase: string;
  /** Sockets kept open to the target; at least the concurrency of the run. */
  maxSockets: number;
  clock?: Clock;
}

/** Slack gives up on a slash command after 3 seconds; the sender waits a little longer to see late acks. */
const REQUEST_TIMEOUT_MS = 5000;

/**
 * Sends `/incident` slash commands to a Bolt HTTP endpoint as Slack does: a
 * form-encoded body with Slack's fields, signed with the signing secret, each
 * from a new channel id. Connections are kept alive and reused.
 */
export class SlashCommandSender {
  private readonly agent: Agent;
  private readonly clock: Clock;
  private sent = 0;

  constructor(private readonly options: SlashCommandSenderOptions) {
    this.agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets });
    this.clock = options.clock ?? systemClock;
  }

  /** Sends `/incident <text>` from a channel no earlier request used and measures until the reply ends. */
  async send(text: string): Promise<Sample> {
    this.sent += 1;
    const channelId = `${this.options.channelPrefix}${this.sent.toString(36).toUpperCase().padStart(8, '0')}`;
    const body = new URLSearchParams({
      token: 'bench-verification-token',
      team_id: 'T0BENCH',
      team_domain: 'bench',
      channel_id: channelId,
      channel_name: `bench-${this.sent}`,
      user_id: 'U0BENCHALEX',
      user_name: 'alex',
      command: '/incident',
      text,
      api_app_id: 'A0BENCHAPP',
      is_enterprise_install: 'false',
      response_url: `${this.options.responseUrlBase}/commands/T0BENCH/${channelId}`,
      trigger_id: `${this.sent}.1000000000.bench`,
    }).toString();

    const timestamp = Math.floor(this.clock.now() / 1000);
    const headers = {
      'content-type': 'application/x-www-form-urlencoded',
      'content-length': String(Buffer.byteLength(body)),
      'x-slack-request-timestamp': String(timestamp),
      'x-slack-signature': signatureFor(this.options.signingSecret, timestamp, body),
      'user-agent': 'Slackbot 1.0 (+https://api.slack.com/robots)',
    };
    return this.post(channelId, body, headers);
  }

  close(): void {
    this.agent.destroy();
  }

  private post(key: string, body: string, headers: Record<string, string>): Promise<Sample> {
    return new Promise((resolve) => {
      const sentAtNs = process.hrtime.bigint();
      const started = performance.now();
      const finish = (reply: Pick<Sample, 'status' | 'body' | 'error'>) => {
        resolve({ key, sentAtNs, latencyMs: performance.now() - started, ...reply });
      };
      const req = request(
        { host: '127.0.0.1', port: this.options.port, path: '/slack/events', method: 'POST', headers, agent: this.agent, timeout: REQUEST_TIMEOUT_MS },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', (error) => finish({ status: 0, body: '', error: error.message }));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no reply within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', (error) => finish({ status: 0, body: '', error: error.message }));
      req.end(body);
    });
  }
}
