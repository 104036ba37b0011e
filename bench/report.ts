import { MAX_WAIT_MS, QUIET_MS } from '../src/bot/background-lane.ts';
import { BOT_NODE_ARGS } from '../scripts/node-args.ts';
import type { LatencySummary } from './load.ts';
import type { Scenario } from './plan.ts';
import { evaluateGoals, formatMegabytes as mb, formatMs as ms, p50Ratio, p99Ratio, type BenchResults, type LatencyPair } from './results.ts';

const SCENARIOS: Scenario[] = ['sequential', 'paced', 'concurrent'];

function scenarioLabel(scenario: Scenario, results: BenchResults): string {
  const { plan } = results;
  if (scenario === 'sequential') return 'sequential, back to back';
  if (scenario === 'paced') return `sequential, ${plan.paced.gapMs} ms apart`;
  return `${plan.concurrent.concurrency} concurrent`;
}

/** Renders the plain-text table that the bench prints to stdout. */
export function renderTable(results: BenchResults): string {
  const header = ['run', 'app', 'requests', 'failed', 'p50', 'p99', 'max', 'p50 ratio', 'p99 ratio'];
  const rows = SCENARIOS.flatMap((scenario) => latencyCells(scenarioLabel(scenario, results), results.latency[scenario]));
  const table = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...table.map((row) => row[column].length)));
  const lines = table.map((row) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd());
  lines.splice(1, 0, widths.map((width) => '-'.repeat(width)).join('  '));

  const { memory } = results;
  lines.push(
    '',
    `memory, ${memory.openIncidents} open incidents: VmRSS ${mb(memory.afterSettle.rssBytes)} once the outbox settled, ` +
      `${mb(memory.afterRefresh.rssBytes)} after a countdown refresh (${mb(memory.atStart.rssBytes)} at start, VmHWM ${mb(memory.afterRefresh.peakRssBytes)})`,
    '',
    ...evaluateGoals(results).map((goal) => `${goal.met ? 'met   ' : 'MISSED'}  ${goal.name}: ${goal.measured}`),
  );
  return lines.join('\n');
}

function latencyCells(run: string, pair: LatencyPair): string[][] {
  const cells = (app: string, summary: LatencySummary, ratios: string[]) => [
    run,
    app,
    String(summary.count),
    String(summary.failures),
    ms(summary.p50Ms),
    ms(summary.p99Ms),
    ms(summary.maxMs),
    ...ratios,
  ];
  return [
    cells('bare Bolt', pair.bare, ['', '']),
    cells('runbook-bot', pair.bot, [p50Ratio(pair).toFixed(2), p99Ratio(pair).toFixed(2)]),
    cells('runbook-bot, confirmed', pair.confirmation, ['', '']),
  ];
}

/** Renders the whole of docs/benchmarks.md. */
export function renderMarkdown(results: BenchResults): string {
  return [header(results), setup(results), latencySection(results), memorySection(results), goalsSection(results)].join('\n');
}

function header(results: BenchResults): string {
  const { machine, plan } = results;
  return `# Benchmarks

\`npm run bench\` (\`bench/run.ts\`) measures how fast runbook-bot acknowledges
\`/incident secret-key <summary>\` next to a bare Bolt app, and how much memory
it holds with ${plan.memory.incidents} open incidents. It prints a table and rewrites this page with the
numbers of that run. The numbers below come from one run on the machine listed.
They describe loopback traffic on that machine, not a production deployment.

## Machine and run

| | |
| --- | --- |
| date (UTC) | ${machine.date} |
| CPUs (\`nproc\`) | ${machine.cpus} × ${machine.cpuModel} |
| memory | ${machine.memoryGiB} GiB |
| Node.js | ${machine.node} |
| kernel (\`uname -r\`) | ${machine.kernel} |
| commit | ${machine.commit} |
| load average (1 min) at start / end | ${machine.loadBefore.toFixed(2)} / ${machine.loadAfter.toFixed(2)} |
| bench wall time | ${(results.durationMs / 1000).toFixed(0)} s |

A 1-minute load average near or above the CPU count means other programs competed for the CPUs
around the run, which widens the spread of the latencies.
`;
}

function setup(results: BenchResults): string {
  const { plan, machine } = results;
  const { sequential, paced, concurrent, warmup, memory } = plan;
  return `## Setup

- **Processes.** The bot (\`src/bot/main.ts\`) and the bare app (\`bench/bare-bolt.ts\`) are compiled
  to JavaScript by \`scripts/build.mjs\`, as \`npm start\` runs the bot, and run as child processes
  with the same V8 flags (\`node ${BOT_NODE_ARGS.join(' ')}\`), in HTTP mode with Bolt's HTTPReceiver on
  127.0.0.1 port 0. The bare app has one \`/incident\` listener that calls \`ack()\` with no body
  and makes no Web API call. Both run at the same time on the same machine, and the bench
  process that sends the requests shares the same ${machine.cpus} CPUs with them.
- **Requests.** Form-encoded slash commands with Slack's fields, signed with each app's signing
  secret as Slack signs them (\`signatureFor\` in \`src/sandbox/delivery.ts\`). The sender keeps
  connections alive (at most ${concurrent.concurrency} per app) and times each request from sending to the end of
  the reply. Every bot request comes from a new channel id, so each one declares a new incident
  instead of hitting the duplicate check. An ack counts only when it is a 200 with an empty
  body; the bot then confirms each declaration through the command's response_url, which the
  Slack double serves and counts.
- **Slack Web API.** The bot's Web API calls go to \`bench/slack-api.ts\`, a small double in its
  own process. It answers \`ok: true\` with increasing message ts values, and checks the token,
  the channel id, text or blocks, and that updated and threaded messages exist. The sandbox's
  double (\`startSlackDouble\`) is not used: it knows only its two seeded channels, so a new
  channel per request would fail with \`channel_not_found\`, and it validates and stores every
  Block Kit message, which is not what this benchmark measures.
- **Bot configuration.** \`LOG_LEVEL=info\` (JSON lines to a pipe that the bench reads), a new
  SQLite file in a temporary folder, \`RESPONDERS\` set, PagerDuty off (no routing key), so a
  declaration queues Slack messages only.
- **Scenarios.** After a warm-up of ${warmup.sequential} sequential and ${warmup.concurrent} concurrent requests to each app:
  - *sequential, back to back*: ${sequential.requests} requests per app, each sent when the previous reply ended;
  - *sequential, ${paced.gapMs} ms apart*: ${paced.requests} requests per app, one at a time with a ${paced.gapMs} ms pause before
    each, which lets the bot finish the Slack calls of the previous incident;
  - *${concurrent.concurrency} concurrent*: ${concurrent.requests} requests per app with ${concurrent.concurrency} in flight.

  Each scenario runs in rounds (${sequential.rounds}, ${paced.rounds} and ${concurrent.rounds}). A round sends its share to the bare app,
  then to the bot, so that other load on the machine falls on both alike. The bot's outbox is
  drained before each round, so the bare app never shares the CPUs with it.
- **Work behind an ack.** Before it acks a declaration, the bot writes one row to SQLite, so a
  process killed after the ack still opens the incident when it starts again. The incident's
  rows, its two Slack posts and the response_url confirmation wait until requests pause for
  ${QUIET_MS} ms, or ${MAX_WAIT_MS} ms at most (\`src/bot/background-lane.ts\`), as in production. Back to back
  and ${concurrent.concurrency} concurrent, requests seldom pause, so much of that work falls after a round's last ack;
  the *confirmed* rows and the outbox times below show what it costs.
- **Memory.** A second bot process with a new database receives ${memory.incidents} signed
  \`/incident secret-key\` commands (${memory.concurrency} in flight) through the same command path. The bench
  reads \`VmRSS\` and \`VmHWM\` from \`/proc/<pid>/status\` at start and once the outbox has
  delivered every message. It then moves the bot's clock one minute forward through
  \`POST /admin/clock\` (this bot runs with \`ALLOW_CLOCK_CONTROL=true\`). That runs the countdown
  refresh that the bot's minute ticker runs in production, which updates every incident whose
  "N min left" label changed. The third reading comes once those updates are delivered. No
  garbage collection is forced.
`;
}

function latencySection(results: BenchResults): string {
  const { latency } = results;
  const rows = SCENARIOS.map((scenario) => markdownRows(scenarioLabel(scenario, results), latency[scenario])).join('\n');
  const failures = SCENARIOS.flatMap((scenario) => {
    const pair = latency[scenario];
    return [pair.bot.firstFailure, pair.confirmation.firstFailure, pair.bare.firstFailure];
  }).filter(Boolean);
  const failureLine = failures.length > 0 ? `\n\nFirst failed replies: ${failures.map((failure) => `\`${failure}\``).join('; ')}.` : '';
  const drains = SCENARIOS.map((scenario) => `${ms(latency[scenario].settleMs)} (${scenarioLabel(scenario, results)})`).join(', ');
  return `## Acknowledgement latency

| run | app | requests | failed | p50 | p99 | max | p50 ratio | p99 ratio |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows}

Ratios are bot / bare. A *confirmed* row measures from sending each bot command to its "Declared
incident #" message: in the ack body, or posted to the command's response_url, where the Slack
double notes the arrival time. After a round's last ack the bot's outbox took at most ${drains} to
deliver the rest. The bot ended the latency runs with ${latency.openIncidentsAtEnd} open incidents.${failureLine}
`;
}

function markdownRows(run: string, pair: LatencyPair): string {
  const row = (app: string, summary: LatencySummary, ratios: string) =>
    `| ${run} | ${app} | ${summary.count} | ${summary.failures} | ${ms(summary.p50Ms)} | ${ms(summary.p99Ms)} | ${ms(summary.maxMs)} | ${ratios} |`;
  return [
    row('bare Bolt', pair.bare, ' | '),
    row('runbook-bot', pair.bot, `${p50Ratio(pair).toFixed(2)} | ${p99Ratio(pair).toFixed(2)}`),
    row('runbook-bot, confirmed', pair.confirmation, ' | '),
  ].join('\n');
}

function memorySection(results: BenchResults): string {
  const { memory, plan, slackStats } = results;
  const calls = Object.entries(slackStats.calls).map(([method, count]) => `${method} ${count}`).join(', ');
  const errors = Object.entries(slackStats.errors).map(([code, count]) => `${code} ${count}`).join(', ') || 'none';
  const at = (seconds: number) => `${seconds.toFixed(0)} s`;
  return `## Memory with ${plan.memory.incidents} open incidents

| reading | seconds after start | VmRSS | VmHWM (peak) |
| --- | ---: | ---: | ---: |
| after start, before any request | ${at(memory.atStart.secondsSinceStart)} | ${mb(memory.atStart.rssBytes)} | ${mb(memory.atStart.peakRssBytes)} |
| outbox settled after the last declaration | ${at(memory.afterSettle.secondsSinceStart)} | ${mb(memory.afterSettle.rssBytes)} | ${mb(memory.afterSettle.peakRssBytes)} |
| after a countdown refresh (${memory.countdownUpdates} chat.update calls) | ${at(memory.afterRefresh.secondsSinceStart)} | ${mb(memory.afterRefresh.rssBytes)} | ${mb(memory.afterRefresh.peakRssBytes)} |

MB is 10^6 bytes. Open incidents: ${memory.openIncidents} in SQLite, ${memory.healthOpenIncidents ?? 'no answer'} from \`/healthz\`. Declaring them took
acks of ${ms(memory.declared.p50Ms)} p50, ${ms(memory.declared.p99Ms)} p99 and ${ms(memory.declared.maxMs)} max, with ${memory.declared.failures} failed. Confirmations
took ${ms(memory.confirmed.p50Ms)} p50 and ${ms(memory.confirmed.p99Ms)} p99, and ${memory.confirmed.failures} were missing. The outbox needed
${ms(memory.settleMs)} after the last ack to deliver the rest, and ${memory.failedOutbox} outbox messages failed.

Web API calls the Slack double received over the whole run: ${calls}. Errors: ${errors}.
`;
}

function goalsSection(results: BenchResults): string {
  const rows = evaluateGoals(results).map((goal) => `| ${goal.name} | ${goal.measured} | ${goal.met ? 'yes' : 'no'} |`);
  return `## Goals

| goal | measured | met |
| --- | --- | --- |
${rows.join('\n')}
`;
}
