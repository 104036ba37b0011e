import type { Block, KnownBlock } from '@slack/types';

import { formatDuration } from './duration.ts';
import { escapeText, mentionUser, slackDate, truncate } from './mrkdwn.ts';
import { nextDeadline, progressOf, type IncidentView, type StepView } from './view.ts';

/**
 * Block Kit rendering of an incident. Limits from Slack's Block Kit reference:
 * 50 blocks a message, 3,000 characters of section text, 150 of header text,
 * 75 of button text, 300 of confirm text. Long content is shortened here, so
 * Slack never rejects a message.
 */
export const LIMITS = {
  blocksPerMessage: 50,
  sectionText: 3000,
  headerText: 150,
  buttonText: 75,
  confirmText: 300,
  contextElementText: 2000,
  // Slack rejects messages whose blocks hold much more than about 13,000
  // characters in all, below the per-block limits; this keeps a margin.
  messageCharacters: 11_000,
} as const;

export interface SlackMessage {
  text: string;
  blocks: Array<KnownBlock | Block>;
}

export const ACTION_IDS = {
  stepDone: 'step.done',
  stepSkip: 'step.skip',
  stepAssign: 'step.assign',
  stepUndo: 'step.undo',
  stepRun: 'step.run',
  stepApprove: 'step.approve',
  takeLead: 'incident.take_lead',
  pageAgain: 'incident.page_again',
  cancel: 'incident.cancel',
  declareAnyway: 'incident.declare_anyway',
  followUp: 'incident.follow_up',
  startRunbook: 'runbook.start',
  recordRotation: 'rotation.record_outside',
  chooseBackup: 'restore.choose_backup',
} as const;

export interface ButtonValue {
  /** Incident id. */
  i: number;
  /** Step id, for step buttons. */
  s?: string;
  /** Timer id, for follow-up buttons. */
  t?: number;
  /** Action run id, for approvals. */
  r?: number;
}

export function encodeValue(value: ButtonValue): string {
  return JSON.stringify(value);
}

const SEVERITY_LABEL: Record<string, string> = {
  critical: ':red_circle: Critical',
  high: ':large_orange_circle: High',
  medium: ':large_yellow_circle: Medium',
  low: ':white_circle: Low',
};

function section(text: string): KnownBlock {
  return { type: 'section', text: { type: 'mrkdwn', text: truncate(text, LIMITS.sectionText) } };
}

function context(text: string): KnownBlock {
  return { type: 'context', elements: [{ type: 'mrkdwn', text: truncate(text, LIMITS.contextElementText) }] };
}

function button(
  text: string,
  actionId: string,
  value: ButtonValue,
  options: { style?: 'primary' | 'danger'; confirm?: { title: string; text: string; confirm: string; deny?: string } } = {},
) {
  return {
    type: 'button' as const,
    text: { type: 'plain_text' as const, text: truncate(text, LIMITS.buttonText), emoji: true },
    action_id: actionId,
    value: encodeValue(value),
    ...(options.style ? { style: options.style } : {}),
    ...(options.confirm
      ? {
          confirm: {
            title: { type: 'plain_text' as const, text: truncate(options.confirm.title, 100) },
            text: { type: 'plain_text' as const, text: truncate(options.confirm.text, LIMITS.confirmText) },
            confirm: { type: 'plain_text' as const, text: truncate(options.confirm.confirm, 30) },
            deny: { type: 'plain_text' as const, text: truncate(options.confirm.deny ?? 'Cancel', 30) },
            ...(options.style === 'danger' ? { style: 'danger' as const } : {}),
          },
        }
      : {}),
  };
}

/** "15 min left", "overdue by 3 min", or undefined when no pending step has a deadline. */
export function countdownLabel(view: IncidentView): string | undefined {
  const next = nextDeadline(view);
  if (!next || view.incident.status !== 'open') return undefined;
  const remaining = next.row.dueAt! - view.now;
  return remaining >= 0 ? `${coarseDuration(remaining)} left` : `overdue by ${coarseDuration(-remaining)}`;
}

/** Minutes under an hour, whole hours under a day, then days and hours: changes at most once a minute. */
function coarseDuration(ms: number): string {
  if (ms < 3_600_000) return formatDuration(Math.ceil(ms / 60_000) * 60_000);
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)} h`;
  return formatDuration(Math.floor(ms / 3_600_000) * 3_600_000);
}

/** Renders the incident message in the channel: title, severity, lead, progress, next deadline. */
export function renderIncidentMessage(view: IncidentView): SlackMessage {
  const { incident } = view;
  const progress = progressOf(view);
  const open = incident.status === 'open';
  const statusWords: Record<string, string> = { resolved: 'Resolved', cancelled: 'Cancelled' };
  const statusWord = statusWords[incident.status];
  const headline = statusWord ? `${statusWord}: ${incident.title}` : incident.title;
  const blocks: KnownBlock[] = [
    {
      type: 'header',
      text: { type: 'plain_text', text: truncate(`${headerIcon(incident.status, incident.severity)} ${headline} (#${incident.id})`, LIMITS.headerText), emoji: true },
    },
    section(
      [
        `*Incident #${incident.id}* · ${SEVERITY_LABEL[incident.severity] ?? escapeText(incident.severity)} · runbook \`${incident.runbookId}\``,
        `Declared by ${mentionUser(incident.declaredBy)} at ${slackDate(incident.declaredAt)}`,
        `*Lead:* ${mentionUser(incident.leadUserId)}`,
      ].join('\n'),
    ),
  ];
  if (incident.summary) blocks.push(section(`>${escapeText(incident.summary).replace(/\n/g, '\n>')}`));

  const lines = [`*Progress:* ${progress.finished} of ${progress.total} steps`];
  const next = nextDeadline(view);
  if (open && next) {
    lines.push(`*Next deadline:* ${escapeText(next.def.title)}: due ${slackDate(next.row.dueAt!)}, ${countdownLabel(view)}`);
  }
  if (!open && incident.resolvedAt) lines.push(`*${statusWord}* at ${slackDate(incident.resolvedAt)}`);
  blocks.push(section(lines.join('\n')));

  const pagingLine = describePaging(view);
  if (pagingLine) blocks.push(context(pagingLine));

  if (open) {
    const elements = [button('Take the lead', ACTION_IDS.takeLead, { i: incident.id })];
    if (view.paging.enabled && view.runbook.pages) {
      elements.push(button('Page again', ACTION_IDS.pageAgain, { i: incident.id }, {
        confirm: { title: 'Page on-call again?', text: 'Sends another PagerDuty trigger at critical severity for this incident.', confirm: 'Page' },
      }));
    }
    elements.push(
      button('Cancel incident', ACTION_IDS.cancel, { i: incident.id }, {
        style: 'danger',
        confirm: {
          title: 'Cancel this incident?',
          text: 'Cancelling closes the incident without finishing its steps, stops its timers and resolves its page.',
          confirm: 'Cancel incident',
          // Slack's default "Cancel" beside "Cancel incident" would read as the same choice.
          deny: 'Keep it open',
        },
      }),
    );
    blocks.push({ type: 'actions', block_id: `incident|${incident.id}`, elements });
  }

  const text = `${headline} (#${incident.id}): ${progress.finished} of ${progress.total} steps done`;
  return { text, blocks };
}

/** 🚨 for critical and high incidents, 🛠️ for routine work, ✅ resolved, ⏹️ cancelled. */
function headerIcon(status: string, severity: string): string {
  if (status === 'resolved') return '✅';
  if (status === 'cancelled') return '⏹️';
  return severity === 'critical' || severity === 'high' ? '🚨' : '🛠️';
}

function describePaging(view: IncidentView): string | undefined {
  if (!view.runbook.pages) return undefined;
  if (view.paging.disabledReason) return `:pager: Paging is off: ${view.paging.disabledReason}`;
  switch (view.paging.state) {
    case 'queued':
      return ':pager: Page queued for PagerDuty';
    case 'retrying':
      return `:pager: PagerDuty unreachable; the page is queued and retrying${view.paging.detail ? ` (${escapeText(view.paging.detail)})` : ''}`;
    case 'accepted':
      return `:pager: PagerDuty accepted the page · dedup key \`${view.incident.dedupKey}\``;
    case 'rejected':
      return `:warning: PagerDuty rejected the page: ${escapeText(view.paging.detail ?? 'no reason given')}`;
    default:
      return undefined;
  }
}

const STATUS_ICON = { pending: ':white_large_square:', done: ':white_check_mark:', skipped: ':fast_forward:' } as const;

/** Blocks of one step in the checklist: text, status line, buttons. */
export function renderStep(view: IncidentView, step: StepView): KnownBlock[] {
  const { incident } = view;
  const open = incident.status === 'open';
  const value: ButtonValue = { i: incident.id, s: step.def.id };
  const lines = [`${STATUS_ICON[step.row.status]} *${step.number}. ${escapeText(step.def.title)}*`];
  if (step.def.description) lines.push(escapeText(step.def.description));
  const blocks: KnownBlock[] = [
    { type: 'section', block_id: `step|${step.def.id}|text`, text: { type: 'mrkdwn', text: truncate(lines.join('\n'), LIMITS.sectionText) } },
  ];

  const status = describeStepStatus(view, step);
  if (status.length > 0) {
    blocks.push({ type: 'context', block_id: `step|${step.def.id}|status`, elements: [{ type: 'mrkdwn', text: truncate(status.join('\n'), LIMITS.contextElementText) }] });
  }

  if (!open) return blocks;
  const running = step.run?.status === 'running';
  const awaitingApproval = step.run?.status === 'requested';
  if (running) return blocks;

  const elements = [];
  const blocked = waitingFor(view, step).length > 0;
  if (step.row.status === 'pending' && blocked) {
    // Nothing to press until the steps it waits for are done.
    elements.push(button('Assign', ACTION_IDS.stepAssign, value));
  } else if (step.row.status === 'pending') {
    if (awaitingApproval) {
      elements.push(button('Approve', ACTION_IDS.stepApprove, { ...value, r: step.run!.id }, {
        style: 'danger',
        confirm: { title: 'Approve this action?', text: step.def.action!.confirm, confirm: 'Approve and run' },
      }));
    } else if (step.def.action && step.missingConfig.length === 0 && waitingFor(view, step).length === 0) {
      const again = step.run && (step.run.status === 'failed' || step.run.status === 'interrupted' || step.run.status === 'succeeded');
      // An action with inputs opens a modal, which serves as its confirmation.
      const confirm = step.def.action.inputs.length > 0 ? undefined : { title: truncate(step.def.action.label, 100), text: step.def.action.confirm, confirm: 'Run' };
      elements.push(button(again ? `Run again: ${step.def.action.label}` : step.def.action.label, ACTION_IDS.stepRun, value, {
        style: step.def.action.destructive ? 'danger' : 'primary',
        confirm,
      }));
    }
    elements.push(button('Done', ACTION_IDS.stepDone, value, step.def.action ? {} : { style: 'primary' }));
    elements.push(button('Skip', ACTION_IDS.stepSkip, value));
    elements.push(button('Assign', ACTION_IDS.stepAssign, value));
  } else if (!(step.def.action?.destructive && step.run?.status === 'succeeded')) {
    // A step done by an action that changed something cannot be undone by a click.
    elements.push(button('Undo', ACTION_IDS.stepUndo, value));
  }
  if (elements.length === 0) return blocks;
  blocks.push({ type: 'actions', block_id: `step|${step.def.id}|actions`, elements });
  return blocks;
}

/** Numbers of the steps that must be done (their actions succeeded) before this step may move. */
function waitingFor(view: IncidentView, step: StepView): number[] {
  return step.def.requires
    .map((id) => view.steps.find((candidate) => candidate.def.id === id))
    .filter((required): required is StepView => {
      if (!required) return false;
      if (required.row.status !== 'done') return true;
      return required.def.action !== undefined && required.run?.status !== 'succeeded';
    })
    .map((required) => required.number);
}

function describeStepStatus(view: IncidentView, step: StepView): string[] {
  const lines: string[] = [];
  const { row } = step;
  const blocked = row.status === 'pending' ? waitingFor(view, step) : [];
  if (blocked.length > 0) lines.push(`:lock: Runs after step${blocked.length > 1 ? 's' : ''} ${blocked.join(', ')}`);
  if (row.status === 'done' && row.doneBy && row.doneAt) lines.push(`Done by ${mentionUser(row.doneBy)} at ${slackDate(row.doneAt)}`);
  if (row.status === 'skipped' && row.doneBy && row.doneAt) {
    lines.push(`Skipped by ${mentionUser(row.doneBy)} at ${slackDate(row.doneAt)}: ${escapeText(row.skipReason ?? '')}`);
  }
  if (row.dueAt !== null) lines.push(describeDeadline(view, step));
  if (row.watchEndsAt !== null && row.status === 'pending') {
    lines.push(`:eyes: Watch ends ${slackDate(row.watchEndsAt)}${step.def.watch?.checkin ? `, check-ins every ${formatDuration(step.def.watch.checkin)}` : ''}`);
  }
  if (row.assignee && row.status === 'pending') lines.push(`Assigned to ${mentionUser(row.assignee)}`);
  if (row.note) lines.push(escapeText(row.note));
  if (step.def.action) lines.push(...describeRun(step));
  return lines;
}

function describeDeadline(view: IncidentView, step: StepView): string {
  const { row } = step;
  const due = slackDate(row.dueAt!);
  if (row.status === 'pending') {
    // No countdown here: it would change the checklist every minute. The
    // incident message carries the countdown.
    return row.deadlineMissed || row.dueAt! <= view.now
      ? `:rotating_light: Deadline missed: was due ${due}`
      : `:alarm_clock: Due ${due}`;
  }
  const met = row.doneAt !== null && row.doneAt <= row.dueAt!;
  return met ? `Deadline met (due ${due})` : `Deadline missed (due ${due})`;
}

function describeRun(step: StepView): string[] {
  if (step.missingConfig.length > 0 && step.row.status === 'pending') {
    return [`:gear: Action not configured: set ${step.missingConfig.join(', ')}; do this step by hand and press Done`];
  }
  const run = step.run;
  if (!run) return [];
  switch (run.status) {
    case 'requested':
      return [`:raised_hand: ${mentionUser(run.requestedBy)} requested this action; a second responder must approve it`];
    case 'running':
      return [`:hourglass_flowing_sand: Running, started by ${mentionUser(run.approvedBy ?? run.requestedBy)} at ${slackDate(run.startedAt ?? run.requestedAt)}`];
    case 'succeeded': {
      const icon = run.result?.needsReview ? ':warning:' : ':white_check_mark:';
      return [`${icon} ${escapeText(String(run.result?.summary ?? 'Action succeeded'))}`, ...formatFacts(run.result), ...formatDurationOf(run)];
    }
    case 'superseded':
      return [];
    case 'failed':
      return [`:x: Action failed: ${escapeText(run.error ?? 'unknown error')}`, ...formatFacts(run.result), ...formatDurationOf(run)];
    case 'interrupted':
      return [':warning: Interrupted: the bot stopped while this action ran. Check what it changed and run it again.'];
  }
}

function formatFacts(result: Record<string, unknown> | null): string[] {
  const facts = (result?.facts as Array<[string, string]> | undefined) ?? [];
  return facts.map(([label, value]) => `• ${escapeText(label)}: ${escapeText(value)}`);
}

/** "Took 1.2 s", unless the action already reported its own duration. */
function formatDurationOf(run: { startedAt: number | null; finishedAt: number | null; result: Record<string, unknown> | null }): string[] {
  if (run.startedAt === null || run.finishedAt === null) return [];
  const facts = (run.result?.facts as Array<[string, string]> | undefined) ?? [];
  if (facts.some(([label]) => /duration|took/i.test(label))) return [];
  const ms = run.finishedAt - run.startedAt;
  return [`Took ${ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`}`];
}

/** Renders the checklist as thread messages that each stay within Slack's block and size limits. */
export function renderChecklist(view: IncidentView): SlackMessage[] {
  const chunks: KnownBlock[][] = [];
  let current: KnownBlock[] = [];
  let size = 0;
  for (const step of view.steps) {
    const blocks = [...renderStep(view, step), { type: 'divider' } as KnownBlock];
    const blockSize = JSON.stringify(blocks).length;
    const full = current.length + blocks.length > LIMITS.blocksPerMessage - 1 || size + blockSize > LIMITS.messageCharacters;
    if (current.length > 0 && full) {
      chunks.push(current);
      current = [];
      size = 0;
    }
    current.push(...blocks);
    size += blockSize;
  }
  if (current.length > 0) chunks.push(current);

  return chunks.map((blocks, index) => {
    const count = view.steps.length === 1 ? '1 step' : `${view.steps.length} steps`;
    const heading = index === 0 ? `*Checklist* for incident #${view.incident.id} (${count})` : `*Checklist, continued* (part ${index + 1} of ${chunks.length})`;
    return { text: `Checklist for incident #${view.incident.id}, part ${index + 1}`, blocks: [section(heading), ...blocks] };
  });
}

export function renderReminder(view: IncidentView, step: StepView, lateMs: number): SlackMessage {
  const remaining = step.row.dueAt! - view.now;
  const who = step.row.assignee ? mentionUser(step.row.assignee) : mentionUser(view.incident.leadUserId);
  const text = `:alarm_clock: Reminder: *${escapeText(step.def.title)}* is due ${slackDate(step.row.dueAt!)} (${remaining >= 0 ? `in ${formatDuration(remaining)}` : `${formatDuration(-remaining)} ago`}). ${who}${lateNote(lateMs)}`;
  return { text: `Reminder: ${step.def.title} is due soon`, blocks: [section(text)] };
}

export function renderEscalation(view: IncidentView, step: StepView, lateMs: number): SlackMessage {
  const text = [
    `<!channel> :rotating_light: *Deadline missed* on incident #${view.incident.id}: *${escapeText(step.def.title)}* was due ${slackDate(step.row.dueAt!)}.`,
    `${escalationAddressees(view, step)}: finish the step or hand it to someone who can.${lateNote(lateMs)}`,
  ].join('\n');
  return { text: `Deadline missed: ${step.def.title}`, blocks: [section(text)] };
}

/** Names the declarer, and the lead and the step's assignee when they are other people. */
function escalationAddressees(view: IncidentView, step: StepView): string {
  const { declaredBy, leadUserId } = view.incident;
  const roles = [`${mentionUser(declaredBy)} declared this incident`];
  if (leadUserId !== declaredBy) roles.push(`${mentionUser(leadUserId)} leads it`);
  const assignee = step.row.assignee;
  if (assignee && assignee !== declaredBy && assignee !== leadUserId) roles.push(`${mentionUser(assignee)} has the step`);
  return roles.join(', ');
}

export function renderWatchCheckin(view: IncidentView, step: StepView, elapsedMs: number, lateMs: number, findings?: string): SlackMessage {
  const total = step.def.watch!.duration;
  const lines = [
    `:eyes: *Watch check-in*: ${formatDuration(elapsedMs)} of ${formatDuration(total)} (step ${step.number}). Post anything suspicious in this thread.${lateNote(lateMs)}`,
  ];
  if (findings) lines.push(findings);
  return { text: `Watch check-in: ${formatDuration(elapsedMs)} of ${formatDuration(total)}`, blocks: [section(lines.join('\n'))] };
}

export function renderWatchEnd(view: IncidentView, step: StepView, lateMs: number): SlackMessage {
  const value: ButtonValue = { i: view.incident.id, s: step.def.id };
  return {
    text: `The watch for ${step.def.title} has ended`,
    blocks: [
      section(`:checkered_flag: The ${formatDuration(step.def.watch!.duration)} watch has ended. If nothing suspicious was seen, close *${escapeText(step.def.title)}*.${lateNote(lateMs)}`),
      { type: 'actions', block_id: `watch|${step.def.id}`, elements: [button('Close the step', ACTION_IDS.stepDone, value, { style: 'primary' })] },
    ],
  };
}

export function renderNotice(text: string): SlackMessage {
  // The notification text drops bold and code marks; underscores stay, because
  // names such as SENTRY_DSN and channel_not_found contain them.
  return { text: text.replace(/[*`]/g, ''), blocks: [section(text)] };
}

function lateNote(lateMs: number): string {
  return lateMs >= LATE_THRESHOLD_MS ? `\n_Late by ${formatDuration(lateMs)}: the bot was not running when this was due._` : '';
}

/** A timer that fires this much after its due time is reported as late. */
export const LATE_THRESHOLD_MS = 5_000;
