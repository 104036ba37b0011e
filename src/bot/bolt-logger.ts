import { LogLevel, type Logger as BoltLogger } from '@slack/bolt';

import type { Logger } from './logger.ts';

/**
 * Bolt's and the Web API client's debug lines that carry whole request and
 * response bodies or headers. They are dropped: bodies may hold user text,
 * and the bot never logs request bodies, even at debug.
 */
const BODY_LINES = /^(http request (body|headers|result)|ack\(\) (call begins|response sent))/;

/** Bolt's logger interface over the bot's pino logger, so Bolt's lines are JSON too. */
export function boltLogger(logger: Logger): BoltLogger {
  const child = logger.child({ component: 'bolt' });
  let level = LogLevel.INFO;
  const text = (parts: unknown[]) => parts.map((part) => (typeof part === 'string' ? part : part instanceof Error ? part.message : JSON.stringify(part))).join(' ');
  return {
    debug: (...parts) => {
      // Bolt calls debug many times per request; format only when it is logged.
      if (!child.isLevelEnabled('debug')) return;
      const line = text(parts);
      if (!BODY_LINES.test(line)) child.debug(line);
    },
    info: (...parts) => child.info(text(parts)),
    warn: (...parts) => child.warn(text(parts)),
    error: (...parts) => child.error(text(parts)),
    setLevel: (next) => {
      level = next;
    },
    getLevel: () => level,
    setName: () => {},
  };
}
