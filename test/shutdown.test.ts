import { connect, type Socket } from 'node:net';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { startSlackDouble } from '../src/sandbox/server.ts';
import { BOT_TOKEN, startTestBot } from './helpers/bot.ts';
import { startChildBot } from './helpers/child-bot.ts';
import { tempDir } from './helpers/engine.ts';

/** Opens a loopback connection to the bot and writes `text` to it, leaving it open. */
async function openConnection(port: number, text: string): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => {});
  if (text) socket.write(text);
  return socket;
}

describe('bot shutdown', () => {
  it('is not held by an idle connection', async () => {
    const bot = await startTestBot();
    const socket = await openConnection(bot.bot.port!, '');
    const started = performance.now();
    await bot.close();
    expect(performance.now() - started).toBeLessThan(4000);
    socket.destroy();
  });

  it('is not held by a half-sent request', async () => {
    const bot = await startTestBot();
    const socket = await openConnection(bot.bot.port!, 'POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\ncommand=%2Finc');
    const started = performance.now();
    await bot.close();
    expect(performance.now() - started).toBeLessThan(4000);
    socket.destroy();
  });
});

describe('bot process shutdown', () => {
  it('exits on SIGTERM after its stdout reader left', async () => {
    const dir = tempDir('shutdown-pipe-');
    const slack = await startSlackDouble({ botToken: BOT_TOKEN });
    try {
      const child = await startChildBot({ SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_SIGNING_SECRET: slack.signingSecret, SLACK_API_URL: slack.apiUrl, DATABASE_PATH: join(dir.path, 'bot.sqlite3') });
      // The reader of the bot's output goes away, as when a terminal or a log shipper dies.
      child.process.stdout!.destroy();
      child.process.stderr!.destroy();
      for (let index = 0; index < 50; index++) await fetch(`http://127.0.0.1:${child.port}/healthz`);
      child.process.kill('SIGTERM');
      const code = await Promise.race([child.exited, new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 8000))]);
      if (code === 'still running') child.process.kill('SIGKILL');
      expect(code).toBe(0);
    } finally {
      await slack.close();
      dir.remove();
    }
  }, 30_000);
});
