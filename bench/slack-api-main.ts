import { startSlackApi } from './slack-api.ts';

/**
 * Runs the benchmark's Slack Web API double as its own process, so the bot's
 * Web API calls take no time from the process that measures acks. Reads
 * SLACK_BOT_TOKEN, listens on 127.0.0.1 port 0 and writes one JSON line with
 * the assigned port. GET /bench/stats returns the call and error counts.
 */
async function main(): Promise<void> {
  const botToken = process.env.SLACK_BOT_TOKEN;
  if (!botToken) {
    console.error('slack-api-main: set SLACK_BOT_TOKEN to the token the bot sends');
    process.exit(2);
  }

  const double = await startSlackApi({ botToken });
  const port = Number(new URL(double.url).port);
  console.log(JSON.stringify({ msg: 'slack api double started', port }));

  process.on('SIGTERM', () => {
    void double.close().finally(() => process.exit(0));
  });
}

void main();
