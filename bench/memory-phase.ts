import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';

import { startBenchBot } from './bot-process.ts';
import { readMemory } from './child-process.ts';
import { awaitConfirmations, senderFor, settleOrThrow, type PhaseContext } from './phase.ts';
import { runConcurrent, summarize } from './load.ts';
import { BOT_TOKEN, COMMAND_TEXT, isBotAck, PLAN } from './plan.ts';
import type { MemoryReading, MemoryResult } from './results.ts';
import type { SlackApiStats } from './slack-api.ts';

/** Far enough to change every "15 min left" label, and short of the first reminder 10 minutes in. */
const COUNTDOWN_STEP_MS = 60_000;

/**
 * Declares PLAN.memory.incidents incidents in a new bot process through signed
 * slash commands and reads its resident memory from /proc: at start, once the
 * outbox has delivered everything, and again after a countdown refresh of
 * every incident. No garbage collection is forced.
 *
 * The bot refreshes countdowns once a minute, and a label changes only when a
 * whole minute has passed since the declaration, so the first full refresh
 * would come up to two minutes later. Moving the bot's clock forward one minute
 * runs the same refresh at once.
 */
export async function measureMemory(context: PhaseContext): Promise<MemoryResult> {
  const bot = await startBenchBot({
    dir: mkdtempSync(join(context.dir, 'memory-')),
    slackApiUrl: `${context.slackUrl}/api/`,
    botToken: BOT_TOKEN,
    nodeArgs: context.botNodeArgs,
    clockControl: true,
  });
  context.running.push(bot);
  const pid = bot.child.process.pid!;
  const startedAt = performance.now();
  const reading = (): MemoryReading => ({ ...readMemory(pid), secondsSinceStart: (performance.now() - startedAt) / 1000 });
  const atStart = reading();

  const { incidents, concurrency } = PLAN.memory;
  context.log('declaring incidents for the memory readings', { incidents, concurrency });
  const sender = senderFor(bot.child, bot.signingSecret, 'CM', context.slackUrl);
  const declareStarted = performance.now();
  const samples = await runConcurrent(() => sender.send(COMMAND_TEXT), incidents, concurrency);
  const declared = summarize(samples, performance.now() - declareStarted, isBotAck);
  sender.close();
  const settled = await settleOrThrow(bot, 'after declaring the incidents');
  const confirmed = await awaitConfirmations(context.slackUrl, samples);
  const afterSettle = reading();
  const health = (await (await fetch(`http://127.0.0.1:${bot.child.port}/healthz`)).json()) as { openIncidents?: number };

  context.log('refreshing every countdown');
  const updatesBefore = await countUpdates(context.slackUrl);
  await bot.advanceClock(COUNTDOWN_STEP_MS);
  const refreshed = await settleOrThrow(bot, 'after the countdown refresh');
  const afterRefresh = reading();
  const countdownUpdates = (await countUpdates(context.slackUrl)) - updatesBefore;

  await bot.stop();
  context.running.splice(context.running.indexOf(bot), 1);
  return {
    declared,
    confirmed,
    settleMs: settled.waitedMs,
    openIncidents: refreshed.openIncidents,
    healthOpenIncidents: health.openIncidents,
    failedOutbox: refreshed.failed,
    atStart,
    afterSettle,
    afterRefresh,
    countdownUpdates,
  };
}

export async function fetchStats(slackUrl: string): Promise<SlackApiStats> {
  return (await (await fetch(`${slackUrl}/bench/stats`)).json()) as SlackApiStats;
}

async function countUpdates(slackUrl: string): Promise<number> {
  return (await fetchStats(slackUrl)).calls['chat.update'] ?? 0;
}
