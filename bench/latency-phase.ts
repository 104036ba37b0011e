import { BOT_NODE_ARGS } from '../scripts/node-args.ts';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';

import { startBenchBot, type BenchBot } from './bot-process.ts';
import { startChild } from './child-process.ts';
import { runConcurrent, runPaced, runSequential, summarize } from './load.ts';
import { awaitConfirmations, senderFor, settleOrThrow, type PhaseContext } from './phase.ts';
import { BOT_TOKEN, COMMAND_TEXT, isBareAck, isBotAck, PLAN } from './plan.ts';
import type { BenchResults, LatencyPair } from './results.ts';
import type { Sample } from './slash-command.ts';

type Send = () => Promise<Sample>;

/** Measures ack latency of the bot and of the bare Bolt app in the sequential, paced and concurrent scenarios. */
export async function measureLatency(context: PhaseContext): Promise<BenchResults['latency']> {
  const bot = await startBenchBot({
    dir: mkdtempSync(join(context.dir, 'latency-')),
    slackApiUrl: `${context.slackUrl}/api/`,
    botToken: BOT_TOKEN,
    nodeArgs: context.botNodeArgs,
  });
  context.running.push(bot);
  const bareSecret = randomBytes(16).toString('hex');
  const bare = await startChild({
    name: 'bare Bolt app',
    script: 'dist/bench/bare-bolt.js',
    // The bot's V8 flags, so the two differ in their code only.
    nodeArgs: BOT_NODE_ARGS,
    env: { SLACK_SIGNING_SECRET: bareSecret, SLACK_BOT_TOKEN: BOT_TOKEN },
    readyMessage: 'bare bolt started',
  });
  context.running.push(bare);

  const botSender = senderFor(bot.child, bot.signingSecret, 'CL', context.slackUrl);
  const bareSender = senderFor(bare, bareSecret, 'CB', context.slackUrl);
  const sends = { bare: () => bareSender.send(COMMAND_TEXT), bot: () => botSender.send(COMMAND_TEXT) };

  context.log('warming up both apps');
  for (const send of [sends.bare, sends.bot]) {
    await runSequential(send, PLAN.warmup.sequential);
    await runConcurrent(send, PLAN.warmup.concurrent, PLAN.concurrent.concurrency);
  }
  await settleOrThrow(bot, 'after the warm-up');

  const { sequential, paced, concurrent } = PLAN;
  context.log('sequential acks', sequential);
  const sequentialPair = await alternate(context, bot, sequential.rounds, sends, (send) => runSequential(send, sequential.requests / sequential.rounds));

  context.log('paced acks', paced);
  const pacedPair = await alternate(context, bot, paced.rounds, sends, (send) => runPaced(send, paced.requests / paced.rounds, paced.gapMs));

  context.log('concurrent acks', concurrent);
  const concurrentPair = await alternate(context, bot, concurrent.rounds, sends, (send) =>
    runConcurrent(send, concurrent.requests / concurrent.rounds, concurrent.concurrency),
  );

  botSender.close();
  bareSender.close();
  return { sequential: sequentialPair, paced: pacedPair, concurrent: concurrentPair, openIncidentsAtEnd: bot.outboxState().openIncidents };
}

/**
 * Runs `rounds` rounds of `load`, each against the bare app and then the bot,
 * so that other load on the machine falls on both alike. The bot's outbox is
 * drained before each round, so the bare app never shares the CPUs with it.
 */
async function alternate(
  context: PhaseContext,
  bot: BenchBot,
  rounds: number,
  sends: { bare: Send; bot: Send },
  load: (send: Send) => Promise<Sample[]>,
): Promise<LatencyPair> {
  const samples = { bare: [] as Sample[], bot: [] as Sample[] };
  const wallMs = { bare: 0, bot: 0 };
  let settleMs = 0;
  for (let round = 0; round < rounds; round++) {
    for (const app of ['bare', 'bot'] as const) {
      const started = performance.now();
      samples[app].push(...(await load(sends[app])));
      wallMs[app] += performance.now() - started;
    }
    const settled = await settleOrThrow(bot, `after round ${round + 1}`);
    settleMs = Math.max(settleMs, settled.waitedMs);
  }
  return {
    bare: summarize(samples.bare, wallMs.bare, isBareAck),
    bot: summarize(samples.bot, wallMs.bot, isBotAck),
    confirmation: await awaitConfirmations(context.slackUrl, samples.bot),
    settleMs,
  };
}
