import { join } from 'node:path';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { startSlackDouble, type SlackDouble } from '../src/sandbox/server.ts';
import { getIncident } from '../src/store/incidents.ts';
import { ALEX, BOT_TOKEN, CHANNEL, startTestBot, type TestBot } from './helpers/bot.ts';
import { advanceChildClock, killChildBot, startChildBot, waitFor, type ChildBot } from './helpers/child-bot.ts';
import { tempDir } from './helpers/engine.ts';
import { startPagerDutyServer, type PagerDutyServer } from './helpers/pagerduty-server.ts';
import { makeTestCertificates, type TestCertificates } from './helpers/tls.ts';

const ROUTING_KEY = 'R0UT1NGKEY0123456789abcdefABCDEF';
const MINUTE = 60_000;

function threadTexts(bot: TestBot): string[] {
  return bot.messages().filter((message) => message.threadTs !== null).map((message) => message.text);
}

describe('paging through PagerDuty', () => {
  let certificates: TestCertificates;
  let pagerDuty: PagerDutyServer;
  let bot: TestBot;

  beforeAll(() => {
    certificates = makeTestCertificates();
  });

  beforeEach(async () => {
    pagerDuty = await startPagerDutyServer(certificates, [ROUTING_KEY]);
    bot = await startTestBot({
      env: { PAGERDUTY_ROUTING_KEY: ROUTING_KEY, PAGERDUTY_SERVER: `127.0.0.1:${pagerDuty.port}` },
      pagerDutyCa: certificates.ca,
    });
  });
  afterEach(async () => {
    await bot.close();
    await pagerDuty.close();
  });

  it('declaring secret-key triggers one page with the incident dedup key', async () => {
    await bot.command(ALEX, '/incident secret-key Key pasted in a public gist');
    expect(pagerDuty.events).toHaveLength(1);
    expect(pagerDuty.events[0].action).toBe('trigger');
    expect(pagerDuty.events[0].dedupKey).toBe(getIncident(bot.bot.db, 1)!.dedupKey);
  });

  it('page summary names the runbook and the Slack summary', async () => {
    await bot.command(ALEX, '/incident secret-key Key pasted in a public gist');
    const payload = pagerDuty.events[0].body.payload as { summary: string; custom_details: Record<string, unknown> };
    expect(payload.summary).toContain('secret-key');
    expect(payload.summary).toContain('Key pasted in a public gist');
    expect(payload.custom_details.runbook).toBe('secret-key');
  });

  it('page links point at the Slack thread', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    const links = pagerDuty.events[0].body.links as Array<{ href: string }>;
    expect(links[0].href).toContain(getIncident(bot.bot.db, 1)!.messageTs!.replace('.', ''));
  });

  it('notify step ticks itself and shows the dedup key', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    const checklist = bot.messages().find((message) => message.text.startsWith('Checklist'))!;
    const text = JSON.stringify(checklist.blocks);
    expect(text).toContain(':white_check_mark: *1. Notify the team');
    expect(text).toContain(getIncident(bot.bot.db, 1)!.dedupKey);
  });

  it('missed deadline escalates at critical severity under the same key', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    bot.bot.adjustableClock!.advance(16 * MINUTE);
    await waitFor(() => pagerDuty.events.length === 2, 5000, 'the escalation page');
    expect((pagerDuty.events[1].body.payload as { severity: string }).severity).toBe('critical');
    expect(pagerDuty.events[1].dedupKey).toBe(pagerDuty.events[0].dedupKey);
  });

  it('page again button pages on demand', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    await bot.click(ALEX, 'incident.page_again');
    expect(pagerDuty.events.map((event) => event.action)).toEqual(['trigger', 'trigger']);
  });

  it('cancelling the incident resolves the page', async () => {
    await bot.command(ALEX, '/incident secret-key leak');
    await bot.click(ALEX, 'incident.cancel');
    expect(pagerDuty.events.at(-1)!.action).toBe('resolve');
    expect(pagerDuty.openAlerts.size).toBe(0);
  });

  it('runbook that does not page sends nothing', async () => {
    await bot.command(ALEX, '/incident sentry-dsn leaked in a screenshot');
    expect(pagerDuty.requests).toHaveLength(0);
  });

  it('outage of several minutes delivers each event once, in order', async () => {
    await pagerDuty.stop();
    await bot.command(ALEX, '/incident secret-key leak');
    await bot.click(ALEX, 'incident.page_again');
    expect(threadTexts(bot).filter((text) => text.includes('PagerDuty is unreachable'))).toHaveLength(1);

    // Minutes of retries with backoff, on the bot's clock.
    for (let minute = 0; minute < 6; minute++) {
      bot.bot.adjustableClock!.advance(MINUTE);
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    expect(pagerDuty.events).toHaveLength(0);

    await pagerDuty.listen();
    // The longest backoff is five minutes; move past it and let both land.
    bot.bot.adjustableClock!.advance(6 * MINUTE);
    await waitFor(() => pagerDuty.events.length >= 2, 10_000, 'both pages');
    await bot.settle();
    expect(pagerDuty.events.map((event) => (event.body.payload as { custom_details: { reason: string } }).custom_details.reason)).toEqual(['incident declared', 'paged again from Slack']);
    expect(threadTexts(bot).some((text) => /reached PagerDuty after \d+ attempts/.test(text))).toBe(true);
  });

  it('rejected routing key shows once in the thread', async () => {
    await bot.close();
    bot = await startTestBot({
      env: { PAGERDUTY_ROUTING_KEY: 'XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX', PAGERDUTY_SERVER: `127.0.0.1:${pagerDuty.port}` },
      pagerDutyCa: certificates.ca,
    });
    await bot.command(ALEX, '/incident secret-key leak');
    await bot.click(ALEX, 'incident.page_again');
    const rejections = threadTexts(bot).filter((text) => text.includes('PagerDuty rejected the event'));
    expect(rejections).toHaveLength(1);
  });
});

describe('paging across a SIGKILL mid-outage', () => {
  let certificates: TestCertificates;
  let pagerDuty: PagerDutyServer;
  let slack: SlackDouble;
  let dir: ReturnType<typeof tempDir>;
  let child: ChildBot | undefined;

  beforeAll(() => {
    certificates = makeTestCertificates();
  });
  beforeEach(async () => {
    pagerDuty = await startPagerDutyServer(certificates, [ROUTING_KEY]);
    slack = await startSlackDouble({ botToken: BOT_TOKEN });
    dir = tempDir('paging-');
  });
  afterEach(async () => {
    if (child) await killChildBot(child);
    await slack.close();
    await pagerDuty.close();
    dir.remove();
  });
  afterAll(() => {});

  it('each event lands once after the restart', async () => {
    const env = {
      SLACK_BOT_TOKEN: BOT_TOKEN,
      SLACK_SIGNING_SECRET: slack.signingSecret,
      SLACK_API_URL: slack.apiUrl,
      DATABASE_PATH: join(dir.path, 'bot.sqlite3'),
      RESPONDERS: 'S0SBXRESP',
      ALLOW_CLOCK_CONTROL: 'true',
      PAGERDUTY_ROUTING_KEY: ROUTING_KEY,
      PAGERDUTY_SERVER: `127.0.0.1:${pagerDuty.port}`,
      NODE_EXTRA_CA_CERTS: certificates.caFile,
    };
    await pagerDuty.stop();
    child = await startChildBot(env);
    slack.setBotEventsUrl(`http://127.0.0.1:${child.port}/slack/events`);
    await slack.delivery.command({ user: ALEX, channel: CHANNEL, text: '/incident secret-key leak' });
    await waitFor(() => slack.workspace.listMessages().some((message) => message.text.includes('PagerDuty is unreachable')), 10_000, 'the queued notice');
    await killChildBot(child);

    await pagerDuty.listen();
    child = await startChildBot(env);
    slack.setBotEventsUrl(`http://127.0.0.1:${child.port}/slack/events`);
    await advanceChildClock(child, 10 * MINUTE);
    await waitFor(() => pagerDuty.events.length >= 1, 10_000, 'the page');
    await advanceChildClock(child, 10 * MINUTE);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const triggersForDeclaration = pagerDuty.events.filter((event) => (event.body.payload as { custom_details: { reason: string } }).custom_details.reason === 'incident declared');
    expect(triggersForDeclaration).toHaveLength(1);
  });
});
