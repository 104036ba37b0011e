import { isIP } from 'node:net';
import { connect, type PeerCertificate, type TLSSocket } from 'node:tls';

import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { scrubText } from '../bot/redact.ts';
import type { Db } from '../store/db.ts';
import { latestRestoreTestReport } from '../store/restore-tests.ts';
import { describeCommandResult, runCommand, type CommandResult } from './command.ts';
import { extractJson, summarizeSecurityReport } from './audit-json.ts';
import { commandEnv } from './command-env.ts';

// The automated items of the monthly security audit. Each returns evidence
// for its checklist item. A command or connection that fails gives `fail`
// evidence with the reason instead of an exception, and a check without
// configuration gives `skipped`.

export type AuditStatus = 'pass' | 'warn' | 'fail' | 'skipped';

export interface AuditEvidence {
  status: AuditStatus;
  summary: string;
  lines: string[];
}

export interface AuditCommandOptions {
  logger: Logger;
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
const MAX_LINES = 25;

function evidence(status: AuditStatus, summary: string, lines: string[] = []): AuditEvidence {
  const shown = lines.slice(0, MAX_LINES).map((line) => scrubText(line));
  if (lines.length > MAX_LINES) shown.push(`… and ${lines.length - MAX_LINES} more`);
  return { status, summary: scrubText(summary), lines: shown };
}

async function run(
  argv: string[],
  options: AuditCommandOptions,
): Promise<{ result?: CommandResult; failure?: AuditEvidence; timeoutMs: number }> {
  const timeoutMs = options.timeoutMs ?? 120_000;
  try {
    const result = await runCommand(argv, {
      timeoutMs,
      logger: options.logger,
      cwd: options.cwd,
      env: commandEnv(options.env),
    });
    return { result, timeoutMs };
  } catch (error) {
    const message = error instanceof ActionError ? error.message : String(error);
    return { failure: evidence('fail', message), timeoutMs };
  }
}

function lastLines(output: string, count = 5): string[] {
  return output
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '')
    .slice(-count);
}

/** Runs the project's `security_check.py --json` and summarises its findings. */
export async function runSecurityCheckScript(
  argv: string[] | undefined,
  options: AuditCommandOptions,
): Promise<AuditEvidence> {
  if (!argv || argv.length === 0) return evidence('skipped', 'security check script not configured');
  const { result, failure, timeoutMs } = await run(argv, options);
  if (failure || !result) return failure!;
  if (result.timedOut || result.signal) {
    return evidence('fail', `security check ${describeCommandResult(result, timeoutMs)}`, lastLines(result.output));
  }

  const parsed = extractJson(result.output);
  if (parsed === undefined) {
    return evidence(
      'fail',
      `security check ${describeCommandResult(result)} without JSON output; run it with --json`,
      lastLines(result.output),
    );
  }
  const report = summarizeSecurityReport(parsed);
  if (result.exitCode !== 0 && report.status === 'pass') {
    return evidence('warn', `${report.summary}, but the script ${describeCommandResult(result)}`, report.lines);
  }
  return evidence(report.status, report.summary, report.lines);
}

interface DeployIssue {
  level: 'critical' | 'error' | 'warning' | 'info' | 'debug';
  id: string;
  object: string;
  message: string;
}

const SECTION_LEVELS: Record<string, DeployIssue['level']> = {
  'CRITICALS:': 'critical',
  'ERRORS:': 'error',
  'WARNINGS:': 'warning',
  'INFOS:': 'info',
  'DEBUGS:': 'debug',
};

/**
 * Parses `manage.py check` output: section headers (WARNINGS: …), then one
 * line per issue, `<object>: (<id>) <message>`, with an optional tab-indented
 * `HINT:` line. Django writes issues to stderr.
 */
export function parseCheckOutput(output: string): DeployIssue[] {
  const issues: DeployIssue[] = [];
  let level: DeployIssue['level'] | undefined;
  for (const line of output.split(/\r?\n/)) {
    const header = SECTION_LEVELS[line.trim()];
    if (header) {
      level = header;
      continue;
    }
    const match = /^(?:SystemCheckError: )?(\S.*?): \(([A-Za-z_][\w.]*\.[A-Z]\d+)\) (.*)$/.exec(line);
    if (match && level) issues.push({ level, object: match[1], id: match[2], message: match[3] });
  }
  return issues;
}

/**
 * Runs `manage.py check --deploy --fail-level WARNING` and lists the issues
 * by id. Errors and criticals fail the item; warnings make it `warn`.
 */
export async function checkDeploy(argv: string[] | undefined, options: AuditCommandOptions): Promise<AuditEvidence> {
  if (!argv || argv.length === 0) return evidence('skipped', 'manage.py check --deploy not configured');
  const { result, failure, timeoutMs } = await run(argv, options);
  if (failure || !result) return failure!;
  if (result.timedOut || result.signal) {
    return evidence('fail', `check --deploy ${describeCommandResult(result, timeoutMs)}`, lastLines(result.output));
  }

  const issues = parseCheckOutput(result.output);
  const lines = issues.map((issue) => `${issue.id} (${issue.level}): ${shorten(issue.message)}`);
  const serious = issues.filter((issue) => issue.level === 'critical' || issue.level === 'error');
  const warnings = issues.filter((issue) => issue.level === 'warning');

  if (serious.length > 0) {
    return evidence('fail', `check --deploy found ${serious.length} errors and ${warnings.length} warnings`, lines);
  }
  if (warnings.length > 0) {
    return evidence('warn', `check --deploy found ${warnings.length} warnings`, lines);
  }
  if (result.exitCode !== 0) {
    return evidence('fail', `check --deploy ${describeCommandResult(result)}`, lastLines(result.output));
  }
  return evidence('pass', 'check --deploy found no issues', lines);
}

function shorten(text: string, max = 160): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Checks that each variable is set and not blank; lists names only, never values. */
export function checkRequiredEnv(
  names: string[],
  env: Record<string, string | undefined>,
): AuditEvidence {
  if (names.length === 0) return evidence('skipped', 'no required variables configured');
  const missing = names.filter((name) => env[name] === undefined);
  const blank = names.filter((name) => env[name] !== undefined && env[name]!.trim() === '');

  const lines = [
    ...missing.map((name) => `${name}: missing`),
    ...blank.map((name) => `${name}: set but empty`),
  ];
  if (lines.length > 0) {
    return evidence('fail', `${lines.length} of ${names.length} required variables are not set`, lines);
  }
  return evidence('pass', `all ${names.length} required variables are set`, names.map((name) => `${name}: set`));
}

export interface TlsCheckOptions {
  /** Trusted CA certificates in PEM, instead of Node's bundled roots. */
  ca?: string | Buffer;
  /** Name for SNI and the hostname check; defaults to `host` unless it is an IP address. */
  servername?: string;
  timeoutMs?: number;
  /** Days before expiry from which the item warns; default 30. */
  warnDays?: number;
}

/**
 * Connects to `host:port` over TLS and checks the certificate: chain and
 * host name verified, expiry at least `warnDays` (30) after `now`.
 */
export function checkTlsCertificate(
  host: string,
  port: number,
  now: number,
  options: TlsCheckOptions = {},
): Promise<AuditEvidence> {
  const warnDays = options.warnDays ?? 30;
  const target = `${host}:${port}`;

  return new Promise((resolve) => {
    let socket: TLSSocket;
    try {
      socket = connect({
        host,
        port,
        servername: options.servername ?? (isIP(host) ? undefined : host),
        ca: options.ca,
        rejectUnauthorized: false,
        timeout: options.timeoutMs ?? 10_000,
      });
    } catch (error) {
      resolve(evidence('fail', `TLS check of ${target} is misconfigured: ${(error as Error).message}`));
      return;
    }
    const finish = (result: AuditEvidence) => {
      socket.destroy();
      resolve(result);
    };

    socket.once('secureConnect', () => {
      const certificate = socket.getPeerCertificate();
      if (!certificate || Object.keys(certificate).length === 0) {
        finish(evidence('fail', `${target} sent no certificate`));
        return;
      }
      finish(certificateEvidence(target, certificate, socket.authorized, socket.authorizationError, now, warnDays));
    });
    socket.once('timeout', () => finish(evidence('fail', `${target} did not complete a TLS handshake in time`)));
    socket.once('error', (error: NodeJS.ErrnoException) =>
      finish(evidence('fail', `TLS connection to ${target} failed: ${error.code ?? error.message}`)),
    );
  });
}

function certificateEvidence(
  target: string,
  certificate: PeerCertificate,
  authorized: boolean,
  authorizationError: Error | string | undefined,
  now: number,
  warnDays: number,
): AuditEvidence {
  const validTo = Date.parse(certificate.valid_to);
  const daysLeft = Math.floor((validTo - now) / DAY_MS);
  const lines = [
    `subject: ${certificate.subject?.CN ?? '(no common name)'}`,
    `issuer: ${certificate.issuer?.CN ?? '(no common name)'}`,
    `valid until: ${new Date(validTo).toISOString()}`,
    `days left: ${daysLeft}`,
  ];
  if (certificate.subjectaltname) lines.push(`names: ${certificate.subjectaltname}`);

  if (validTo <= now) {
    return evidence('fail', `certificate of ${target} expired ${-daysLeft} days ago`, lines);
  }
  if (!authorized) {
    const reason = typeof authorizationError === 'string' ? authorizationError : authorizationError?.message;
    return evidence('fail', `certificate of ${target} is not trusted: ${reason ?? 'unknown reason'}`, lines);
  }
  if (daysLeft < warnDays) {
    return evidence('warn', `certificate of ${target} expires in ${daysLeft} days; renew it`, lines);
  }
  return evidence('pass', `certificate of ${target} is valid for ${daysLeft} more days`, lines);
}

/** Runs `pip list --outdated --format=json` and lists outdated packages with their versions. */
export async function pipOutdated(argv: string[] | undefined, options: AuditCommandOptions): Promise<AuditEvidence> {
  if (!argv || argv.length === 0) return evidence('skipped', 'pip list --outdated not configured');
  const { result, failure, timeoutMs } = await run(argv, options);
  if (failure || !result) return failure!;
  if (result.exitCode !== 0) {
    return evidence('fail', `pip list ${describeCommandResult(result, timeoutMs)}`, lastLines(result.output));
  }

  const parsed = extractJson(result.output);
  if (!Array.isArray(parsed)) {
    return evidence('fail', 'pip list printed no JSON list; pass --outdated --format=json', lastLines(result.output));
  }
  const packages = parsed.filter(
    (item): item is { name: string; version: string; latest_version: string } =>
      typeof item === 'object' && item !== null && typeof (item as { name?: unknown }).name === 'string',
  );
  const lines = packages.map((item) => `${item.name} ${item.version} → ${item.latest_version}`);
  // NOTE: pip 23 prints [] and exits 0 when the package index cannot be
  // reached, so a pass means that pip reported nothing, not that the index was reached.
  if (packages.length === 0) return evidence('pass', 'pip list reported no outdated packages');
  return evidence('warn', `${packages.length} Python packages are outdated; check them for security fixes`, lines);
}

/** Evidence from the newest restore-test report: failed, missing or older than `maxAgeDays` (35). */
export function latestRestoreTest(db: Db, now?: number, maxAgeDays = 35): AuditEvidence {
  const latest = latestRestoreTestReport<{ problems?: string[]; durationMs?: number; users?: number }>(db);
  if (!latest) return evidence('warn', 'no restore test has been recorded; run /incident restore-test');

  const when = new Date(latest.at).toISOString();
  const lines = [`tested at: ${when}`];
  if (latest.report.users !== undefined) lines.push(`users in the copy: ${latest.report.users}`);
  if (latest.report.durationMs !== undefined) lines.push(`time taken: ${(latest.report.durationMs / 1000).toFixed(1)} s`);
  for (const problem of latest.report.problems ?? []) lines.push(`problem: ${problem}`);

  if (!latest.passed) return evidence('fail', `the last restore test (${when}) failed`, lines);
  if (now !== undefined && now - latest.at > maxAgeDays * DAY_MS) {
    const days = Math.floor((now - latest.at) / DAY_MS);
    return evidence('warn', `the last restore test passed, but it is ${days} days old`, lines);
  }
  return evidence('pass', `the last restore test (${when}) passed`, lines);
}
