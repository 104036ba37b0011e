import type { BenchBot } from './bot-process.ts';
import type { BenchChild } from './child-process.ts';
import { PLAN } from './plan.ts';
import { SlashCommandSender } from './slash-command.ts';

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
