// `npm start` runs the compiled bot from dist/. This builds into a folder of
// its own and starts that build in sandbox mode, so a file the build leaves
// out (a runbook, the sandbox page) fails here and not on a user's first start.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { killChildBot, startChildBot, type ChildBot } from './helpers/child-bot.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Returns a free loopback port. The sandbox needs a fixed PORT because it serves its own Web API. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const build = (out: string, ...flags: string[]) =>
  execFileSync(process.execPath, ['scripts/build.mjs', `--out=${out}`, ...flags], { cwd: ROOT, encoding: 'utf8' });

describe('compiled build', () => {
  // Inside the repository, so the compiled files find node_modules.
  mkdirSync(join(ROOT, 'var'), { recursive: true });
  const parent = mkdtempSync(join(ROOT, 'var', 'build-test-'));
  const out = relative(ROOT, join(parent, 'dist'));
  const data = mkdtempSync(join(parent, 'data-'));
  let bot: ChildBot;
  let firstOutput: string;
  let port: number;

  beforeAll(async () => {
    firstOutput = build(out);
    port = await freePort();
    bot = await startChildBot({ PORT: String(port), DATABASE_PATH: join(data, 'bot.sqlite3') }, 20_000, join(out, 'src/bot/main.js'));
  }, 60_000);

  afterAll(async () => {
    if (bot) await killChildBot(bot, 'SIGTERM');
    rmSync(parent, { recursive: true, force: true });
  });

  it('compiles when no build exists', () => {
    expect(firstOutput).toContain('build: compiling src/');
  });

  it('skips a build that is up to date', () => {
    const stamp = statSync(join(ROOT, out, '.built')).mtimeMs;
    build(out);
    expect(statSync(join(ROOT, out, '.built')).mtimeMs).toBe(stamp);
  });

  it('leaves no staging folder behind', () => {
    expect(existsSync(`${join(ROOT, out)}.${process.pid}`)).toBe(false);
  });

  it('serves the sandbox page', async () => {
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(await page.text()).toContain('<script');
  });

  it('declares from the built-in runbooks', async () => {
    const response = await fetch(`http://127.0.0.1:${port}/sandbox/command`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'U0SBXALEX', channel: 'C0SBXINCIDENTS', text: '/incident secret-key Key pasted in a gist' }),
    });
    expect(response.status).toBe(200);
  });

  it('posts the incident message', async () => {
    const deadline = Date.now() + 10_000;
    let titles: string[] = [];
    while (Date.now() < deadline) {
      const state = (await (await fetch(`http://127.0.0.1:${port}/sandbox/state`)).json()) as { messages?: Array<{ text?: string }> };
      titles = (state.messages ?? []).map((message) => message.text ?? '');
      if (titles.some((text) => text.includes('(#1)'))) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(titles.some((text) => text.includes('(#1)'))).toBe(true);
  });
});
