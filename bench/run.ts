import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

import { ROOT, startChild } from './child-process.ts';
import { measureLatency } from './latency-phase.ts';
import { fetchStats, measureMemory } from './memory-phase.ts';
import type { PhaseContext } from './phase.ts';
import { BOT_TOKEN, PLAN } from './plan.ts';
import { renderMarkdown, renderTable } from './report.ts';
import { describeMachine, type BenchResults } from './results.ts';

/**
 * `npm run bench`: measures the bot's slash command acks against a bare Bolt
 * app and its memory with 1,000 open incidents, prints a table and rewrites
 * docs/benchmarks.md. Every process it starts listens on 127.0.0.1 only.
 *
 * `--cpu-prof-dir=DIR` also writes a V8 CPU profile of each bot process into DIR.
 */

const DOC_PATH = join(ROOT, 'docs', 'benchmarks.md');

async function main(): Promise<void> {
  const started = performance.now();
  const loadBefore = loadavg()[0];
  const profileDir = process.argv.find((arg) => arg.startsWith('--cpu-prof-dir='))?.slice('--cpu-prof-dir='.length);
  const context: PhaseContext = {
    dir: mkdtempSync(join(tmpdir(), 'runbook-bench-')),
    slackUrl: '',
    botNodeArgs: profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
    running: [],
    log: (message, fields = {}) => console.log(JSON.stringify({ msg: message, ...fields })),
  };

  let stopping: Promise<void> | undefined;
  const stopAll = () => {
    stopping ??= (async () => {
      for (const child of [...context.running].reverse()) await child.stop();
      rmSync(context.dir, { recursive: true, force: true });
    })();
    return stopping;
  };
  // Stop the child processes when the bench is interrupted, so none outlives it. The handler
  // stays installed because `timeout` and a terminal send the signal to the whole process group
  // as well, and a second signal must not kill the bench before its children have exited.
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(signal, () => void stopAll().finally(() => process.exit(code)));
  }

  try {
    const slack = await startChild({
      name: 'Slack API double',
      script: 'bench/slack-api-main.ts',
      env: { SLACK_BOT_TOKEN: BOT_TOKEN },
      readyMessage: 'slack api double started',
    });
    context.running.push(slack);
    context.slackUrl = `http://127.0.0.1:${slack.port}`;

    const latency = await measureLatency(context);
    const memory = await measureMemory(context);
    const results: BenchResults = {
      plan: PLAN,
      machine: describeMachine(loadBefore, loadavg()[0]),
      latency,
      memory,
      slackStats: await fetchStats(context.slackUrl),
      durationMs: performance.now() - started,
    };

    console.log(renderTable(results));
    writeFileSync(DOC_PATH, renderMarkdown(results));
    context.log('wrote the benchmark page', { path: DOC_PATH });
  } finally {
    await stopAll();
  }
}

main().catch((error: unknown) => {
  console.error(`bench failed: ${error instanceof Error ? error.stack : String(error)}`);
  process.exitCode = 1;
});
