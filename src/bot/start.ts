import { dirname, join } from 'node:path';

import { createSandboxRoutes } from '../sandbox/server.ts';
import { SandboxWorkspace } from '../sandbox/workspace.ts';
import { createBot, type Bot, type BotOptions, type RouteContext } from './app.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';

/**
 * Creates and starts the bot. In sandbox mode the local workspace is served
 * on the bot's own port: its page, its Web API double under /api/, and the
 * deliveries it signs and posts to /slack/events as Slack would.
 */
export async function startBotForMode(config: Config, logger: Logger, options: Partial<BotOptions> = {}): Promise<Bot> {
  let workspace: SandboxWorkspace | undefined;
  // Open pages keep a live stream; aborting it lets the server close.
  const shutdown = new AbortController();
  const bot = createBot({
    config,
    logger,
    ...options,
    extraRoutes:
      config.mode === 'sandbox'
        ? (created) => sandboxRoutes(created, config, logger, shutdown.signal, (ws) => (workspace = ws))
        : options.extraRoutes,
  });
  const stop = bot.stop.bind(bot);
  bot.stop = async () => {
    shutdown.abort();
    await stop();
    workspace?.close();
  };
  await bot.start();
  if (config.mode === 'sandbox') {
    const url = `http://${config.host}:${bot.port}`;
    logger.info({ url }, 'sandbox workspace ready: open this URL in a browser');
    // In a terminal, also print the URL as plain text between the JSON log lines.
    if (process.stderr.isTTY) process.stderr.write(`\n  Sandbox: ${url}  (Ctrl-C stops the bot)\n\n`);
  }
  return bot;
}

function sandboxRoutes(bot: RouteContext, config: Config, logger: Logger, shutdownSignal: AbortSignal, keep: (workspace: SandboxWorkspace) => void) {
  const workspace = new SandboxWorkspace({
    dbPath: config.databasePath === ':memory:' ? ':memory:' : join(dirname(config.databasePath), 'sandbox-workspace.sqlite3'),
    botUserId: 'U0SBXBOT',
    botId: 'B0SBXBOT',
    teamId: 'T0SBX',
    clock: bot.clock,
  });
  keep(workspace);
  const origin = () => `http://127.0.0.1:${bot.port() ?? config.port}`;
  return createSandboxRoutes({
    workspace,
    botEventsUrl: () => `${origin()}/slack/events`,
    publicUrl: origin,
    signingSecret: config.slack.signingSecret,
    botToken: config.slack.botToken,
    clock: bot.adjustableClock!,
    shutdownSignal,
    logger: logger.child({ component: 'sandbox' }),
  });
}
