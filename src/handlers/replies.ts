import { randomUUID } from 'node:crypto';

import type { RespondFn } from '@slack/bolt';

import { UserError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { captureError } from '../bot/sentry.ts';

/**
 * Turns an error from the engine into the user's reply. A UserError becomes
 * its message; anything else is a fault, logged with an error id that the
 * reply shows.
 */
export function describeError(error: unknown, logger: Logger, fields: Record<string, unknown>): string {
  if (error instanceof UserError) {
    logger.info({ ...fields, code: error.code }, 'request rejected');
    return error.message;
  }
  const sentryId = captureError(error, { incidentId: typeof fields.incidentId === 'number' ? fields.incidentId : null, slackIds: slackIdsOf(fields) });
  const errorId = sentryId?.slice(0, 8) ?? randomUUID().slice(0, 8);
  logger.error({ ...fields, errorId, err: error }, 'request failed');
  return `Something went wrong on the bot's side (error id ${errorId}). Nothing was changed by this click; try again, and give the id to whoever runs the bot if it keeps failing.`;
}

function slackIdsOf(fields: Record<string, unknown>): Record<string, string> {
  const ids: Record<string, string> = {};
  for (const key of ['userId', 'channelId', 'teamId']) {
    if (typeof fields[key] === 'string') ids[key] = fields[key] as string;
  }
  return ids;
}

/** Sends an ephemeral reply through the response URL; a failure is logged, never thrown. */
export async function replyEphemeral(respond: RespondFn, text: string, logger: Logger, fields: Record<string, unknown>): Promise<void> {
  try {
    await respond({ response_type: 'ephemeral', replace_original: false, text });
  } catch (error) {
    logger.warn({ ...fields, err: error }, 'ephemeral reply failed');
  }
}
