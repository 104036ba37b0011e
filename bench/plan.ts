import type { Sample } from './slash-command.ts';

/** Request counts of `npm run bench`; the whole run takes about a minute on 2 CPUs. */
export const PLAN = {
  warmup: { sequential: 100, concurrent: 100 },
  /** Back to back: each request is sent as soon as the previous reply ended. */
  sequential: { requests: 300, rounds: 10 },
  /** One at a time with a pause before each, so the bot has finished the previous incident's Slack calls. */
  paced: { requests: 150, rounds: 5, gapMs: 25 },
  concurrent: { requests: 600, rounds: 5, concurrency: 20 },
  memory: { incidents: 1000, concurrency: 10 },
  settleTimeoutMs: 60_000,
} as const;

export type Plan = typeof PLAN;

export type Scenario = 'sequential' | 'paced' | 'concurrent';

export const BOT_TOKEN = 'xoxb-bench-0000000000-benchbenchbench';
export const COMMAND_TEXT = 'secret-key Key pasted in a public gist';

/** The bot acknowledges with an empty 200 and confirms the declaration through the response_url. */
export const isBotAck = (sample: Sample) => sample.status === 200 && sample.body === '';
export const isBareAck = (sample: Sample) => sample.status === 200 && sample.body === '';
