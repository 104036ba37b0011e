import { ActionError } from './errors.ts';
import type { ActionRegistry } from '../runbooks/actions-registry.ts';
import { BOT_ACTOR, ROTATED_SECRETS, type Engine } from '../runbooks/engine.ts';
import { escapeText, slackDate } from '../runbooks/mrkdwn.ts';
import { ACTION_IDS, renderNotice, type SlackMessage } from '../runbooks/render.ts';
import type { RunbookCatalog } from '../runbooks/loader.ts';
import { countBackupsSince, newestGoodBackup } from '../store/backups.ts';
import type { Db } from '../store/db.ts';
import { rotationHistory } from '../store/rotations.ts';
import { getSetting, setSetting } from '../store/settings.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { Logger } from './logger.ts';
import { rotationReminderDue } from './rotation-reminder.ts';
import { BOT_SCHEDULES, type ScheduledJob, type SlotRun } from './schedules.ts';

const DAY_MS = 86_400_000;

/** The runbook that rotates each tracked secret, for the reminder's Start rotation button. */
const ROTATION_RUNBOOK: Record<string, string> = { DJANGO_SECRET_KEY: 'rotate-secret-key', SENTRY_DSN: 'rotate-sentry-dsn' };

export interface JobDeps {
  config: Config;
  db: Db;
  clock: Clock;
  logger: Logger;
  engine: Engine;
  actions: ActionRegistry;
  runbooks: RunbookCatalog;
}

/**
 * Lists the recurring work: the backup (BACKUP_CRON, daily at 02:00 by default), a
 * weekly backup digest, the monthly restore test and security audit, and the
 * daily rotation-age check. Each job reports its own failures to the ops
 * channel; the scheduler records them.
 */
export function scheduledJobs(deps: JobDeps): ScheduledJob[] {
  const cronOf = (name: string) => {
    const schedule = BOT_SCHEDULES.find((entry) => entry.name === name)!;
    const variable = 'variable' in schedule ? schedule.variable : undefined;
    return { cron: (variable && deps.config.env[variable]?.trim()) || schedule.defaultCron, variable };
  };
  return [
    { name: 'backup', ...cronOf('backup'), run: (slot) => runScheduledBackup(deps, slot) },
    { name: 'backup-digest', cron: '0 9 * * 1', run: async () => postBackupDigest(deps) },
    { name: 'restore-test', ...cronOf('restore-test'), run: async (slot) => openScheduledRunbook(deps, 'restore-test', slot) },
    { name: 'security-audit', ...cronOf('security-audit'), run: async (slot) => openScheduledRunbook(deps, 'security-audit', slot) },
    { name: 'rotation-age', ...cronOf('rotation-age'), run: async () => checkRotationAges(deps) },
  ];
}

function opsChannel(deps: JobDeps): string | undefined {
  return deps.config.opsChannel;
}

async function runScheduledBackup(deps: JobDeps, slot: SlotRun): Promise<void> {
  const action = deps.actions.get('backup.run');
  const missing = deps.actions.missingConfig('backup.run');
  if (!action || missing.length > 0) {
    deps.logger.warn({ slot: slot.id, missing }, 'scheduled backup skipped: not configured');
    const channel = opsChannel(deps);
    if (channel) deps.engine.postToChannel(channel, renderNotice(`:warning: Scheduled backup ${escapeText(slot.id)} did not run: set ${missing.join(', ')}.`), 'backup.skipped', { slot: slot.id, missing });
    return;
  }
  const logger = deps.logger.child({ schedule: 'backup', slot: slot.id });
  try {
    await action.run({ incidentId: 0, declaredAt: slot.at, metadata: {}, stepId: 'schedule', inputs: {}, reason: 'periodic', clock: deps.clock, logger }, {});
    logger.info({ lateMs: slot.lateMs, caughtUp: slot.caughtUp }, 'scheduled backup done');
    resolveBackupPages(deps, slot);
  } catch (error) {
    const reason = error instanceof ActionError ? error.message : String(error);
    const channel = opsChannel(deps);
    const { paging } = deps.engine;
    const pagingText = paging.enabled ? 'Paging on-call through PagerDuty.' : `On-call was not paged: ${paging.disabledReason ?? 'PagerDuty is not configured'}.`;
    if (channel) {
      deps.engine.postToChannel(channel, renderNotice(`:x: *Backup failed* (${escapeText(slot.id)}): ${escapeText(reason)}. ${escapeText(pagingText)} Run \`/incident backup\` once it is fixed.`), 'backup.failed', { slot: slot.id });
    }
    const dedupKey = `runbook-bot-backup-${slot.slot}`;
    deps.engine.pageOps({ dedupKey, summary: `runbook-bot: backup ${slot.id} failed: ${reason}`, severity: 'error', channel, subject: `backup ${slot.id}` });
    if (paging.enabled) setOpenBackupPages(deps, [...openBackupPages(deps).filter((key) => key !== dedupKey), dedupKey]);
    throw error;
  }
}

/** Dedup keys of failed-backup pages not yet resolved, kept across restarts. */
const OPEN_BACKUP_PAGES_SETTING = 'open_backup_pages';

function openBackupPages(deps: JobDeps): string[] {
  try {
    const keys: unknown = JSON.parse(getSetting(deps.db, OPEN_BACKUP_PAGES_SETTING) ?? '[]');
    return Array.isArray(keys) ? keys.filter((key): key is string => typeof key === 'string') : [];
  } catch {
    return [];
  }
}

function setOpenBackupPages(deps: JobDeps, keys: string[]): void {
  setSetting(deps.db, OPEN_BACKUP_PAGES_SETTING, JSON.stringify(keys));
}

/** Resolves the pages of earlier failed backups once a scheduled backup succeeds, and posts a notice in OPS_CHANNEL. */
function resolveBackupPages(deps: JobDeps, slot: SlotRun): void {
  const keys = openBackupPages(deps);
  if (keys.length === 0) return;
  for (const dedupKey of keys) {
    deps.engine.pageOps({ dedupKey, summary: `runbook-bot: backup ${slot.id} succeeded`, severity: 'info', action: 'resolve' });
  }
  setOpenBackupPages(deps, []);
  deps.logger.info({ slot: slot.id, resolved: keys }, 'failed-backup pages resolved');
  const channel = opsChannel(deps);
  if (channel) {
    const pages = keys.length === 1 ? 'the page of the failed backup is' : `the ${keys.length} pages of the failed backups are`;
    deps.engine.postToChannel(channel, renderNotice(`:white_check_mark: Backup ${escapeText(slot.id)} succeeded, so ${pages} resolved in PagerDuty.`), 'backup.pages_resolved', { slot: slot.id, resolved: keys.length });
  }
}

function postBackupDigest(deps: JobDeps): void {
  const channel = opsChannel(deps);
  if (!channel) {
    deps.logger.warn('weekly backup digest not posted: set OPS_CHANNEL or INCIDENT_CHANNEL');
    return;
  }
  const counts = countBackupsSince(deps.db, deps.clock.now() - 7 * DAY_MS);
  const newest = newestGoodBackup(deps.db, 'database');
  const recentEnough = newest && newest.createdAt >= deps.clock.now() - 7 * DAY_MS;
  const lines = [
    `:floppy_disk: *Weekly backup digest*: ${counts.database.good} good and ${counts.database.failed} failed database backups in the last 7 days.`,
    ...(counts.env.good + counts.env.failed > 0 ? [`.env backups: ${counts.env.good} good and ${counts.env.failed} failed.`] : []),
    recentEnough ? `Newest database backup: \`${escapeText(newest.path)}\` at ${slackDate(newest.createdAt)}.` : ':warning: No good database backup in the last 7 days.',
  ];
  deps.engine.postToChannel(channel, renderNotice(lines.join('\n')), 'backup.digest', { good: counts.database.good, failed: counts.database.failed });
}

function openScheduledRunbook(deps: JobDeps, runbookId: string, slot: SlotRun): void {
  const runbook = deps.runbooks.find(runbookId);
  const channel = opsChannel(deps);
  if (!runbook || !channel) {
    deps.logger.warn({ runbookId, slot: slot.id, channel }, 'scheduled runbook not opened: runbook or OPS_CHANNEL missing');
    return;
  }
  deps.engine.declare({
    runbook,
    summary: `Scheduled ${runbook.title.toLowerCase()} for ${slot.slot}`,
    channelId: channel,
    userId: BOT_ACTOR,
    origin: 'schedule',
    force: true,
    metadata: { slot: slot.id },
  });
}

function checkRotationAges(deps: JobDeps): void {
  const channel = opsChannel(deps);
  const now = deps.clock.now();
  for (const secretName of ROTATED_SECRETS) {
    const settingKey = `rotation_reminder:${secretName}`;
    const lastReminderAt = Number(getSetting(deps.db, settingKey) ?? NaN);
    const decision = rotationReminderDue(rotationHistory(deps.db, secretName, 20), now, {
      maxAgeDays: 90,
      repeatDays: 7,
      lastReminderAt: Number.isFinite(lastReminderAt) ? lastReminderAt : null,
    });
    if (!decision.due) continue;
    if (channel) deps.engine.postToChannel(channel, reminderMessage(secretName, decision.ageDays, decision.lastRotatedAt), 'rotation.reminded', { secretName, ageDays: decision.ageDays });
    setSetting(deps.db, settingKey, String(now));
    deps.logger.info({ secretName, ageDays: decision.ageDays }, 'rotation reminder posted');
  }
}

function reminderMessage(secretName: string, ageDays: number | null, lastRotatedAt: number | null): SlackMessage {
  const age = lastRotatedAt === null ? 'has no rotation on record' : `was last rotated ${ageDays} days ago, on ${slackDate(lastRotatedAt, '{date_short}')}`;
  return {
    text: `${secretName} is due for rotation`,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `:key: *${secretName}* ${age}. Keys are rotated at least every 90 days; this reminder repeats weekly until it is done.` } },
      {
        type: 'actions',
        block_id: `rotation|${secretName}`,
        elements: [
          { type: 'button', style: 'primary', text: { type: 'plain_text', text: 'Start rotation' }, action_id: ACTION_IDS.startRunbook, value: JSON.stringify({ runbook: ROTATION_RUNBOOK[secretName], summary: `Quarterly rotation of ${secretName}` }) },
          {
            type: 'button',
            text: { type: 'plain_text', text: 'It was rotated outside the bot' },
            action_id: ACTION_IDS.recordRotation,
            value: JSON.stringify({ secret: secretName }),
            confirm: {
              title: { type: 'plain_text', text: 'Record a rotation?' },
              text: { type: 'plain_text', text: `Records that ${secretName} was rotated today outside the bot. The next reminder comes in 90 days.` },
              confirm: { type: 'plain_text', text: 'Record it' },
              deny: { type: 'plain_text', text: 'Cancel' },
            },
          },
        ],
      },
    ],
  };
}
