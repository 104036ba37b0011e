import pino, { type DestinationStream, type Logger } from 'pino';

import { LOG_REDACT_PATHS, scrubText } from './redact.ts';

export type { Logger } from 'pino';

/**
 * Creates the bot's pino logger: one JSON line per event, secrets redacted by
 * field name, and every message and error text passed through the scrubber.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'runbook-bot' },
      redact: { paths: LOG_REDACT_PATHS, censor: '[REDACTED]' },
      serializers: {
        err: (error: unknown) => {
          const serialized = pino.stdSerializers.err(error as Error);
          return {
            ...serialized,
            message: scrubText(serialized.message ?? ''),
            stack: scrubText(serialized.stack ?? ''),
          };
        },
      },
      hooks: {
        logMethod(args, method) {
          const scrubbed = args.map((arg) => (typeof arg === 'string' ? scrubText(arg) : arg));
          method.apply(this, scrubbed as Parameters<typeof method>);
        },
      },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ sync: false }),
  );
}
