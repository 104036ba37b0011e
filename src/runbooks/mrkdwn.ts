/**
 * Text helpers for Slack's mrkdwn. Text that people wrote (summaries, runbook
 * titles, skip reasons) goes through `escapeText`, so `<!channel>` or `<@U1>`
 * shows as text and notifies nobody.
 */

/** Escapes the three characters Slack treats as control characters in mrkdwn. */
export function escapeText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * Shortens `text` to at most `max` characters, ending with an ellipsis, and
 * never cuts an escape sequence such as `&amp;` in half.
 */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = text.slice(0, Math.max(0, max - 1));
  const ampersand = cut.lastIndexOf('&');
  if (ampersand !== -1 && !cut.slice(ampersand).includes(';')) cut = cut.slice(0, ampersand);
  return `${cut}…`;
}

export function mentionUser(userId: string): string {
  return /^[UW][A-Z0-9]+$/.test(userId) ? `<@${userId}>` : escapeText(userId);
}

/**
 * Day and time, such as "today at 9:51 AM" or "Dec 4 at 9:51 AM". Slack's
 * clients fill in the day when the message is read, so it stays right on a
 * message that is not edited again.
 */
export const DATE_AND_TIME = '{date_short_pretty} at {time}';

/**
 * A time that each reader sees in their own time zone, with a UTC fallback
 * for clients that cannot render date tokens.
 */
export function slackDate(ms: number, format = DATE_AND_TIME): string {
  const seconds = Math.floor(ms / 1000);
  return `<!date^${seconds}^${format}|${utcFallback(ms)}>`;
}

export function utcFallback(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;
}
