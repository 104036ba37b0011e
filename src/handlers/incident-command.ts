import type { AllMiddlewareArgs, SlackCommandMiddlewareArgs } from '@slack/bolt';

import { UserError } from '../bot/errors.ts';
import { MAX_SUMMARY_LENGTH } from '../runbooks/engine.ts';
import { RESERVED_WORDS } from '../runbooks/loader.ts';
import { escapeText, mentionUser, slackDate } from '../runbooks/mrkdwn.ts';
import { ACTION_IDS } from '../runbooks/render.ts';
import type { Runbook } from '../runbooks/schema.ts';
import { closestWord } from './closest.ts';
import type { HandlerDeps } from './deps.ts';
import { describeError, replyEphemeral } from './replies.ts';
import { actorOf } from './buttons.ts';
import { formatBytes } from '../actions/restore.ts';

type CommandArgs = SlackCommandMiddlewareArgs & AllMiddlewareArgs;

/** Slack's own cap on slash command text is near 4,000 characters; more than this is not a real command. */
const MAX_COMMAND_TEXT = MAX_SUMMARY_LENGTH + 100;

/**
 * `/incident <runbook> [summary]`, plus the words `help`, `list`,
 * `schedules`, `restore` (pick a backup) and `rotated <SECRET>` (record a
 * rotation done outside the bot).
 */
export function incidentCommand(deps: HandlerDeps) {
  return async ({ command, ack, client, respond }: CommandArgs): Promise<void> => {
    // Created on first use, because a declaration's ack path logs nothing.
    let childLogger: HandlerDeps['logger'] | undefined;
    const logger = () => (childLogger ??= deps.logger.child({ userId: command.user_id, channelId: command.channel_id, command: command.command }));
    const declare = async (runbook: Runbook, acceptedId: number, summary: string) => {
      try {
        const actor = runbook.steps.some((step) => step.runs_on_start) ? await actorOf(deps, command.user_id) : undefined;
        const result = deps.engine.declareAccepted(acceptedId, actor);
        if (!result) return;
        if (result.kind === 'duplicate') {
          const link = await permalinkOf(client, result.open.channelId, result.open.messageTs, deps);
          await respond(duplicateReply(runbook, result.open, link, summary));
          return;
        }
        await respond({ response_type: 'ephemeral', text: `Declared incident #${result.incidentId}: ${escapeText(runbook.title)}. The checklist opens in a thread in this channel.` });
      } catch (error) {
        await replyEphemeral(respond, describeError(error, logger(), { runbookId: runbook.id, acceptedId }), logger(), {});
      }
    };
    const text = (command.text ?? '').trim();
    const [word = ''] = text.split(/\s+/);
    const summary = text.slice(word.length).trim();
    try {
      if (text.length > MAX_COMMAND_TEXT) {
        throw new UserError('invalid_command', `The command text is ${text.length} characters long; the limit is ${MAX_COMMAND_TEXT}. Declare with a short summary and add the details in the thread.`);
      }
      const lower = word.toLowerCase();
      if (lower === '' || lower === 'help') return void (await ack({ response_type: 'ephemeral', text: helpText(deps) }));
      if (lower === 'list') {
        // The links need a Web API call per incident, so acknowledge Slack first.
        await ack();
        await replyEphemeral(respond, await listText(deps, client), logger(), {});
        return;
      }
      if (lower === 'schedules') return void (await ack({ response_type: 'ephemeral', text: schedulesText(deps) }));
      if (lower === 'restore') return void (await ack(restorePicker(deps)));
      if (lower === 'rotated') {
        const actor = await actorOf(deps, command.user_id);
        const secret = summary.split(/\s+/)[0]?.toUpperCase() ?? '';
        deps.engine.recordOutsideRotation(secret, actor);
        return void (await ack({ response_type: 'ephemeral', text: `Recorded a rotation of ${secret} done outside the bot, now. Reminders count 90 days from here.` }));
      }

      const runbook = deps.runbooks.find(lower);
      if (!runbook || !runbook.declarable) throw unknownRunbook(word, deps);
      // Recorded before the ack, so a process killed after it still opens
      // the incident on restart. The incident's rows are written once
      // requests pause, and the result is posted to the response URL.
      const acceptedId = deps.engine.acceptDeclaration({ runbook, summary, channelId: command.channel_id, userId: command.user_id });
      await ack();
      await deps.quiet();
      await declare(runbook, acceptedId, summary);
    } catch (error) {
      await ack({ response_type: 'ephemeral', text: describeError(error, logger(), { text: text.slice(0, 40) }) });
    }
  };
}

/** `/incident restore`: the recent database backups, each with a button that opens the restore checklist. */
function restorePicker(deps: HandlerDeps) {
  const backups = deps.engine.recentBackups(10);
  if (backups.length === 0) {
    return { response_type: 'ephemeral' as const, text: 'No database backups are recorded. Run `/incident backup` first, or check BACKUP_DIR.' };
  }
  const blocks: Array<Record<string, unknown>> = [
    { type: 'section', text: { type: 'mrkdwn', text: '*Recent database backups.* Pick one to open the restore checklist; nothing changes until each step is confirmed.' } },
  ];
  for (const backup of backups) {
    const state = backup.status === 'good' ? 'checked' : backup.status;
    const size = backup.sizeBytes !== null ? formatBytes(backup.sizeBytes) : 'size unknown';
    blocks.push({
      type: 'section',
      text: { type: 'mrkdwn', text: `\`${escapeText(backup.path.split('/').pop() ?? backup.path)}\`\n${slackDate(backup.createdAt)} · ${size} · ${state}${backup.sha256 ? ` · sha256 ${backup.sha256.slice(0, 12)}…` : ''}` },
      ...(backup.status === 'good'
        ? { accessory: { type: 'button', text: { type: 'plain_text', text: 'Restore this one' }, action_id: ACTION_IDS.chooseBackup, value: JSON.stringify({ backup: backup.id }) } }
        : {}),
    });
  }
  return { response_type: 'ephemeral' as const, text: `${backups.length} recent backups`, blocks };
}

function unknownRunbook(word: string, deps: HandlerDeps): UserError {
  const declarable = deps.runbooks.all.filter((runbook) => runbook.declarable);
  const words = declarable.flatMap((runbook) => [runbook.id, ...runbook.aliases]);
  const guess = closestWord(word.toLowerCase(), [...words, ...RESERVED_WORDS]);
  const shown = escapeText(word.length > 40 ? `${word.slice(0, 40)}…` : word);
  return new UserError(
    'unknown_runbook',
    [
      `There is no runbook called "${shown}".${guess ? ` Did you mean \`/incident ${guess}\`?` : ''}`,
      `Runbooks: ${declarable.map((runbook) => `\`${runbook.id}\``).join(', ')}. Type \`/incident help\` for what each one is.`,
    ].join('\n'),
  );
}

function helpText(deps: HandlerDeps): string {
  const lines = ['*Declare an incident:* `/incident <runbook> <what happened>`', ''];
  for (const runbook of deps.runbooks.all.filter((candidate) => candidate.declarable)) {
    const aliases = runbook.aliases.length > 0 ? ` (also ${runbook.aliases.map((alias) => `\`${alias}\``).join(', ')})` : '';
    const steps = runbook.steps.length === 1 ? '1 step' : `${runbook.steps.length} steps`;
    lines.push(`• \`${runbook.id}\`${aliases}: ${escapeText(runbook.title)}, ${steps}, ${runbook.severity}`);
  }
  lines.push(
    '',
    '*Other commands*',
    '• `/incident list`: open incidents with links',
    '• `/incident schedules`: the recurring work and when it runs next',
    '• `/incident restore`: recent backups, and a restore checklist for the one you pick',
    '• `/incident rotated DJANGO_SECRET_KEY` (or `SENTRY_DSN`): record a rotation done outside the bot',
  );
  return lines.join('\n');
}

async function listText(deps: HandlerDeps, client: CommandArgs['client']): Promise<string> {
  const open = deps.engine.listOpen();
  if (open.length === 0) return 'No incidents are open.';
  const lines = [`*Open incidents (${open.length})*`];
  for (const incident of open.slice(0, 20)) {
    const permalink = await permalinkOf(client, incident.channelId, incident.messageTs, deps);
    const link = permalink ? `<${permalink}|#${incident.id}>` : `#${incident.id}`;
    lines.push(`• ${link} ${escapeText(incident.title)} in <#${incident.channelId}>, declared ${slackDate(incident.declaredAt)} by ${mentionUser(incident.declaredBy)}`);
  }
  if (open.length > 20) lines.push(`…and ${open.length - 20} more.`);
  return lines.join('\n');
}

async function permalinkOf(client: CommandArgs['client'], channel: string, ts: string | null, deps: HandlerDeps): Promise<string | undefined> {
  if (!ts) return undefined;
  try {
    const response = await client.chat.getPermalink({ channel, message_ts: ts });
    return response.permalink;
  } catch (error) {
    deps.logger.warn({ channelId: channel, ts, err: error }, 'permalink lookup failed');
    return undefined;
  }
}

function schedulesText(deps: HandlerDeps): string {
  const schedules = deps.listSchedules?.() ?? [];
  if (schedules.length === 0) return 'No schedules run in this bot.';
  const lines = ['*Schedules*'];
  for (const schedule of schedules) {
    const next = schedule.nextRun ? slackDate(schedule.nextRun) : 'not scheduled';
    lines.push(`• ${escapeText(schedule.name)} (\`${schedule.cron}\`, ${schedule.timezone}): next ${next}`);
  }
  return lines.join('\n');
}

function duplicateReply(runbook: Runbook, open: { id: number; title: string; declaredAt: number }, permalink: string | undefined, summary: string) {
  const where = permalink ? `<${permalink}|incident #${open.id}>` : `incident #${open.id}`;
  return {
    response_type: 'ephemeral' as const,
    text: `${open.title} already has an open incident here: #${open.id}.`,
    blocks: [
      // The open incident's own title: the runbook's may have changed since it was declared.
      { type: 'section', text: { type: 'mrkdwn', text: `*${escapeText(open.title)}* already has an open incident in this channel: ${where}, declared ${slackDate(open.declaredAt)}. Work that one, or open another if this is a separate event.` } },
      {
        type: 'actions',
        block_id: 'declare_anyway',
        elements: [
          {
            type: 'button',
            text: { type: 'plain_text', text: 'Open another anyway' },
            action_id: ACTION_IDS.declareAnyway,
            // Button values hold at most 2,000 characters.
            value: JSON.stringify({ runbook: runbook.id, summary: summary.slice(0, 1800) }),
          },
        ],
      },
    ],
  };
}
