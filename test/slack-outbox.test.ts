import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ALEX, SAM, startTestBot, type TestBot } from './helpers/bot.ts';
import { waitFor } from './helpers/child-bot.ts';

function checklistBlocks(bot: TestBot): string {
  return JSON.stringify(bot.messages().find((message) => message.text.startsWith('Checklist for incident #1'))!.blocks);
}

function incidentBlocks(bot: TestBot): string {
  return JSON.stringify(bot.messages().find((message) => message.text.startsWith('DJANGO_SECRET_KEY compromised (#1)'))!.blocks);
}

describe('Slack updates through the outbox', () => {
  let bot: TestBot;
  beforeEach(async () => {
    bot = await startTestBot();
    await bot.command(ALEX, '/incident secret-key leak');
  });
  afterEach(async () => {
    await bot.close();
  });

  it('update rate-limited by Slack lands after Retry-After', async () => {
    bot.slack.workspace.injectFault({ method: 'chat.update', status: 429, retryAfterSeconds: 1, times: 2 });
    await bot.click(SAM, 'step.done', 'notify');
    await waitFor(() => incidentBlocks(bot).includes('1 of 7 steps'), 10_000, 'the update after the rate limit');
    expect(checklistBlocks(bot)).toContain(':white_check_mark: *1. Notify the team');
  });

  it('updates during a Slack outage merge and the final state lands', async () => {
    bot.slack.workspace.injectFault({ method: 'chat.update', status: 503, times: 4 });
    await bot.click(SAM, 'step.done', 'notify');
    await bot.click(SAM, 'step.done', 'invalidate');
    await bot.click(SAM, 'step.done', 'audit');
    // Retries back off for a few seconds; move the bot's clock past them.
    for (let round = 0; round < 20 && !incidentBlocks(bot).includes('3 of 7 steps'); round++) {
      bot.bot.adjustableClock!.advance(30_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(incidentBlocks(bot)).toContain('3 of 7 steps');
    const pendingRefreshes = bot.bot.db.prepare("SELECT count(*) AS n FROM outbox WHERE status = 'pending'").get() as { n: number };
    expect(pendingRefreshes.n).toBe(0);
  });

  it('merged refreshes send fewer updates than changes', async () => {
    bot.slack.workspace.injectFault({ method: 'chat.update', status: 503, times: 1 });
    const before = bot.slack.workspace.callsOf('chat.update').length;
    await Promise.all(['notify', 'invalidate', 'audit', 'lock'].map((step) => bot.slack.delivery.click({ user: SAM, channel: 'C0SBXINCIDENTS', messageTs: bot.messages().find((message) => message.text.startsWith('Checklist'))!.ts, blockId: `step|${step}|actions`, actionId: 'step.done' })));
    for (let round = 0; round < 20 && !incidentBlocks(bot).includes('4 of 7 steps'); round++) {
      bot.bot.adjustableClock!.advance(30_000);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await bot.settle();
    expect(incidentBlocks(bot)).toContain('4 of 7 steps');
    const updates = bot.slack.workspace.callsOf('chat.update').length - before;
    expect(updates).toBeLessThan(4 * 2 + 1);
  });
});

describe('Slack posts across a crash mid-delivery', () => {
  it('post that reached Slack before the crash is not posted again', async () => {
    const { startSlackDouble } = await import('../src/sandbox/server.ts');
    const { tempDir } = await import('./helpers/engine.ts');
    const { BOT_TOKEN } = await import('./helpers/bot.ts');
    const slack = await startSlackDouble({ botToken: BOT_TOKEN });
    const dir = tempDir('crash-post-');
    try {
      const first = await startTestBot({ slack, dir: dir.path });
      await first.command(ALEX, '/incident secret-key leak');
      first.bot.adjustableClock!.advance(15 * 60_000);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await first.settle();
      const escalations = () => slack.workspace.listMessages().filter((message) => message.text.startsWith('Deadline missed')).length;
      expect(escalations()).toBe(1);
      // The process "died" after Slack accepted the post but before the outbox row was marked delivered.
      first.bot.db.prepare("UPDATE outbox SET status = 'pending', in_flight = 1, delivered_at = NULL WHERE kind = 'thread_post' AND payload LIKE '%Deadline missed%'").run();
      await first.bot.outbox.stop();
      await first.bot.stop();

      const second = await startTestBot({ slack, dir: dir.path });
      await second.settle();
      expect(escalations()).toBe(1);
      const row = second.bot.db.prepare("SELECT status FROM outbox WHERE kind = 'thread_post' AND payload LIKE '%Deadline missed%'").get() as { status: string };
      expect(row.status).toBe('delivered');
      await second.close();
    } finally {
      await slack.close();
      dir.remove();
    }
  });
});

describe('incident message across a crash in a busy channel', () => {
  it('not reposted behind 250 messages', async () => {
    const { startSlackDouble } = await import('../src/sandbox/server.ts');
    const { tempDir } = await import('./helpers/engine.ts');
    const { BOT_TOKEN, CHANNEL } = await import('./helpers/bot.ts');
    const slack = await startSlackDouble({ botToken: BOT_TOKEN });
    const dir = tempDir('crash-busy-');
    try {
      const first = await startTestBot({ slack, dir: dir.path });
      await first.command(ALEX, '/incident secret-key leak');
      // The process "died" after chat.postMessage landed but before its ts was stored.
      first.bot.db.prepare('UPDATE incidents SET message_ts = NULL').run();
      first.bot.db.prepare("UPDATE outbox SET status = 'pending', in_flight = 1, delivered_at = NULL WHERE kind = 'post_incident'").run();
      await first.bot.outbox.stop();
      await first.bot.stop();
      for (let index = 0; index < 250; index++) slack.workspace.addMessage({ channel: CHANNEL, userId: 'U0SBXSAM', text: `chatter ${index}` });

      const second = await startTestBot({ slack, dir: dir.path });
      await second.settle();
      const incidentPosts = slack.workspace.listMessages().filter((message) => message.threadTs === null && message.text.includes('(#1)'));
      expect(incidentPosts).toHaveLength(1);
      await second.close();
    } finally {
      await slack.close();
      dir.remove();
    }
  });
});

describe('incident that Slack refuses to post', () => {
  it('is reported in the ops channel', async () => {
    const bot = await startTestBot({ env: { OPS_CHANNEL: 'C0SBXOPS' } });
    try {
      bot.bot.engine.declare({ runbook: bot.bot.runbooks.find('sentry-dsn')!, summary: 'x', channelId: 'C0NOTHERE', userId: ALEX });
      await bot.settle();
      const notice = bot.messages().find((message) => message.channel === 'C0SBXOPS' && message.text.includes('could not be posted'));
      expect(notice?.text).toContain('channel_not_found');
    } finally {
      await bot.close();
    }
  });
});
