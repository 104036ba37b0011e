import { statSync, type Stats } from 'node:fs';
import { resolve } from 'node:path';

import { z } from 'zod';

import { locateProgram, parseCommandLine } from '../actions/command.ts';
import { ActionError } from './errors.ts';

/**
 * The bot's configuration, read once at start-up from the environment. Every
 * problem is reported at once, each with the variable name and what to set.
 */

const DEFAULT_SLACK_API_URL = 'https://slack.com/api/';

const optionalString = z
  .string()
  .trim()
  .transform((value) => (value === '' ? undefined : value))
  .optional();

const channelId = optionalString.pipe(
  z.string().regex(/^[CG][A-Z0-9]{2,}$/, 'must be a channel id such as C0123ABCD (right-click the channel, View channel details), not a name').optional(),
);

const booleanString = z
  .enum(['true', 'false', '1', '0', ''])
  .optional()
  .transform((value) => value === 'true' || value === '1');

// Trimmed like every other value, so PORT=" 3000 " is port 3000 and an empty PORT is unset.
const portString = optionalString.pipe(
  z
    .string()
    .regex(/^\d+$/, 'must be a port number such as 3000')
    .transform(Number)
    .refine((port) => port < 65536, 'must be between 0 (any free port) and 65535')
    .optional(),
);

/** Rules for a base URL that every request sends a token to. */
interface BaseUrlRule {
  /** Variable holding the token that every request to this URL carries. */
  tokenName: string;
  /** A valid value, shown in every problem as what to set. */
  example: string;
  /** Pattern the URL path must match, with the problem shown when it does not. */
  path?: { pattern: RegExp; hint: string };
}

/**
 * Builds the schema of an http or https base URL that every request sends
 * `rule.tokenName` to. Plain http is accepted only for a loopback host, so the
 * token never crosses a network unencrypted.
 */
function tokenUrl(rule: BaseUrlRule) {
  return optionalString.pipe(
    z
      .string()
      .superRefine((text, context) => {
        const problem = tokenUrlProblem(text, rule);
        if (problem) context.addIssue({ code: 'custom', message: problem });
      })
      .optional(),
  );
}

function tokenUrlProblem(text: string, rule: BaseUrlRule): string | undefined {
  const setIt = `set it such as ${rule.example}`;
  const url = parseHttpUrl(text);
  if (!url) return `must be an http or https URL; ${setIt}`;

  if (url.username || url.password) {
    return `must not contain a user name or password, because the bot authenticates with ${rule.tokenName}; ${setIt}`;
  }
  // URL.search and URL.hash are empty for a bare ? or #, which would still end up in every request URL.
  if (text.includes('?') || text.includes('#')) {
    return `must not contain a query string (?) or fragment (#), because the bot appends API paths to it; ${setIt}`;
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return (
      `must use https, because every request carries ${rule.tokenName}; ${setIt}. ` +
      'Plain http is accepted only for a loopback host: localhost, 127.0.0.0/8, [::1] or [::ffff:127.0.0.1]'
    );
  }
  if (rule.path && !rule.path.pattern.test(url.pathname)) return `${rule.path.hint}; ${setIt}`;
  return undefined;
}

/** Parses an http or https URL; returns undefined for any other text. */
function parseHttpUrl(text: string): URL | undefined {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url : undefined;
  } catch {
    return undefined;
  }
}

/** `https://slack.com/api` names the same Web API as `https://slack.com/api/`. */
function withTrailingSlash(url: string | undefined): string | undefined {
  if (url === undefined || url.endsWith('/')) return url;
  return `${url}/`;
}

const IPV4_LOOPBACK = /^127\.\d+\.\d+\.\d+$/;
/** An IPv4-mapped IPv6 address in 127.0.0.0/8, as URL.hostname writes it: [::ffff:127.0.0.1] is [::ffff:7f00:1]. */
const IPV4_MAPPED_LOOPBACK = /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/;

/**
 * True for localhost (with or without the final dot of a fully qualified
 * name) and the IPv4, IPv6 and IPv4-mapped IPv6 loopback addresses, as
 * URL.hostname writes them.
 */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
  if (host === 'localhost' || host === '[::1]') return true;
  return IPV4_LOOPBACK.test(host) || IPV4_MAPPED_LOOPBACK.test(host);
}

/**
 * Builds the schema of PUBLIC_BASE_URL. A user name or password in it would
 * appear in every link built from it.
 */
const publicBaseUrl = optionalString.pipe(
  z
    .string()
    .superRefine((text, context) => {
      const problem = publicBaseUrlProblem(text);
      if (problem) context.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
);

function publicBaseUrlProblem(text: string): string | undefined {
  const setIt = 'set it such as https://runbook-bot.example.com';
  const url = parseHttpUrl(text);
  if (!url) return `must be an http or https URL; ${setIt}`;

  if (url.username || url.password) {
    return `must not contain a user name or password, because every link built from it shows them; ${setIt}`;
  }
  return undefined;
}

const VAULT_PATH_SEGMENT = /^[A-Za-z0-9_.-]+$/;

/**
 * Builds the schema of a Vault mount or secret path, which the bot puts into
 * the request URL. Segments of `.` or `..`, and characters such as `%`, `?`
 * or `#`, would make the URL name another Vault endpoint, so they are rejected.
 */
function vaultPath(example: string) {
  return optionalString.pipe(
    z
      .string()
      .superRefine((path, context) => {
        const problem = vaultPathProblem(path);
        if (problem) context.addIssue({ code: 'custom', message: `${problem}; set it such as ${example}` });
      })
      .optional(),
  );
}

function vaultPathProblem(path: string): string | undefined {
  // A leading or trailing / is harmless: VaultStore removes it.
  const segments = path.replace(/^\/+|\/+$/g, '').split('/');
  if (segments.some((segment) => segment === '.' || segment === '..')) {
    return 'must not contain . or .. segments, which would point the request outside the secret path';
  }
  if (segments.some((segment) => segment === '')) return 'must not contain empty segments (// or only /)';

  const invalid = segments.find((segment) => !VAULT_PATH_SEGMENT.test(segment));
  if (invalid !== undefined) {
    return `segment ${JSON.stringify(invalid)} must contain only letters, digits, _, . and -`;
  }
  return undefined;
}

/** `host` or `host:port`, with a port from 1 to 65535. */
function isHostAndPort(text: string): boolean {
  const match = /^[A-Za-z0-9.-]+(?::(\d{1,5}))?$/.exec(text);
  if (!match) return false;
  return match[1] === undefined || (Number(match[1]) >= 1 && Number(match[1]) <= 65535);
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const envNameList = optionalString.pipe(
  z
    .string()
    .superRefine((text, context) => {
      const names = text.split(',').map((name) => name.trim()).filter(Boolean);
      const invalid = names.find((name) => !ENV_NAME.test(name));
      if (invalid !== undefined) {
        context.addIssue({
          code: 'custom',
          message: `${JSON.stringify(invalid)} is not a variable name; list names of letters, digits and _, separated by commas`,
        });
      }
    })
    .optional(),
);

const sentrySlug = optionalString.pipe(
  z.string().regex(/^[A-Za-z0-9_-]+$/, 'must be a slug of letters, digits, _ and -, as in the Sentry URL').optional(),
);

const envSchema = z.object({
  SLACK_BOT_TOKEN: optionalString.describe('Bot token (xoxb-...) for Socket Mode and HTTP mode'),
  SLACK_APP_TOKEN: optionalString.describe('App-level token (xapp-...) with connections:write: turns on Socket Mode'),
  SLACK_SIGNING_SECRET: optionalString.describe('Signing secret of the Slack app: turns on HTTP mode'),
  SLACK_API_URL: tokenUrl({
    tokenName: 'SLACK_BOT_TOKEN',
    example: DEFAULT_SLACK_API_URL,
    path: { pattern: /\/api\/?$/, hint: 'must end in /api/' },
  })
    .transform(withTrailingSlash)
    .describe("Base URL of the Slack Web API, ending in /api/ (default Slack's; a missing final / is added); https, or http for a loopback host"),
  PORT: portString.describe('HTTP port for Slack requests, /healthz and the sandbox (default 3000)'),
  HOST: optionalString.describe('Address to listen on (default 127.0.0.1 in the sandbox, 0.0.0.0 otherwise)'),
  DATABASE_PATH: optionalString.describe('SQLite file for incidents, timers and the audit log (default ./var/runbook-bot.sqlite3)'),
  RUNBOOKS_DIR: optionalString.describe('Folder of extra runbook YAML files that add or override built-in runbooks'),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
      error: 'must be one of fatal, error, warn, info, debug, trace, silent',
    })
    .optional()
    .describe('pino log level (default info)'),
  INCIDENT_CHANNEL: channelId.describe('Channel id for incidents the bot opens by itself (schedules, alerts)'),
  OPS_CHANNEL: channelId.describe('Channel id for backup failures and digests (default INCIDENT_CHANNEL)'),
  RESPONDERS: optionalString.describe('Comma-separated Slack user ids (U...) and user group ids (S...) who may run actions'),
  REQUIRE_SECOND_APPROVER: booleanString.describe('true: destructive actions need a second responder to approve'),
  ALLOW_CLOCK_CONTROL: booleanString.describe('true: POST /admin/clock moves the bot clock forward; for tests only, never in production (the sandbox has its own clock control)'),
  PAGERDUTY_ROUTING_KEY: optionalString
    .pipe(z.string().regex(/^[A-Za-z0-9]{32}$/, 'must be the 32-character integration key of a PagerDuty Events API v2 integration').optional())
    .describe('Integration key for paging on-call; PAGERDUTY_ROUTING_KEY_<RUNBOOK> (for example PAGERDUTY_ROUTING_KEY_SECRET_KEY) overrides it per runbook'),
  PAGERDUTY_SERVER: optionalString
    .pipe(z.string().regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'must be a host name with an optional port, without https://').optional())
    .describe('Host and port of the PagerDuty Events API (default events.pagerduty.com); TLS is trusted through NODE_EXTRA_CA_CERTS'),
  SENTRY_DSN_BOT: optionalString.describe("DSN for the bot's own errors; without it Sentry reporting is off"),
  SENTRY_ENVIRONMENT: optionalString.describe('Sentry environment of the bot (default production)'),
  SECRET_STORE: optionalString
    .pipe(z.enum(['env', 'vault'], { error: 'must be env (a .env file) or vault (HashiCorp Vault KV version 2)' }).optional())
    .describe('Where the Django app reads its secrets: env (DJANGO_ENV_FILE) or vault (VAULT_ADDR, VAULT_TOKEN)'),
  DJANGO_ENV_FILE: optionalString.describe('The .env file of the Django app that the env secret store writes'),
  DJANGO_DATABASE_PATH: optionalString.describe("Path of the Django app's db.sqlite3 (sessions, accounts, backups)"),
  DJANGO_RESTART_COMMAND: optionalString.describe('Command that restarts the Django app, run without a shell (words or a JSON array)'),
  DJANGO_HEALTH_URL: optionalString
    .pipe(z.url({ protocol: /^https?$/, error: 'must be an http or https URL' }).optional())
    .describe('URL that answers 2xx once the restarted Django app serves requests'),
  DJANGO_FALLBACK_HOURS: optionalString
    .pipe(z.string().regex(/^([1-9]|[1-3]\d|4[0-8])$/, 'must be a whole number of hours from 1 to 48').optional())
    .describe('Hours a periodic rotation keeps the old key in DJANGO_SECRET_KEY_FALLBACKS (default 24, at most 48)'),
  VAULT_ADDR: tokenUrl({ tokenName: 'VAULT_TOKEN', example: 'https://vault.example.com:8200' })
    .describe('Address of HashiCorp Vault, for SECRET_STORE=vault; https, or http for a loopback host'),
  VAULT_TOKEN: optionalString.describe('Vault token with read and write access to the secret path'),
  VAULT_MOUNT: vaultPath('secret').describe('Mount of the KV version 2 engine (default secret)'),
  VAULT_PATH: vaultPath('django/production')
    .describe('Secret path inside the mount (default django): segments of letters, digits, _ . - without . or .. segments'),
  SENTRY_API_URL: tokenUrl({
    tokenName: 'SENTRY_AUTH_TOKEN',
    example: 'https://sentry.io/api/0/',
    path: { pattern: /\/api\/0\/?$/, hint: 'must end in /api/0/' },
  })
    .describe('Sentry REST API base, such as https://sentry.io/api/0/, for DSN rotation and the audit queries; https, or http for a loopback host'),
  SENTRY_AUTH_TOKEN: optionalString.describe('Sentry auth token with project:read, project:write and event:read'),
  SENTRY_ORG: sentrySlug.describe('Sentry organization slug'),
  SENTRY_PROJECT: sentrySlug.describe('Sentry project slug of the Django app'),
  SENTRY_LOOKBACK_DAYS: optionalString
    .pipe(z.string().regex(/^[1-9]\d{0,2}$/, 'must be a whole number of days').optional())
    .describe('Days before the declaration that the forged-session search covers (default 7)'),
  SENTRY_WEBHOOK_SECRET: optionalString.describe('Client secret of the Sentry integration; turns on POST /webhooks/sentry'),
  SENTRY_ALERT_CHANNEL: channelId.describe('Channel id for Sentry alerts (default INCIDENT_CHANNEL)'),
  SENTRY_ALERT_ACTION_JSON: optionalString
    .pipe(
      z
        .string()
        .refine((text) => {
          try {
            const value = JSON.parse(text) as unknown;
            return typeof value === 'object' && value !== null && !Array.isArray(value);
          } catch {
            return false;
          }
        }, 'must be a JSON object, the issue alert rule action that sends webhooks to the bot')
        .optional(),
    )
    .describe('Issue alert rule action (JSON) that sends webhooks to the bot, used when creating missing alert rules'),
  BACKUP_DIR: optionalString.describe('Folder for database and encrypted .env backups'),
  BACKUP_CRON: optionalString.describe('When backups run, as a cron expression in SCHEDULE_TZ (default 0 2 * * *: daily at 02:00; 0 * * * * for hourly)'),
  BACKUP_RETENTION_DAYS: optionalString
    .pipe(z.string().regex(/^[1-9]\d{0,3}$/, 'must be a whole number of days such as 30').optional())
    .describe('Days a backup is kept (default 30); the newest good backup is always kept'),
  BACKUP_ENCRYPTION_KEY: optionalString
    .pipe(
      z
        .string()
        .refine((key) => /^[0-9a-fA-F]{64}$/.test(key) || Buffer.from(key, 'base64').length === 32, 'must be 32 bytes as 64 hex digits or base64 (for example: openssl rand -hex 32)')
        .optional(),
    )
    .describe('AES-256-GCM key for .env backups: 32 bytes as 64 hex digits or base64'),
  SCHEDULE_TZ: optionalString.describe('IANA time zone of the schedules, such as Europe/London (default UTC)'),
  DJANGO_PROJECT_DIR: optionalString.describe('Working folder for the Django commands below'),
  DJANGO_STOP_COMMAND: optionalString.describe('Command that stops the Django app before a restore'),
  DJANGO_START_COMMAND: optionalString.describe('Command that starts the Django app after a restore'),
  DJANGO_MIGRATE_COMMAND: optionalString.describe('Command that runs manage.py migrate, for restores and restore tests'),
  RESTORE_TEST_STAGING_PATH: optionalString.describe('Where the monthly restore test puts its copy; never the production database'),
  RESTORE_TEST_TABLE: optionalString
    .pipe(z.string().regex(ENV_NAME, 'must be a table name of letters, digits and _, such as blog_post').optional())
    .describe('Table whose newest rows the restore test reports, such as blog_post'),
  RESTORE_TEST_SMOKE_COMMAND: optionalString.describe('Smoke-test command run against the staging copy (it gets RESTORE_TEST_DATABASE_PATH)'),
  AUDIT_SECURITY_CHECK_COMMAND: optionalString.describe('Command for the audit item security_check.py --json'),
  AUDIT_DEPLOY_CHECK_COMMAND: optionalString.describe('Command for the audit item manage.py check --deploy --fail-level WARNING'),
  AUDIT_REQUIRED_ENV: envNameList.describe('Comma-separated variables the audit checks are set in the Django .env (default DJANGO_SECRET_KEY,SENTRY_DSN)'),
  AUDIT_TLS_HOST: optionalString
    .pipe(
      z
        .string()
        .refine(isHostAndPort, 'must be a host name with an optional port from 1 to 65535, such as example.com:443, without https://')
        .optional(),
    )
    .describe('host[:port] whose TLS certificate the audit checks (warns under 30 days)'),
  AUDIT_PIP_COMMAND: optionalString.describe('Command for the audit item pip list --outdated --format=json'),
  PUBLIC_BASE_URL: publicBaseUrl.describe('Base URL of the bot as Slack and Sentry reach it, for links (optional)'),
});

export type Mode = 'socket' | 'http' | 'sandbox';

export interface Config {
  mode: Mode;
  slack: {
    botToken: string;
    appToken?: string;
    signingSecret: string;
    apiUrl: string;
  };
  port: number;
  host: string;
  databasePath: string;
  runbooksDir?: string;
  logLevel: string;
  incidentChannel?: string;
  opsChannel?: string;
  responders?: string[];
  requireSecondApprover: boolean;
  clockControl: boolean;
  pagerDuty: {
    routingKey?: string;
    server: string;
    /** Routing keys per runbook id, from PAGERDUTY_ROUTING_KEY_<RUNBOOK>. */
    routingKeys: Record<string, string>;
  };
  sentryDsn?: string;
  sentryEnvironment: string;
  /** The environment the configuration was read from, for action modules. */
  env: Readonly<Record<string, string | undefined>>;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Reads and checks the configuration from `env`; throws ConfigError listing every problem. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = envSchema.safeParse(env);
  const problems: string[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0]);
      const value = env[name];
      const shown = isSecretName(name) || value === undefined ? '' : ` (got ${JSON.stringify(maskUrlCredentials(value))})`;
      problems.push(`${name}: ${issue.message}${shown}`);
    }
  }
  const values = parsed.success ? parsed.data : (env as unknown as z.infer<typeof envSchema>);

  const mode = chooseMode(values, problems);
  checkTokenShapes(values, problems);
  const responders = values.RESPONDERS?.split(',').map((id) => id.trim()).filter(Boolean);
  for (const id of responders ?? []) {
    if (!/^[US][A-Z0-9]{2,}$/.test(id)) {
      problems.push(`RESPONDERS: "${id}" is not a Slack user id (U...) or user group id (S...)`);
    }
  }
  if (values.SECRET_STORE === 'vault' && (!values.VAULT_ADDR || !values.VAULT_TOKEN)) {
    problems.push('VAULT_ADDR and VAULT_TOKEN: both are needed when SECRET_STORE=vault; set them or use SECRET_STORE=env');
  }
  if (values.SECRET_STORE === 'env' && !values.DJANGO_ENV_FILE) {
    problems.push('DJANGO_ENV_FILE: needed when SECRET_STORE=env; set it to the .env file of the Django app');
  }
  if (mode === 'sandbox' && values.PORT === 0) {
    problems.push('PORT: the sandbox serves its own Web API on PORT, so it needs a fixed port; set PORT to a free port such as 3000');
  }
  const routingKeys = perRunbookRoutingKeys(env, problems);
  checkPaths(env, problems);
  checkCommands(env, problems);
  if (problems.length > 0) throw new ConfigError(problems.map(maskCredentialsInText));

  const sandbox = mode === 'sandbox';
  const port = values.PORT ?? 3000;
  return Object.freeze({
    mode,
    slack: {
      botToken: sandbox ? SANDBOX_BOT_TOKEN : values.SLACK_BOT_TOKEN!,
      appToken: values.SLACK_APP_TOKEN,
      signingSecret: sandbox ? SANDBOX_SIGNING_SECRET : (values.SLACK_SIGNING_SECRET ?? ''),
      apiUrl: sandbox ? `http://127.0.0.1:${port}/api/` : (values.SLACK_API_URL ?? DEFAULT_SLACK_API_URL),
    },
    port,
    host: values.HOST ?? (sandbox ? '127.0.0.1' : '0.0.0.0'),
    databasePath: values.DATABASE_PATH ?? (sandbox ? './var/sandbox-bot.sqlite3' : './var/runbook-bot.sqlite3'),
    runbooksDir: values.RUNBOOKS_DIR,
    logLevel: values.LOG_LEVEL ?? 'info',
    incidentChannel: values.INCIDENT_CHANNEL ?? (sandbox ? SANDBOX_CHANNEL : undefined),
    opsChannel: values.OPS_CHANNEL ?? values.INCIDENT_CHANNEL ?? (sandbox ? SANDBOX_OPS_CHANNEL : undefined),
    responders: respondersOrDefault(responders, sandbox),
    requireSecondApprover: values.REQUIRE_SECOND_APPROVER,
    clockControl: sandbox || values.ALLOW_CLOCK_CONTROL,
    pagerDuty: {
      routingKey: values.PAGERDUTY_ROUTING_KEY,
      server: values.PAGERDUTY_SERVER ?? 'events.pagerduty.com',
      routingKeys,
    },
    sentryDsn: values.SENTRY_DSN_BOT,
    sentryEnvironment: values.SENTRY_ENVIRONMENT ?? 'production',
    env: Object.freeze({ ...env }),
  });
}

// The sandbox's own workspace: fixed ids so its page and its tests agree.
export const SANDBOX_BOT_TOKEN = 'xoxb-sandbox-local-only';
export const SANDBOX_SIGNING_SECRET = 'sandbox-signing-secret-local-only';
export const SANDBOX_CHANNEL = 'C0SBXINCIDENTS';
export const SANDBOX_OPS_CHANNEL = 'C0SBXOPS';
export const SANDBOX_RESPONDERS = ['S0SBXRESP'];

function chooseMode(values: z.infer<typeof envSchema>, problems: string[]): Mode {
  const { SLACK_BOT_TOKEN: bot, SLACK_APP_TOKEN: app, SLACK_SIGNING_SECRET: signing } = values;
  if (!bot && !app && !signing) return 'sandbox';
  if (!bot) {
    problems.push('SLACK_BOT_TOKEN: missing; set the bot token (xoxb-...) from the Slack app page, or unset every SLACK_ variable to run the sandbox');
    return 'sandbox';
  }
  if (app) return 'socket';
  if (signing) return 'http';
  problems.push('SLACK_APP_TOKEN or SLACK_SIGNING_SECRET: missing; set SLACK_APP_TOKEN for Socket Mode or SLACK_SIGNING_SECRET for HTTP mode');
  return 'http';
}

function checkTokenShapes(values: z.infer<typeof envSchema>, problems: string[]): void {
  if (values.SLACK_BOT_TOKEN && !values.SLACK_BOT_TOKEN.startsWith('xoxb-')) {
    problems.push('SLACK_BOT_TOKEN: must be a bot token starting with xoxb-');
  }
  if (values.SLACK_APP_TOKEN && !values.SLACK_APP_TOKEN.startsWith('xapp-')) {
    problems.push('SLACK_APP_TOKEN: must be an app-level token starting with xapp-');
  }
}

/** Returns RESPONDERS when set; the sandbox falls back to its own responder group. */
function respondersOrDefault(responders: string[] | undefined, sandbox: boolean): string[] | undefined {
  if (responders && responders.length > 0) return responders;
  return sandbox ? SANDBOX_RESPONDERS : undefined;
}

/** PAGERDUTY_ROUTING_KEY_SECRET_KEY=... pages the secret-key runbook through its own service. */
function perRunbookRoutingKeys(env: Record<string, string | undefined>, problems: string[]): Record<string, string> {
  const keys: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    const match = /^PAGERDUTY_ROUTING_KEY_([A-Z0-9_]+)$/.exec(name);
    if (!match || !value) continue;
    if (!/^[A-Za-z0-9]{32}$/.test(value)) {
      problems.push(`${name}: must be the 32-character integration key of a PagerDuty Events API v2 integration`);
      continue;
    }
    keys[match[1].toLowerCase().replace(/_/g, '-')] = value;
  }
  return keys;
}

/** Commands from the configuration, with the folder each runs in. */
const COMMAND_VARIABLES: ReadonlyArray<readonly [name: string, folder: 'bot' | 'project']> = [
  // The rotation actions run the restart command in the bot's working folder.
  ['DJANGO_RESTART_COMMAND', 'bot'],
  ['DJANGO_STOP_COMMAND', 'project'],
  ['DJANGO_START_COMMAND', 'project'],
  ['DJANGO_MIGRATE_COMMAND', 'project'],
  ['RESTORE_TEST_SMOKE_COMMAND', 'project'],
  ['AUDIT_SECURITY_CHECK_COMMAND', 'project'],
  ['AUDIT_DEPLOY_CHECK_COMMAND', 'project'],
  ['AUDIT_PIP_COMMAND', 'project'],
];

/**
 * Parses each configured command and checks that its program exists and is
 * executable, so a wrong command stops the start-up instead of failing the
 * step that runs it during an incident.
 */
function checkCommands(env: Record<string, string | undefined>, problems: string[]): void {
  const projectDir = trimmed(env.DJANGO_PROJECT_DIR);
  for (const [name, folder] of COMMAND_VARIABLES) {
    const text = trimmed(env[name]);
    if (text === undefined) continue;

    // The command itself is never quoted: its arguments may hold a password.
    let argv: string[];
    try {
      argv = parseCommandLine(text);
    } catch (error) {
      if (!(error instanceof ActionError)) throw error;
      problems.push(`${name}: the command cannot be split into words (${String(error.details.reason ?? 'invalid quoting')}); fix its quotes or give a JSON array of words`);
      continue;
    }
    const assignment = /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(argv[0]);
    if (assignment) {
      problems.push(`${name}: the command starts with ${assignment[1]}=…, but commands run without a shell; set ${assignment[1]} in the bot's environment, or start the command with /usr/bin/env`);
      continue;
    }
    try {
      const cwd = folder === 'project' && projectDir !== undefined ? resolve(projectDir) : process.cwd();
      // Commands inherit the bot process's PATH (see commandEnv), not a configured one.
      locateProgram(argv[0], { cwd, searchPath: process.env.PATH });
    } catch (error) {
      if (!(error instanceof ActionError)) throw error;
      problems.push(`${name}: ${error.message}`);
    }
  }
}

/** Checks the files and folders that the actions need but never create. */
function checkPaths(env: Record<string, string | undefined>, problems: string[]): void {
  const check = (name: string, kind: 'file' | 'folder', fix: string) => {
    const path = trimmed(env[name]);
    if (path === undefined) return;
    const problem = pathProblem(statPath(path), kind);
    if (problem) problems.push(`${name}: ${problem}; ${fix} (got ${JSON.stringify(path)})`);
  };

  check('DJANGO_ENV_FILE', 'file', "the bot never creates it, so create it or set the path of the Django app's .env");
  check('DJANGO_PROJECT_DIR', 'folder', 'set the Django project folder, the one that contains manage.py');
  check('BACKUP_DIR', 'folder', 'the bot never creates it, so create it (mkdir -p) or set an existing folder');

  const staging = trimmed(env.RESTORE_TEST_STAGING_PATH);
  const production = trimmed(env.DJANGO_DATABASE_PATH);
  if (staging !== undefined && production !== undefined && isSameFile(staging, production)) {
    problems.push(
      `RESTORE_TEST_STAGING_PATH: is the production database DJANGO_DATABASE_PATH, which the restore test must never ` +
        `overwrite; set a separate file such as /srv/staging/db.sqlite3 (got ${JSON.stringify(staging)})`,
    );
  }
}

function pathProblem(found: { stats?: Stats; errno?: string }, kind: 'file' | 'folder'): string | undefined {
  const { stats, errno } = found;
  if (errno === 'EACCES') return `${kind} cannot be reached: permission denied for this process`;
  if (stats === undefined) return `${kind} not found`;
  if (kind === 'folder' && !stats.isDirectory()) return 'is not a folder';
  if (kind === 'file' && stats.isDirectory()) return 'is a folder, not a file';
  return undefined;
}

/** Stats of a path, following symbolic links; `errno` is set when the path cannot be examined. */
function statPath(path: string): { stats?: Stats; errno?: string } {
  try {
    return { stats: statSync(path, { throwIfNoEntry: false }) };
  } catch (error) {
    return { errno: (error as NodeJS.ErrnoException).code ?? 'unknown' };
  }
}

/** True when both paths name one file: the same path, or, when both exist, the same inode. */
function isSameFile(first: string, second: string): boolean {
  if (resolve(first) === resolve(second)) return true;
  const a = statPath(first).stats;
  const b = statPath(second).stats;
  return a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino;
}

function trimmed(value: string | undefined): string | undefined {
  const text = value?.trim();
  return text === '' ? undefined : text;
}

/**
 * Replaces the user-info part of a URL (user name and password) with ***, so a
 * problem can show the rest of the value. The mask runs from after `scheme://`
 * (or `scheme:`) to the last @, whether or not the value parses as a URL. A
 * password may contain / or a space, which moves where a parser thinks the
 * host starts. An @ in a path or query is masked with the user info.
 */
function maskUrlCredentials(value: string): string {
  const withoutQuery = maskQuery(value);
  const lastAt = withoutQuery.lastIndexOf('@');
  if (lastAt === -1) return withoutQuery;

  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:[/\\]*/.exec(withoutQuery);
  const start = scheme && scheme[0].length <= lastAt ? scheme[0].length : 0;
  return `${withoutQuery.slice(0, start)}***${withoutQuery.slice(lastAt)}`;
}

/** Replaces a URL's query string and fragment with …, since either may carry a token. */
function maskQuery(value: string): string {
  const cut = value.search(/[?#]/);
  return cut === -1 ? value : `${value.slice(0, cut + 1)}…`;
}

/**
 * Masks the user-info part of every `scheme://...@` in a problem, as a second
 * guard for messages that quote a value in their own words, such as a command
 * line that contains a URL.
 */
function maskCredentialsInText(text: string): string {
  return text.replace(/\b([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^\s"'<>]*@/g, '$1***@');
}

function isSecretName(name: string): boolean {
  return /TOKEN|SECRET|KEY|PASSWORD|DSN/.test(name);
}

/** Variable names with their descriptions, for the README's configuration table. */
export function describeConfig(): Array<{ name: string; description: string }> {
  return Object.entries(envSchema.shape).map(([name, schema]) => ({
    name,
    description: schema.description ?? '',
  }));
}
