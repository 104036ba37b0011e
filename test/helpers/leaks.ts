import { existsSync, readFileSync } from 'node:fs';

import type { TestBot } from './bot.ts';

/** Every place a secret must never reach: Slack payloads, log lines and the bot's SQLite files. */
export function leakSites(bot: TestBot, secret: string): string[] {
  const sites: string[] = [];
  if (JSON.stringify(bot.slack.workspace.calls).includes(secret)) sites.push('Slack Web API calls');
  if (JSON.stringify(bot.slack.workspace.listMessages()).includes(secret)) sites.push('Slack messages');
  if (bot.logs.lines.some((line) => line.includes(secret))) sites.push('log lines');
  const dbPath = bot.bot.config.databasePath;
  for (const file of [dbPath, `${dbPath}-wal`]) {
    if (existsSync(file) && readFileSync(file).includes(Buffer.from(secret))) sites.push(file);
  }
  return sites;
}
