import type { Sample } from './slash-command.ts';

export interface LatencySummary {
  count: number;
  /** Requests without a 200 reply of the expected shape. */
  failures: number;
  /** The first failure, for the report. */
  firstFailure?: string;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Acks slower than Slack's 3 second limit. */
  over3s: number;
  wallMs: number;
}

/** Sends `count` requests one after another, each after the previous reply ended. */
export async function runSequential(send: () => Promise<Sample>, count: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let index = 0; index < count; index++) samples.push(await send());
  return samples;
}

/** Sends `count` requests one after another, waiting `gapMs` before each. */
export async function runPaced(send: () => Promise<Sample>, count: number, gapMs: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let index = 0; index < count; index++) {
    await new Promise((resolve) => setTimeout(resolve, gapMs));
    samples.push(await send());
  }
  return samples;
}

/** Sends `total` requests with `concurrency` of them in flight at every moment until the last is sent. */
export async function runConcurrent(send: () => Promise<Sample>, total: number, concurrency: number): Promise<Sample[]> {
  const samples: Sample[] = [];
  let started = 0;
  const worker = async () => {
    while (started < total) {
      started += 1;
      samples.push(await send());
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return samples;
}

/** Returns the sample at percentile `p` (0-100) by the nearest-rank method. `sorted` must be ascending. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) throw new Error('percentile of no samples');
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** Summarizes ack latencies; `accept` decides whether a reply is the expected ack. */
export function summarize(samples: Sample[], wallMs: number, accept: (sample: Sample) => boolean): LatencySummary {
  const first = samples.find((sample) => !accept(sample));
  const firstFailure = first ? `status ${first.status}${first.error ? `, ${first.error}` : ''}, body ${JSON.stringify(first.body.slice(0, 200))}` : undefined;
  return summarizeLatencies(
    samples.map((sample) => sample.latencyMs),
    { count: samples.length, failures: samples.filter((sample) => !accept(sample)).length, firstFailure },
    wallMs,
  );
}

/** Summarizes latencies in milliseconds; requests that failed may have none. */
export function summarizeLatencies(
  latencies: number[],
  outcome: { count: number; failures: number; firstFailure?: string },
  wallMs: number,
): LatencySummary {
  const sorted = [...latencies].sort((a, b) => a - b);
  const empty = sorted.length === 0;
  return {
    ...outcome,
    p50Ms: empty ? Number.NaN : percentile(sorted, 50),
    p99Ms: empty ? Number.NaN : percentile(sorted, 99),
    maxMs: empty ? Number.NaN : sorted[sorted.length - 1],
    over3s: sorted.filter((latency) => latency > 3000).length,
    wallMs,
  };
}
