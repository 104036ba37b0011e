// Runs the sandbox against a real Django site, so these runbook actions run
// from the browser: rotate DJANGO_SECRET_KEY, delete all sessions, lock
// accounts and back up the database and the encrypted .env file.
// The restore stop, migrate and start commands and the restore test stay
// unconfigured.
//
//   node --import tsx scripts/sandbox-demo.ts        (PORT=3100 for another port)
//
// It starts a temporary copy of the test Django site (test/django/project,
// with the accounts alice, bob, carol, dave and erin), then the bot in sandbox
// mode in this process, wired to that site's .env file, database and restart
// command. Ctrl-C (SIGINT) or SIGTERM stops both and removes the temp folders.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pino from 'pino';

import type { Bot } from '../src/bot/app.ts';
import { ConfigError, loadConfig } from '../src/bot/config.ts';
import { createLogger, type Logger } from '../src/bot/logger.ts';
import { startBotForMode } from '../src/bot/start.ts';
import { DJANGO_PROJECT_DIR, DJANGO_PYTHON, DJANGO_USERS, startDjango, type DjangoSite } from '../test/helpers/django.ts';
import { startPagerDutyServer } from '../test/helpers/pagerduty-server.ts';
import { startSentryServer } from '../test/helpers/sentry-server.ts';
import { makeTestCertificates } from '../test/helpers/tls.ts';

/** Time allowed for stopping the bot and the Django site before the process exits anyway. */
const SHUTDOWN_TIMEOUT_MS = 20_000;

/** Exit code for a start-up problem the user can fix (configuration, port in use). */
const EXIT_USAGE = 2;

/**
 * Builds the bot's environment: sandbox mode (no SLACK_ variables), the env
 * secret store on the site's .env file, and a backup folder with a fresh
 * encryption key. Only PORT and LOG_LEVEL are taken from `source`.
 */
export function buildDemoEnv(
  site: DjangoSite,
  folder: string,
  source: NodeJS.ProcessEnv = process.env,
): Record<string, string> {
  return {
    ...buildBaseEnv(folder, source),
    SECRET_STORE: 'env',
    DJANGO_ENV_FILE: site.envFile,
    DJANGO_DATABASE_PATH: site.databasePath,
    DJANGO_RESTART_COMMAND: JSON.stringify(site.restartArgv),
    DJANGO_HEALTH_URL: `${site.baseUrl}/healthz/`,
    BACKUP_DIR: join(folder, 'backups'),
    BACKUP_ENCRYPTION_KEY: randomBytes(32).toString('hex'),
    // The demo's Django site cannot be stopped apart from its supervisor, so
    // the restore's stop and start steps are no-ops here.
    DJANGO_PROJECT_DIR,
    DJANGO_STOP_COMMAND: JSON.stringify(['/bin/true']),
    DJANGO_START_COMMAND: JSON.stringify(['/bin/true']),
    DJANGO_MIGRATE_COMMAND: JSON.stringify([DJANGO_PYTHON, 'manage.py', 'migrate', '--noinput']),
    RESTORE_TEST_STAGING_PATH: join(folder, 'staging.sqlite3'),
    AUDIT_DEPLOY_CHECK_COMMAND: JSON.stringify([DJANGO_PYTHON, 'manage.py', 'check', '--deploy', '--fail-level', 'WARNING']),
  };
}

/** Local PagerDuty and Sentry doubles for the demo, so paging and alerts can be seen. */
export async function startDemoServices(): Promise<{ env: Record<string, string>; ca: string; webhookSecret: string; stop(): Promise<void> }> {
  const certificates = makeTestCertificates();
  const routingKey = randomBytes(16).toString('hex');
  const pagerDuty = await startPagerDutyServer(certificates, [routingKey]);
  const token = `demo-${randomBytes(12).toString('hex')}`;
  const sentry = await startSentryServer({ org: 'demo', project: 'web', projectId: 1, tokens: { [token]: ['project:admin', 'project:write', 'project:read', 'event:read', 'alerts:write', 'org:read'] } });
  const webhookSecret = randomBytes(16).toString('hex');
  return {
    env: {
      PAGERDUTY_ROUTING_KEY: routingKey,
      PAGERDUTY_SERVER: `127.0.0.1:${pagerDuty.port}`,
      SENTRY_API_URL: sentry.baseUrl,
      SENTRY_AUTH_TOKEN: token,
      SENTRY_ORG: 'demo',
      SENTRY_PROJECT: 'web',
      SENTRY_WEBHOOK_SECRET: webhookSecret,
    },
    ca: certificates.ca,
    webhookSecret,
    stop: async () => {
      await pagerDuty.close();
      await sentry.close();
    },
  };
}

/** Builds the part of the bot's environment that does not depend on the Django site. */
function buildBaseEnv(folder: string, source: NodeJS.ProcessEnv): Record<string, string> {
  return {
    PORT: source.PORT ?? '3000',
    HOST: '127.0.0.1',
    LOG_LEVEL: source.LOG_LEVEL ?? 'info',
    DATABASE_PATH: join(folder, 'bot.sqlite3'),
  };
}

/** Formats the start-up banner: where to click, and how to log in to the Django site. */
export function describeDemo(sandboxUrl: string, site: DjangoSite): string {
  const users = Object.entries(DJANGO_USERS).map(([username, user]) => {
    const status = user.active ? '' : '  (inactive: login is rejected)';
    return `    ${username.padEnd(6)} ${`${username}-password`.padEnd(16)} ${user.email}${status}`;
  });

  return [
    '',
    'runbook-bot sandbox wired to the test Django site',
    `  Sandbox:  ${sandboxUrl}   (type /incident secret-key in #incidents)`,
    `  Django:   ${site.baseUrl}   (POST /login/, GET /whoami/, GET /healthz/)`,
    `  .env:     ${site.envFile}`,
    `  Database: ${site.databasePath}`,
    '  Test users (username, password, e-mail):',
    ...users,
    '  Press Ctrl-C to stop both.',
    '',
  ].join('\n');
}

/** Parts of the demo started so far, stopped in field order. */
interface Running {
  bot?: Bot;
  site?: DjangoSite;
  folder?: string;
  services?: { stop(): Promise<void> };
  logger?: Logger;
}

const running: Running = {};
let stopping = false;
let startup: Promise<void> = Promise.resolve();

/**
 * Stops the bot, then the Django site, removes the temp folder and exits with
 * `exitCode`. A second call (a second Ctrl-C) exits at once.
 */
async function shutdown(reason: string, exitCode: number): Promise<void> {
  if (stopping) {
    console.error(`sandbox-demo: ${reason} during shutdown; exiting without waiting`);
    process.exit(1);
  }
  stopping = true;
  running.logger?.info({ reason }, 'sandbox demo stopping');
  const forced = setTimeout(() => {
    console.error(`sandbox-demo: shutdown took longer than ${SHUTDOWN_TIMEOUT_MS / 1000} s; exiting`);
    process.exit(1);
  }, SHUTDOWN_TIMEOUT_MS);
  forced.unref();

  try {
    // A signal during start-up waits for the step in progress, so what that step starts is stopped too.
    await startup.catch(() => undefined);
    if (running.bot) await running.bot.stop();
    if (running.site) await running.site.stop();
    if (running.services) await running.services.stop();
    if (running.folder) await rm(running.folder, { recursive: true, force: true });
  } catch (error) {
    console.error('sandbox-demo: shutdown failed:', error);
    exitCode = 1;
  }

  running.logger?.info('sandbox demo stopped');
  running.logger?.flush();
  process.exit(exitCode);
}

async function main(): Promise<void> {
  // Signals may arrive while Django is still starting; shutdown stops whatever is up by then.
  process.on('SIGINT', () => void shutdown('SIGINT', 0));
  process.on('SIGTERM', () => void shutdown('SIGTERM', 0));

  running.folder = await mkdtemp(join(tmpdir(), 'runbook-sandbox-demo-'));
  await mkdir(join(running.folder, 'backups'));
  // Check PORT and LOG_LEVEL before the slow Django start.
  loadConfig(buildBaseEnv(running.folder, process.env));
  console.log('sandbox-demo: starting the test Django site (the first start migrates a database)');
  const site = await startDjango();
  running.site = site;
  if (stopping) return;

  const services = await startDemoServices();
  running.services = services;
  const config = loadConfig({ ...buildDemoEnv(site, running.folder), ...services.env });
  // Synchronous writes keep the log lines and the banner on stdout in order.
  const logger = createLogger(config.logLevel, pino.destination({ dest: 1, sync: true }));
  running.logger = logger;
  // Log and keep serving, as the bot's own entry point does.
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection'));

  const bot = await startBotForMode(config, logger, { pagerDutyCa: services.ca });
  running.bot = bot;
  if (stopping) return;

  const sandboxUrl = `http://127.0.0.1:${bot.port}`;
  logger.info({ sandboxUrl, djangoUrl: site.baseUrl }, 'sandbox demo ready');
  console.log(describeDemo(sandboxUrl, site));
  console.log(`  PagerDuty and Sentry: local doubles; send a Sentry alert with\n    node --import tsx scripts/send-sentry-alert.ts ${sandboxUrl} ${services.webhookSecret}\n`);
}

startup = main();
startup.catch((error: unknown) => {
  // Ctrl-C reaches the Django processes too, so a start-up step may fail while shutdown runs.
  // NOTE: when that kills `manage.py migrate`, startDjango leaves its runbook-django-* temp folder behind.
  if (stopping) return;
  if (error instanceof ConfigError) {
    console.error(`sandbox-demo cannot start: ${error.message}`);
    return shutdown('invalid configuration', EXIT_USAGE);
  }
  if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
    const port = process.env.PORT ?? '3000';
    console.error(`sandbox-demo cannot start: port ${port} is already in use. Stop the other process or set PORT to a free port.`);
    return shutdown('port in use', EXIT_USAGE);
  }
  console.error('sandbox-demo cannot start:', error);
  return shutdown('start-up failed', 1);
});
