import { registerFollowUp } from './engine.ts';
import { escapeText } from './mrkdwn.ts';
import { ACTION_IDS, encodeValue } from './render.ts';

/**
 * Follow-ups that actions schedule: removing an old key from the fallbacks
 * (asked in the thread, with a button) and deactivating an old Sentry key a
 * week after a periodic rotation (done by the bot).
 */
export function registerBuiltinFollowUps(): void {
  registerFollowUp('remove_fallback', {
    action: 'django.remove_fallback',
    completesStep: 'remove-fallback',
    render: (view, timerId, lateMs) => ({
      text: 'Time to remove the old key from the fallbacks',
      blocks: [
        {
          type: 'section',
          text: {
            type: 'mrkdwn',
            text: `:key: The fallback period of the rotation in incident #${view.incident.id} (${escapeText(view.incident.title)}) has ended. Remove the old key from DJANGO_SECRET_KEY_FALLBACKS, so it can no longer verify sessions.${lateMs > 5000 ? ' _(This prompt is late: the bot was not running when it was due.)_' : ''}`,
          },
        },
        {
          type: 'actions',
          block_id: `follow-up|${timerId}`,
          elements: [
            {
              type: 'button',
              text: { type: 'plain_text', text: 'Remove the old key' },
              style: 'danger',
              action_id: ACTION_IDS.followUp,
              value: encodeValue({ i: view.incident.id, t: timerId }),
              confirm: {
                title: { type: 'plain_text', text: 'Remove the fallback key?' },
                text: { type: 'plain_text', text: 'Removes the old key from DJANGO_SECRET_KEY_FALLBACKS and restarts the app. Sessions still signed with the old key end.' },
                confirm: { type: 'plain_text', text: 'Remove' },
                deny: { type: 'plain_text', text: 'Cancel' },
                style: 'danger',
              },
            },
          ],
        },
      ],
    }),
  });
  registerFollowUp('deactivate_sentry_key', {
    action: 'sentry.deactivate_key',
    completesStep: 'deactivate-old',
    automatic: true,
    render: () => ({ text: 'Deactivating the old Sentry key', blocks: [] }),
  });
}
