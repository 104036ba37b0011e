import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, release, totalmem } from 'node:os';

import type { LatencySummary } from './load.ts';
import type { Plan, Scenario } from './plan.ts';
import type { SlackApiStats } from './slack-api.ts';

export interface LatencyPair {
  bot: LatencySummary;
  /** From sending each bot command to its "Declared incident" confirmation. */
  confirmation: LatencySummary;
  bare: LatencySummary;
  /** Maximum time, over the rounds, that the bot's outbox needed after the round's last ack to deliver the rest. */
  settleMs: number;
}

export interface MemoryReading {
  rssBytes: number;
  /** VmHWM: the highest RSS so far. */
  peakRssBytes: number;
  /** Seconds since the bot logged "bot started". */
  secondsSinceStart: number;
}

export interface MemoryResult {
  declared: LatencySummary;
  confirmed: LatencySummary;
  settleMs: number;
  openIncidents: number;
  /** `openIncidents` as the bot's /healthz reports it. */
  healthOpenIncidents: number | undefined;
  failedOutbox: number;
  atStart: MemoryReading;
  afterSettle: MemoryReading;
  afterRefresh: MemoryReading;
  /** chat.update calls between the two readings, which the countdown refresh causes. */
  countdownUpdates: number;
}

export interface Machine {
  date: string;
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  kernel: string;
  commit: string;
  /** 1-minute load averages when the bench started and ended. */
  loadBefore: number;
  loadAfter: number;
}

export interface BenchResults {
  plan: Plan;
  machine: Machine;
  latency: Record<Scenario, LatencyPair> & { openIncidentsAtEnd: number };
  memory: MemoryResult;
  slackStats: SlackApiStats;
  durationMs: number;
}

export interface Goal {
  name: string;
  measured: string;
  met: boolean;
}

/** The product owner's goals: p50 at most 1.2 times the bare app's, acks inside 3 s, RSS under 150 MB. */
export const GOALS = { maxP50Ratio: 1.2, slackAckLimitMs: 3000, maxRssBytes: 150_000_000 } as const;

export function describeMachine(loadBefore: number, loadAfter: number): Machine {
  return {
    date: new Date().toISOString().slice(0, 10),
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: release(),
    commit: gitCommit(),
    loadBefore,
    loadAfter,
  };
}

function gitCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() !== '';
    return dirty ? `${commit} with uncommitted changes to tracked files` : commit;
  } catch {
    return 'unknown (not a git checkout)';
  }
}

export function p50Ratio(pair: LatencyPair): number {
  return pair.bot.p50Ms / pair.bare.p50Ms;
}

export function p99Ratio(pair: LatencyPair): number {
  return pair.bot.p99Ms / pair.bare.p99Ms;
}

export function evaluateGoals(results: BenchResults): Goal[] {
  const { sequential, concurrent } = results.latency;
  const { memory, plan } = results;
  const concurrency = plan.concurrent.concurrency;
  const allIncidents = memory.openIncidents === plan.memory.incidents;
  return [
    {
      name: `p50 bot / bare, sequential back to back, at most ${GOALS.maxP50Ratio}`,
      measured: p50Ratio(sequential).toFixed(2),
      met: p50Ratio(sequential) <= GOALS.maxP50Ratio,
    },
    {
      name: `p50 bot / bare, ${concurrency} concurrent, at most ${GOALS.maxP50Ratio}`,
      measured: p50Ratio(concurrent).toFixed(2),
      met: p50Ratio(concurrent) <= GOALS.maxP50Ratio,
    },
    {
      name: `every bot ack under 3 s, ${concurrency} concurrent`,
      measured: `max ${formatMs(concurrent.bot.maxMs)}, ${concurrent.bot.failures} failed`,
      met: concurrent.bot.failures === 0 && concurrent.bot.maxMs < GOALS.slackAckLimitMs,
    },
    {
      name: `RSS with ${plan.memory.incidents} open incidents under 150 MB, outbox settled`,
      measured: formatMegabytes(memory.afterSettle.rssBytes),
      met: allIncidents && memory.afterSettle.rssBytes < GOALS.maxRssBytes,
    },
    {
      name: `RSS with ${plan.memory.incidents} open incidents under 150 MB, after a countdown refresh`,
      measured: formatMegabytes(memory.afterRefresh.rssBytes),
      met: allIncidents && memory.afterRefresh.rssBytes < GOALS.maxRssBytes,
    },
  ];
}

export function formatMs(value: number): string {
  if (Number.isNaN(value)) return 'n/a';
  return value < 10 ? `${value.toFixed(2)} ms` : `${value.toFixed(1)} ms`;
}

/** MB is 10^6 bytes. */
export function formatMegabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
