import { WebAPIHTTPError, WebAPIPlatformError, WebAPIRequestError } from '@slack/web-api';
import pino from 'pino';

import { ConfigError, loadConfig } from './config.ts';
import { createLogger } from './logger.ts';
import { captureError, initSentry } from './sentry.ts';
import { RunbookLoadError } from '../runbooks/loader.ts';
import { ScheduleConfigError } from './schedules.ts';

/**
 * Entry point of `npm start`: reads the configuration, starts the bot (the
 * sandbox when no Slack credentials are set), and stops cleanly on SIGINT
 * and SIGTERM.
 */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`runbook-bot cannot start: ${error.message}`);
      process.exit(2);
    }
    throw error;
  }
  const logOutput = pino.destination({ sync: false });
  const logger = createLogger(config.logLevel, logOutput);
  let sentry;
  try {
    sentry = initSentry({ dsn: config.sentryDsn, environment: config.sentryEnvironment, logger });
  } catch (error) {
    console.error(`runbook-bot cannot start: SENTRY_DSN_BOT: ${(error as Error).message}`);
    process.exit(2);
  }

  let bot;
  try {
    const { startBotForMode } = await import('./start.ts');
    bot = await startBotForMode(config, logger);
  } catch (error) {
    if (error instanceof ScheduleConfigError) {
      logger.fatal({ variable: error.variable }, 'schedule configuration is invalid');
      console.error(`runbook-bot cannot start: ${error.message}`);
      process.exit(2);
    }
    if (error instanceof RunbookLoadError) {
      logger.fatal({ problems: error.problems }, 'runbooks are invalid');
      console.error(`runbook-bot cannot start: ${error.message}`);
      process.exit(2);
    }
    const slackError = describeSlackStartError(error, config.slack.apiUrl);
    if (slackError) {
      logger.fatal({ err: error }, 'Slack rejected or could not be reached at start-up');
      console.error(`runbook-bot cannot start: ${slackError}`);
      process.exit(2);
    }
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      logger.fatal({ port: config.port, host: config.host }, 'port already in use');
      console.error(`runbook-bot cannot start: ${config.host}:${config.port} is already in use. Stop the other process or set PORT to a free port.`);
      process.exit(2);
    }
    logger.fatal({ err: error }, 'bot failed to start');
    process.exit(1);
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutdown requested');
    const forced = setTimeout(() => {
      logger.error('shutdown took longer than 10 s; exiting');
      process.exit(1);
    }, 10_000);
    forced.unref();
    await bot.stop();
    await sentry.close();
    await closeLogOutput(logOutput);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  // Log and report, but keep serving: an incident bot must not die on one bad request.
  process.on('unhandledRejection', (reason) => {
    captureError(reason);
    logger.error({ err: reason }, 'unhandled promise rejection');
  });
  process.on('uncaughtException', (error) => {
    captureError(error);
    logger.error({ err: error }, 'uncaught exception');
  });
}

/**
 * Writes out the buffered log lines and closes stdout before exiting. On
 * exit, pino flushes what is left synchronously, and sonic-boom 4.2 retries
 * a failed write forever (EPIPE included), so a process whose stdout reader
 * is gone hung there, even on SIGTERM. Once the output is closed that flush
 * is skipped; when it cannot close within a second, the rest is dropped.
 */
async function closeLogOutput(output: ReturnType<typeof pino.destination>): Promise<void> {
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 1000);
    output.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    output.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    output.end();
  });
  if (!closed) output.flushSync = () => {};
}

/** Describes a start-up failure of auth.test in words an operator can act on. */
function describeSlackStartError(error: unknown, apiUrl: string): string | undefined {
  if (error instanceof WebAPIPlatformError) {
    const code = String(error.data.error);
    if (['invalid_auth', 'not_authed', 'account_inactive', 'token_revoked'].includes(code)) {
      return `Slack rejected SLACK_BOT_TOKEN (${code}); copy the bot token (xoxb-...) from the app's OAuth page again`;
    }
    return `auth.test failed with Slack error ${code}`;
  }
  if (error instanceof WebAPIRequestError || error instanceof WebAPIHTTPError) {
    return `cannot reach the Slack Web API at ${apiUrl} (${error.message}); check SLACK_API_URL and the network`;
  }
  return undefined;
}

void main();
