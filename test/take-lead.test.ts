import { afterEach, describe, expect, it } from 'vitest';

import { ALEX, GUEST, SAM, startTestBot, type TestBot } from './helpers/bot.ts';

function ephemeralsTo(bot: TestBot, user: string): string[] {
  return bot.messages().filter((message) => message.ephemeralTo === user).map((message) => message.text);
}

function auditEvents(bot: TestBot): string[] {
  const rows = bot.bot.db.prepare('SELECT event FROM audit_log ORDER BY id').all() as Array<{ event: string }>;
  return rows.map((row) => row.event);
}

function leadOf(bot: TestBot, incidentId: number): string | undefined {
  return bot.bot.engine.findIncident(incidentId)?.leadUserId;
}

/** Returns the audit events and the counts of message edits and channel posts, which an ignored click must not change. */
function snapshot(bot: TestBot) {
  return {
    audit: auditEvents(bot),
    updates: bot.slack.workspace.callsOf('chat.update').length,
    posts: bot.slack.workspace.callsOf('chat.postMessage').length,
  };
}

describe('Take the lead button', () => {
  let bot: TestBot;

  afterEach(async () => {
    await bot.close();
  });

  it('current lead gets an ephemeral reply', async () => {
    bot = await startTestBot();
    await bot.command(ALEX, '/incident secret-key leak');
    const before = snapshot(bot);

    await bot.click(ALEX, 'incident.take_lead');

    expect(ephemeralsTo(bot, ALEX).at(-1)).toBe('You already lead incident #1, so nothing was changed.');
    expect(ephemeralsTo(bot, SAM)).toEqual([]);
    expect(snapshot(bot).audit).toEqual(before.audit);
    expect(snapshot(bot).updates).toBe(before.updates);
    expect(snapshot(bot).posts).toBe(before.posts);
    expect(leadOf(bot, 1)).toBe(ALEX);
  });

  it('non-responder lead gets no refusal', async () => {
    bot = await startTestBot();
    await bot.command(GUEST, '/incident secret-key leak');
    expect(leadOf(bot, 1)).toBe(GUEST);
    const before = snapshot(bot);

    await bot.click(GUEST, 'incident.take_lead');

    expect(ephemeralsTo(bot, GUEST).at(-1)).toBe('You already lead incident #1, so nothing was changed.');
    expect(snapshot(bot).audit).toEqual(before.audit);
    expect(snapshot(bot).audit).not.toContain('permission.refused');
    expect(snapshot(bot).updates).toBe(before.updates);
    expect(snapshot(bot).posts).toBe(before.posts);
  });

  it('another responder becomes the lead', async () => {
    bot = await startTestBot();
    await bot.command(ALEX, '/incident secret-key leak');
    const before = snapshot(bot);

    await bot.click(SAM, 'incident.take_lead');

    expect(leadOf(bot, 1)).toBe(SAM);
    expect(snapshot(bot).audit).toEqual([...before.audit, 'incident.lead_taken']);
    expect(snapshot(bot).updates).toBeGreaterThan(before.updates);
    expect(ephemeralsTo(bot, SAM)).toEqual([]);
  });
});
