// Drives the real bot in sandbox mode through Debian's Chromium: the bot runs
// as a child process (`node --import tsx src/bot/main.ts` with no SLACK_
// variables), serves its own sandbox page, and the test clicks that page the
// way a responder would.
import { createServer } from 'node:net';
import { join } from 'node:path';

import type { Locator, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { launchBrowser, type TestBrowser } from './helpers/browser.ts';
import { killChildBot, startChildBot, type ChildBot } from './helpers/child-bot.ts';
import { tempDir } from './helpers/engine.ts';

const ALEX = 'U0SBXALEX';
const GUEST = 'U0SBXGUEST';
const SCREENSHOT_PATH = '/tmp/sandbox-e2e.png';
const COMMAND = '/incident secret-key Key pasted in a public gist';
const SKIP_REASON = 'Sessions live in signed cookies, none in the database';

/** Page updates arrive over the live stream; a few seconds is generous on a loaded machine. */
const UPDATE_TIMEOUT_MS = 5_000;

/** pino's numeric level for `error`. */
const PINO_ERROR_LEVEL = 50;

/**
 * Finds a free loopback port by listening on port 0 and closing again. The
 * sandbox needs a fixed PORT because its Web API URL contains the port.
 */
function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Stops the bot with SIGTERM, as Ctrl-C would, and kills it if it has not exited in 10 s. */
async function stopBot(bot: ChildBot): Promise<void> {
  if (bot.process.exitCode !== null || bot.process.signalCode !== null) return;

  const forced = setTimeout(() => bot.process.kill('SIGKILL'), 10_000);
  await killChildBot(bot, 'SIGTERM');
  clearTimeout(forced);
}

/** Parses the bot's JSON log lines and returns those at error level or above. */
function errorLogLines(bot: ChildBot): string[] {
  return bot.output.filter((line) => {
    try {
      return (JSON.parse(line) as { level?: number }).level! >= PINO_ERROR_LEVEL;
    } catch {
      return line.trim() !== '';
    }
  });
}

describe('sandbox in the browser', () => {
  let browser: TestBrowser;
  let page: Page;
  let bot: ChildBot;
  let dir: ReturnType<typeof tempDir>;

  beforeAll(async () => {
    browser = await launchBrowser();
    page = browser.page;
    await page.setViewportSize({ width: 1400, height: 900 });
  });

  afterAll(async () => {
    await browser?.close();
  });

  // A fresh bot and database per test: the bot rejects a second open
  // secret-key incident, and the clock only moves forward.
  beforeEach(async () => {
    dir = tempDir('sandbox-browser-');
    const port = await findFreePort();
    bot = await startChildBot({
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_PATH: join(dir.path, 'bot.sqlite3'),
    });

    await page.goto(`http://127.0.0.1:${bot.port}/`);
    await page.locator('body[data-connected="true"]').waitFor();
    await actAs(ALEX);
  });

  afterEach(async () => {
    // Leave the page first, so its live stream does not retry against a stopped bot.
    await page.goto('about:blank');
    if (bot) await stopBot(bot);
    dir?.remove();
  });

  async function actAs(userId: string): Promise<void> {
    await page.locator('[data-testid="acting-user"]').selectOption(userId);
    await page.locator('#acting-user-note').getByText(userId).waitFor();
  }

  /** Locates the incident message in the channel, not its copy at the top of the thread. */
  function incidentMessage(): Locator {
    return page.locator('#messages [data-testid="message"]', {
      has: page.locator('[data-block-id="incident|1"]'),
    });
  }

  function progressText(): Promise<string | null> {
    return incidentMessage().locator('.section-text', { hasText: 'Progress:' }).textContent();
  }

  function step(stepId: string, part: 'text' | 'status' | 'actions'): Locator {
    return page.locator(`#thread .block[data-block-id="step|${stepId}|${part}"]`);
  }

  function stepButton(stepId: string, actionId: string): Locator {
    return step(stepId, 'actions').locator(`[data-action-id="${actionId}"]`);
  }

  function threadTexts(): Promise<string[]> {
    return page.locator('#thread-messages > [data-testid="message"]').allTextContents();
  }

  /** Types the command in the channel composer and opens the incident's thread. */
  async function declareAndOpenThread(): Promise<void> {
    const composer = page.locator('[data-testid="composer"]');
    await composer.fill(COMMAND);
    await composer.press('Enter');

    await incidentMessage().waitFor();
    await incidentMessage().locator('[data-open-thread]').click();
    await stepButton('notify', 'step.done').waitFor();
  }

  it('responder ticks step one', async () => {
    await declareAndOpenThread();
    expect(await progressText()).toContain('0 of 7 steps');

    await stepButton('notify', 'step.done').click();

    await expect
      .poll(() => step('notify', 'status').textContent(), { timeout: UPDATE_TIMEOUT_MS })
      .toMatch(/^Done by @Alex at /);
    await expect.poll(progressText, { timeout: UPDATE_TIMEOUT_MS }).toContain('1 of 7 steps');
    expect(await step('notify', 'text').textContent()).toMatch(/^✅ 1\. Notify the team/);
    expect(await stepButton('notify', 'step.done').count()).toBe(0);
    expect(await stepButton('notify', 'step.undo').count()).toBe(1);
    expect(await incidentMessage().locator('.edited').count()).toBe(1);
    expect(await page.locator('#composer-input').inputValue()).toBe('');
    expect(errorLogLines(bot)).toEqual([]);

    await page.screenshot({ path: SCREENSHOT_PATH });
  });

  it('skip asks for a reason', async () => {
    await declareAndOpenThread();

    await stepButton('invalidate', 'step.skip').click();
    const modal = page.locator('[data-testid="modal"]');
    await modal.waitFor();
    expect(await modal.locator('.modal-header h3').textContent()).toBe('Skip step');

    await modal.locator('textarea[data-block-id="reason"]').fill(SKIP_REASON);
    await modal.locator('[data-modal-submit]').click();
    await modal.waitFor({ state: 'detached' });

    await expect
      .poll(() => step('invalidate', 'status').textContent(), { timeout: UPDATE_TIMEOUT_MS })
      .toMatch(new RegExp(`^Skipped by @Alex at .+: ${SKIP_REASON}$`));
    expect(await step('invalidate', 'text').textContent()).toMatch(/^⏩ 3\. Invalidate/);
    expect(await stepButton('invalidate', 'step.undo').count()).toBe(1);
    expect(await progressText()).toContain('1 of 7 steps');
  });

  it('guest press is refused', async () => {
    await declareAndOpenThread();
    await actAs(GUEST);

    await stepButton('notify', 'step.done').click();

    const refusal = page.locator('.message.ephemeral', { hasText: 'Only responders may change' });
    await refusal.first().waitFor({ timeout: UPDATE_TIMEOUT_MS });
    expect(await refusal.count()).toBe(1);
    expect(await refusal.locator('.message-text').textContent()).toContain('incident #1');
    expect(await refusal.locator('.ephemeral-note').textContent()).toBe('Only visible to you');
    expect(await stepButton('notify', 'step.done').count()).toBe(1);
    expect(await progressText()).toContain('0 of 7 steps');

    await actAs(ALEX);
    expect(await refusal.count()).toBe(0);
  });

  it('clock steps fire the reminder, then the escalation', async () => {
    await declareAndOpenThread();
    const before = await threadTexts();

    const reminders = () =>
      threadTexts().then((texts) => texts.filter((text) => text.includes('⏰ Reminder:')).length);
    const escalations = () =>
      threadTexts().then((texts) => texts.filter((text) => text.includes('Deadline missed on')).length);

    // Ten minutes in: the reminder five minutes before the deadline.
    await page.locator('[data-advance-ms="300000"]').click();
    await page.locator('[data-advance-ms="300000"]').click();
    await expect.poll(reminders, { timeout: UPDATE_TIMEOUT_MS }).toBe(1);

    // Fifteen minutes in: the deadline passed. The one-minute reminder was
    // jumped over and is skipped, because it would only echo the escalation.
    await page.locator('[data-advance-ms="300000"]').click();
    await expect.poll(escalations, { timeout: UPDATE_TIMEOUT_MS }).toBe(1);
    expect(await reminders()).toBe(1);
    expect(before.filter((text) => text.includes('Reminder:'))).toEqual([]);
    expect(await page.locator('#thread .mention', { hasText: '@channel' }).count()).toBe(1);
    await expect
      .poll(() => step('rotate', 'status').textContent(), { timeout: UPDATE_TIMEOUT_MS })
      .toContain('Deadline missed: was due');
    await expect.poll(progressText, { timeout: UPDATE_TIMEOUT_MS }).toContain('overdue by');
  });

  it('page stays on loopback without errors', () => {
    expect(browser.blockedRequests).toEqual([]);
    expect(browser.pageErrors).toEqual([]);
  });
});
