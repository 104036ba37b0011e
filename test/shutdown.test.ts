import { connect, type Socket } from 'node:net';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';

import { signatureFor } from '../src/sandbox/delivery.ts';
import { startSlackDouble } from '../src/sandbox/server.ts';
import { BOT_TOKEN, startTestBot } from './helpers/bot.ts';
import { killChildBot, startChildBot, waitFor } from './helpers/child-bot.ts';
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
  it('exits after stdout reader left', async () => {
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

describe('bot process shutdown under load', () => {
  it('load shutdown keeps acked declarations', async () => {
    const dir = tempDir('shutdown-load-');
    const slack = await startSlackDouble({ botToken: BOT_TOKEN });
    const env = { SLACK_BOT_TOKEN: BOT_TOKEN, SLACK_SIGNING_SECRET: slack.signingSecret, SLACK_API_URL: slack.apiUrl, DATABASE_PATH: join(dir.path, 'bot.sqlite3') };
    try {
      const child = await startChildBot(env);
      const acked: string[] = [];
      let running = true;
      let sequence = 0;
      const stream = async () => {
        while (running) {
          // A channel of its own per command, so each one opens an incident.
          const channel = `C0LOAD${String(sequence++).padStart(5, '0')}`;
          const body = new URLSearchParams({ command: '/incident', text: 'secret-key load', user_id: 'U0SBXALEX', channel_id: channel, team_id: 'T0SBX', response_url: `${slack.apiUrl.replace(/\/api\/$/, '')}/sandbox/response/none`, trigger_id: '1' }).toString();
          const timestamp = Math.floor(Date.now() / 1000);
          try {
            const response = await fetch(`http://127.0.0.1:${child.port}/slack/events`, {
              method: 'POST',
              body,
              headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-slack-request-timestamp': String(timestamp), 'x-slack-signature': signatureFor(slack.signingSecret, timestamp, body) },
            });
            if (response.status === 200) acked.push(channel);
            await response.arrayBuffer();
          } catch {
            return;
          }
        }
      };
      const streams = [stream(), stream(), stream(), stream()];
      while (acked.length < 40) await new Promise((resolve) => setTimeout(resolve, 10));

      const signalled = performance.now();
      child.process.kill('SIGTERM');
      const code = await child.exited;
      const stoppedAfter = performance.now() - signalled;
      running = false;
      await Promise.all(streams);

      const restarted = await startChildBot(env);
      await waitFor(() => {
        const db = new Database(env.DATABASE_PATH, { readonly: true });
        try {
          return (db.prepare('SELECT count(*) AS n FROM accepted_declarations').get() as { n: number }).n === 0;
        } finally {
          db.close();
        }
      }, 10_000, 'the leftover declarations');
      const db = new Database(env.DATABASE_PATH, { readonly: true });
      const opened = new Set((db.prepare('SELECT channel_id AS channel FROM incidents').all() as Array<{ channel: string }>).map((row) => row.channel));
      db.close();
      await killChildBot(restarted, 'SIGTERM');

      expect(code).toBe(0);
      expect(stoppedAfter).toBeLessThan(5000);
      expect(acked.filter((channel) => !opened.has(channel))).toEqual([]);
    } finally {
      await slack.close();
      dir.remove();
    }
  }, 60_000);
});
