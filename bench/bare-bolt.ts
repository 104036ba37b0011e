import type { AddressInfo, Server } from 'node:net';

import { App, HTTPReceiver, LogLevel } from '@slack/bolt';

/**
 * Runs the baseline of the ack benchmark: a Bolt app with Bolt's HTTPReceiver
 * and one `/incident` listener that acknowledges with an empty body. It makes
 * no Web API call, because the bot ID and bot user ID are given and no
 * listener uses the client.
 *
 * Reads SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN, listens on 127.0.0.1 port 0
 * and writes one JSON line with the assigned port.
 */
async function main(): Promise<void> {
  const signingSecret = process.env.SLACK_SIGNING_SECRET;
  const token = process.env.SLACK_BOT_TOKEN;
  if (!signingSecret || !token) {
    console.error('bare-bolt: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN');
    process.exit(2);
  }

  const receiver = new HTTPReceiver({ signingSecret, endpoints: '/slack/events' });
  const app = new App({
    token,
    botId: 'B0BENCHBOT',
    botUserId: 'U0BENCHBOT',
    receiver,
    logLevel: LogLevel.WARN,
  });
  app.command('/incident', async ({ ack }) => {
    await ack();
  });

  const server = (await receiver.start({ port: 0, host: '127.0.0.1' })) as Server;
  const { port } = server.address() as AddressInfo;
  console.log(JSON.stringify({ msg: 'bare bolt started', port }));

  process.on('SIGTERM', () => {
    void receiver.stop().finally(() => process.exit(0));
  });
}

void main();
