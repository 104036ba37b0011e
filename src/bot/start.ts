import { createBot, type Bot } from './app.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';

/** Creates and starts the bot; in sandbox mode with the local workspace beside it. */
export async function startBotForMode(config: Config, logger: Logger): Promise<Bot> {
  const bot = createBot({ config, logger });
  await bot.start();
  return bot;
}
