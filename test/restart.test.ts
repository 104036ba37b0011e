import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { startSlackDouble, type SlackDouble } from '../src/sandbox/server.ts';
import { ALEX, BOT_TOKEN, CHANNEL } from './helpers/bot.ts';
import { advanceChildClock, killChildBot, startChildBot, waitFor, type ChildBot } from './helpers/child-bot.ts';
import { tempDir } from './helpers/engine.ts';

const MINUTE = 60_000;

function threadTexts(slack: SlackDouble): string[] {
  return slack.workspace.listMessages().filter((message) => message.threadTs !== null).map((message) => message.text);
}

function count(slack: SlackDouble, prefix: string): number {
  return threadTexts(slack).filter((text) => text.startsWith(prefix)).length;
}

describe('bot restart', () => {
  let slack: SlackDouble;
  let dir: ReturnType<typeof tempDir>;
  let env: Record<string, string>;
  let bot: ChildBot | undefined;

  beforeEach(async () => {
    slack = await startSlackDouble({ botToken: BOT_TOKEN });
    dir = tempDir('restart-');
    env = {
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_SIGNING_SECRET: slack.signingSecret,
      SLACK_API_URL: slack.apiUrl,
      DATABASE_PATH: join(dir.path, 'bot.sqlite3'),
      RESPONDERS: 'S0SBXRESP',
      ALLOW_CLOCK_CONTROL: 'true',
    };
  });
  afterEach(async () => {
    if (bot) await killChildBot(bot);
    await slack.close();
    dir.remove();
  });

  async function start(extra: Record<string, string> = {}): Promise<ChildBot> {
    bot = await startChildBot({ ...env, ...extra });
    slack.setBotEventsUrl(`http://127.0.0.1:${bot.port}/slack/events`);
    return bot;
  }

  it('escalation fires exactly once across a SIGKILL', async () => {
    let running = await start();
    await slack.delivery.command({ user: ALEX, channel: CHANNEL, text: '/incident secret-key Key pasted in a public gist' });
    await waitFor(() => threadTexts(slack).some((text) => text.startsWith('Checklist')), 10_000, 'the checklist');

    await advanceChildClock(running, 14 * MINUTE);
    await waitFor(() => count(slack, 'Reminder') === 2, 10_000, 'two reminders');
    await killChildBot(running);

    running = await start();
    expect(count(slack, 'Deadline missed')).toBe(0);
    await advanceChildClock(running, 2 * MINUTE);
    await waitFor(() => count(slack, 'Deadline missed') === 1, 10_000, 'the escalation');

    await killChildBot(running);
    running = await start();
    await advanceChildClock(running, 5 * MINUTE);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(count(slack, 'Deadline missed')).toBe(1);
    expect(count(slack, 'Reminder')).toBe(2);
  });

  it('deadline passed while the bot was down fires at once, marked late', async () => {
    let running = await start();
    await slack.delivery.command({ user: ALEX, channel: CHANNEL, text: '/incident secret-key leak' });
    await waitFor(() => threadTexts(slack).some((text) => text.startsWith('Checklist')), 10_000, 'the checklist');
    await advanceChildClock(running, 14 * MINUTE);
    await killChildBot(running);

    // Three minutes pass on the bot's clock while it is down.
    const db = new Database(env.DATABASE_PATH);
    const offset = Number((db.prepare("SELECT value FROM settings WHERE key = 'clock_offset_ms'").get() as { value: string }).value);
    db.prepare("UPDATE settings SET value = ? WHERE key = 'clock_offset_ms'").run(String(offset + 3 * MINUTE));
    db.close();

    running = await start();
    const escalation = await waitFor(() => slack.workspace.listMessages().find((message) => message.text.startsWith('Deadline missed')), 10_000, 'the escalation');
    expect(JSON.stringify(escalation.blocks)).toMatch(/Late by 2 min/);
  });

  it('action interrupted by a crash comes back as interrupted', async () => {
    const envFile = join(dir.path, '.env');
    writeFileSync(envFile, 'DJANGO_SECRET_KEY=old-key-0123456789-old-key-0123456789-old-key-01\n');
    const actionEnv = {
      SECRET_STORE: 'env',
      DJANGO_ENV_FILE: envFile,
      DJANGO_RESTART_COMMAND: JSON.stringify(['/bin/sleep', '30']),
      DJANGO_HEALTH_URL: 'http://127.0.0.1:1/healthz',
    };
    let running = await start(actionEnv);
    await slack.delivery.command({ user: ALEX, channel: CHANNEL, text: '/incident secret-key leak' });
    const checklist = await waitFor(() => slack.workspace.listMessages().find((message) => message.text.startsWith('Checklist')), 10_000, 'the checklist');
    await slack.delivery.click({ user: ALEX, channel: CHANNEL, messageTs: checklist.ts, blockId: 'step|rotate|actions', actionId: 'step.run', confirmed: true });
    await waitFor(() => JSON.stringify(slack.workspace.getMessage(CHANNEL, checklist.ts)?.blocks).includes('Running, started by'), 10_000, 'the running state');
    await killChildBot(running);

    running = await start(actionEnv);
    await waitFor(() => JSON.stringify(slack.workspace.getMessage(CHANNEL, checklist.ts)?.blocks).includes('Interrupted: the bot stopped'), 10_000, 'the interrupted state');
    const db = new Database(env.DATABASE_PATH, { readonly: true });
    const run = db.prepare("SELECT status FROM action_runs WHERE step_id = 'rotate'").get() as { status: string };
    db.close();
    expect(run.status).toBe('interrupted');
    expect(JSON.stringify(slack.workspace.getMessage(CHANNEL, checklist.ts)?.blocks)).toContain('Run again: Rotate DJANGO_SECRET_KEY');
  });
});
