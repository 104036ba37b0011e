import type { BenchBot } from './bot-process.ts';
import type { BenchChild } from './child-process.ts';
import { summarizeLatencies, type LatencySummary } from './load.ts';
import { PLAN } from './plan.ts';
import type { ResponsePost } from './slack-api.ts';
import { SlashCommandSender, type Sample } from './slash-command.ts';

/** State shared by the latency and memory phases: the temporary folder, the Slack double and the processes to stop. */
export interface PhaseContext {
  dir: string;
  slackUrl: string;
  /** Node options for the bot processes, such as `--cpu-prof`. */
  botNodeArgs: string[];
  /** Processes to stop when the bench ends, also on failure. */
  running: Array<{ stop(): Promise<void> }>;
  log(message: string, fields?: Record<string, unknown>): void;
}

export function senderFor(child: BenchChild, signingSecret: string, channelPrefix: string, slackUrl: string): SlashCommandSender {
  return new SlashCommandSender({
    port: child.port,
    signingSecret,
    channelPrefix,
    responseUrlBase: slackUrl,
    maxSockets: PLAN.concurrent.concurrency,
  });
}

export async function settleOrThrow(bot: BenchBot, when: string) {
  const state = await bot.settle(PLAN.settleTimeoutMs);
  if (state.pending > 0 || state.unposted > 0) {
    throw new Error(`the bot's outbox did not settle ${when} within ${PLAN.settleTimeoutMs} ms: ${JSON.stringify(state)}`);
  }
  return state;
}

/** Text that starts the bot's confirmation of a new incident. */
const CONFIRMATION = 'Declared incident #';
const CONFIRMATION_WAIT_MS = 5000;

/**
 * Waits until every bot command in `samples` has its confirmation, in the ack body or posted
 * to its response_url, or until 5 s have passed. Then it summarizes the time from sending each
 * command to its confirmation; a command without one counts as failed.
 */
export async function awaitConfirmations(slackUrl: string, samples: Sample[]): Promise<LatencySummary> {
  const deadline = performance.now() + CONFIRMATION_WAIT_MS;
  let received = new Map<string, ResponsePost>();
  for (;;) {
    received = await fetchResponses(slackUrl);
    const missing = samples.filter((sample) => !sample.body.includes(CONFIRMATION) && !received.get(sample.key)?.text.includes(CONFIRMATION));
    if (missing.length === 0 || performance.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const latencies: number[] = [];
  let firstFailure: string | undefined;
  for (const sample of samples) {
    const response = received.get(sample.key);
    if (sample.body.includes(CONFIRMATION)) {
      latencies.push(sample.latencyMs);
    } else if (response?.text.includes(CONFIRMATION)) {
      latencies.push(Number(BigInt(response.receivedAtNs) - sample.sentAtNs) / 1e6);
    } else {
      firstFailure ??= response ? `response_url text ${JSON.stringify(response.text.slice(0, 200))}` : `no confirmation for channel ${sample.key}`;
    }
  }
  return summarizeLatencies(latencies, { count: samples.length, failures: samples.length - latencies.length, firstFailure }, 0);
}

export async function fetchResponses(slackUrl: string): Promise<Map<string, ResponsePost>> {
  const posts = (await (await fetch(`${slackUrl}/bench/responses`)).json()) as ResponsePost[];
  return new Map(posts.map((post) => [post.key, post]));
}
