import { connect, type Socket } from 'node:net';

import { describe, expect, it } from 'vitest';

import { startTestBot } from './helpers/bot.ts';

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
