import { join } from 'node:path';

import { createBot, type Bot } from '../../src/bot/app.ts';
import { loadConfig } from '../../src/bot/config.ts';
import type { ActionRegistry } from '../../src/runbooks/actions-registry.ts';
import { startSlackDouble, type SlackDouble } from '../../src/sandbox/server.ts';
import type { StoredMessage } from '../../src/store/sandbox-messages.ts';
import { captureLogger, tempDir, type LogCapture } from './engine.ts';

export const BOT_TOKEN = 'xoxb-test-0123456789-abcdefghij';
export const CHANNEL = 'C0SBXINCIDENTS';
export const ALEX = 'U0SBXALEX';
export const SAM = 'U0SBXSAM';
export const GUEST = 'U0SBXGUEST';

export interface TestBot {
  bot: Bot;
  slack: SlackDouble;
  logs: LogCapture;
  eventsUrl: string;
  dir: string;
  /** Types a slash command in the channel, as `user`. */
  command(user: string, text: string): Promise<unknown>;
  /** Presses a button found by action id (and optionally step id) in the channel or its threads. */
  click(user: string, actionId: string, stepId?: string, options?: { confirmed?: boolean }): Promise<unknown>;
  /** Waits until the outbox has nothing left to deliver. */
  settle(): Promise<void>;
  messages(): StoredMessage[];
  close(): Promise<void>;
}

/**
 * Starts the bot in HTTP mode on 127.0.0.1 against the Slack double: Bolt's
 * real HTTP receiver, fed requests the double signs as Slack does.
 */
export async function startTestBot(
  options: { env?: Record<string, string>; actions?: ActionRegistry; dir?: string; pagerDutyCa?: string; slack?: SlackDouble } = {},
): Promise<TestBot> {
  const dir = options.dir ? { path: options.dir, remove: () => {} } : tempDir('bot-');
  const ownSlack = !options.slack;
  const slack = options.slack ?? (await startSlackDouble({ botToken: BOT_TOKEN }));
  const { logger, logs } = captureLogger();
  const config = loadConfig({
    SLACK_BOT_TOKEN: BOT_TOKEN,
    SLACK_SIGNING_SECRET: slack.signingSecret,
    SLACK_API_URL: slack.apiUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_PATH: join(dir.path, 'bot.sqlite3'),
    RESPONDERS: 'S0SBXRESP',
    ALLOW_CLOCK_CONTROL: 'true',
    ...options.env,
  });
  const bot = createBot({ config, logger, actions: options.actions, pagerDutyCa: options.pagerDutyCa });
  await bot.start();
  const eventsUrl = `http://127.0.0.1:${bot.port}/slack/events`;
  slack.setBotEventsUrl(eventsUrl);

  // Bolt acknowledges Slack before a listener finishes, so "settled" means: no
  // due outbox message and no new outbox or audit row for a short while.
  const settle = async () => {
    let previous = '';
    for (let round = 0; round < 200; round++) {
      await bot.listenersIdle();
      await bot.engine.settle();
      await bot.outbox.idle();
      const state = bot.db
        .prepare(
          `SELECT (SELECT count(*) FROM outbox) || '/' || (SELECT count(*) FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?)
             || '/' || (SELECT count(*) FROM action_runs WHERE status = 'running') || '/' || (SELECT count(*) FROM audit_log) AS s`,
        )
        .get(bot.clock.now()) as { s: string };
      const [, due, running] = state.s.split('/');
      if (state.s === previous && due === '0' && running === '0') return;
      previous = state.s;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };

  const findButton = (actionId: string, stepId?: string) => {
    const messages = slack.workspace.listMessages().filter((message) => message.channel === CHANNEL).reverse();
    for (const message of messages) {
      for (const block of (message.blocks ?? []) as Array<{ block_id?: string; elements?: Array<{ action_id?: string }> }>) {
        if (stepId && !block.block_id?.startsWith(`step|${stepId}|`) && !block.block_id?.startsWith(`watch|${stepId}`)) continue;
        if (block.elements?.some((element) => element.action_id === actionId)) return { message, blockId: block.block_id! };
      }
    }
    throw new Error(`no button ${actionId}${stepId ? ` on step ${stepId}` : ''} in the channel`);
  };

  return {
    bot,
    slack,
    logs,
    eventsUrl,
    dir: dir.path,
    command: async (user, text) => {
      const result = await slack.delivery.command({ user, channel: CHANNEL, text });
      await settle();
      return result;
    },
    click: async (user, actionId, stepId, clickOptions = {}) => {
      const { message, blockId } = findButton(actionId, stepId);
      const result = await slack.delivery.click({ user, channel: CHANNEL, messageTs: message.ts, blockId, actionId, confirmed: clickOptions.confirmed ?? true });
      await settle();
      return result;
    },
    settle,
    messages: () => slack.workspace.listMessages(),
    close: async () => {
      await bot.stop();
      if (ownSlack) await slack.close();
      dir.remove();
    },
  };
}
