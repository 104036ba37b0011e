import { createHmac } from 'node:crypto';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ALEX, CHANNEL, GUEST, SAM, startTestBot, type TestBot } from './helpers/bot.ts';

function sign(secret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

function commandBody(text: string, user = ALEX): string {
  return new URLSearchParams({
    command: '/incident',
    text,
    user_id: user,
    user_name: 'alex',
    channel_id: CHANNEL,
    channel_name: 'incidents',
    team_id: 'T0SBX',
    team_domain: 'sandbox',
    api_app_id: 'A0SBXAPP',
    response_url: 'http://127.0.0.1:9/unused',
    trigger_id: '1.2.3',
    token: 'deprecated',
  }).toString();
}

async function post(bot: TestBot, body: string, headers: Record<string, string>): Promise<Response> {
  return fetch(bot.eventsUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
}

function ephemeralsFor(bot: TestBot, user: string): string[] {
  return bot.messages().filter((message) => message.ephemeralTo === user).map((message) => message.text);
}

function incidentMessages(bot: TestBot) {
  return bot.messages().filter((message) => message.threadTs === null && message.ephemeralTo === null && message.botId);
}

describe('Bolt HTTP receiver', () => {
  let bot: TestBot;
  beforeEach(async () => {
    bot = await startTestBot();
  });
  afterEach(async () => {
    await bot.close();
  });

  it('signed command is acknowledged with 200', async () => {
    const body = commandBody('help');
    const now = Math.floor(Date.now() / 1000);
    const response = await post(bot, body, { 'x-slack-request-timestamp': String(now), 'x-slack-signature': sign(bot.slack.signingSecret, now, body) });
    expect(response.status).toBe(200);
  });

  it('forged signature gets 401', async () => {
    const body = commandBody('secret-key forged');
    const now = Math.floor(Date.now() / 1000);
    const response = await post(bot, body, { 'x-slack-request-timestamp': String(now), 'x-slack-signature': sign('wrong-secret', now, body) });
    expect(response.status).toBe(401);
    expect(bot.bot.engine.listOpen()).toHaveLength(0);
  });

  it('timestamp six minutes old gets 401', async () => {
    const body = commandBody('secret-key stale');
    const old = Math.floor(Date.now() / 1000) - 360;
    const response = await post(bot, body, { 'x-slack-request-timestamp': String(old), 'x-slack-signature': sign(bot.slack.signingSecret, old, body) });
    expect(response.status).toBe(401);
  });

  it('timestamp six minutes ahead gets 401', async () => {
    const body = commandBody('secret-key future');
    const ahead = Math.floor(Date.now() / 1000) + 360;
    const response = await post(bot, body, { 'x-slack-request-timestamp': String(ahead), 'x-slack-signature': sign(bot.slack.signingSecret, ahead, body) });
    expect(response.status).toBe(401);
    expect(bot.bot.engine.listOpen()).toHaveLength(0);
  });

  it('malformed interactivity payload gets 400', async () => {
    const body = 'payload=%7Bnot-json';
    const now = Math.floor(Date.now() / 1000);
    const response = await post(bot, body, { 'x-slack-request-timestamp': String(now), 'x-slack-signature': sign(bot.slack.signingSecret, now, body) });
    expect(response.status).toBe(400);
  });

  it('healthz answers 200 when ready', async () => {
    const response = await fetch(`http://127.0.0.1:${bot.bot.port}/healthz`);
    expect(response.status).toBe(200);
  });

  it('declare posts the incident message and its checklist', async () => {
    await bot.command(ALEX, '/incident secret-key Key pasted in a public gist');
    const incident = incidentMessages(bot);
    expect(incident).toHaveLength(1);
    const thread = bot.messages().filter((message) => message.threadTs === incident[0].ts);
    expect(thread.some((message) => message.text.startsWith('Checklist for incident #1'))).toBe(true);
  });

  it('declare answers the user at once', async () => {
    await bot.command(ALEX, '/incident secret-key Key pasted in a public gist');
    expect(ephemeralsFor(bot, ALEX).some((text) => text.startsWith('Declared incident #1'))).toBe(true);
  });

  it('incident message shows severity, declarer and progress', async () => {
    await bot.command(ALEX, '/incident secret-key Key pasted in a public gist');
    const blocks = JSON.stringify(incidentMessages(bot)[0].blocks);
    expect(blocks).toContain('Critical');
    expect(blocks).toContain('Declared by <@U0SBXALEX>');
    expect(blocks).toContain('0 of 7 steps');
  });

  it('done button ticks the step', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    await bot.click(SAM, 'step.done', 'notify');
    const checklist = bot.messages().find((message) => message.text.startsWith('Checklist for incident #1'))!;
    expect(JSON.stringify(checklist.blocks)).toContain(':white_check_mark: *1. Notify the team');
    expect(JSON.stringify(incidentMessages(bot)[0].blocks)).toContain('1 of 7 steps');
  });

  it('unknown runbook names the valid ones and the closest', async () => {
    await bot.command(ALEX, '/incident secret-kee');
    const reply = ephemeralsFor(bot, ALEX).at(-1)!;
    expect(reply).toContain('There is no runbook called "secret-kee"');
    expect(reply).toContain('Did you mean `/incident secret-key`?');
    expect(reply).toContain('`sentry-dsn`');
    expect(bot.bot.engine.listOpen()).toHaveLength(0);
  });

  it('help lists the runbooks', async () => {
    await bot.command(ALEX, '/incident help');
    expect(ephemeralsFor(bot, ALEX).at(-1)).toContain('`secret-key`');
  });

  it('list links the open incidents', async () => {
    await bot.command(ALEX, '/incident secret-key one');
    await bot.command(ALEX, '/incident list');
    expect(ephemeralsFor(bot, ALEX).at(-1)).toMatch(/Open incidents \(1\)[\s\S]*<http[^|]+\|#1>/);
  });

  it('duplicate declaration offers to open another', async () => {
    await bot.command(ALEX, '/incident secret-key one');
    await bot.command(SAM, '/incident secret-key two');
    const reply = bot.messages().filter((message) => message.ephemeralTo === SAM).at(-1)!;
    expect(reply.text).toContain('already has an open incident here: #1');
    expect(JSON.stringify(reply.blocks)).toContain('incident.declare_anyway');
    expect(bot.bot.engine.listOpen()).toHaveLength(1);
  });

  it('oversized command text is refused', async () => {
    await bot.command(ALEX, `/incident secret-key ${'x'.repeat(8200)}`);
    expect(ephemeralsFor(bot, ALEX).at(-1)).toContain('characters long; the limit is');
    expect(bot.bot.engine.listOpen()).toHaveLength(0);
  });

  it('guest pressing done gets a refusal and changes nothing', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    await bot.click(GUEST, 'step.done', 'notify');
    expect(ephemeralsFor(bot, GUEST).at(-1)).toContain('Only responders may change incident #1');
    expect(JSON.stringify(incidentMessages(bot)[0].blocks)).toContain('0 of 7 steps');
  });

  it('button naming an incident of another channel is refused', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    const checklist = bot.messages().find((message) => message.text.startsWith('Checklist for incident #1'))!;
    const copy = bot.slack.workspace.addMessage({ ...checklist, channel: 'C0SBXOPS', threadTs: null, ts: bot.slack.workspace.nextTs() } as never);
    await bot.slack.delivery.click({ user: ALEX, channel: 'C0SBXOPS', messageTs: copy.ts, blockId: 'step|notify|actions', actionId: 'step.done' });
    await bot.settle();
    expect(ephemeralsFor(bot, ALEX).at(-1)).toContain('belongs to incident #1 in another channel');
    expect(JSON.stringify(incidentMessages(bot)[0].blocks)).toContain('0 of 7 steps');
  });

  it('click on a cancelled incident is refused', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    const checklist = bot.messages().find((message) => message.text.startsWith('Checklist for incident #1'))!;
    const blocksBefore = checklist.blocks;
    await bot.click(ALEX, 'incident.cancel');
    // Press a button of the checklist as it was before the cancel.
    bot.slack.workspace.addMessage({ ...checklist, ts: bot.slack.workspace.nextTs(), blocks: blocksBefore } as never);
    await bot.click(SAM, 'step.done', 'notify');
    expect(ephemeralsFor(bot, SAM).at(-1)).toContain('is cancelled');
  });
});
