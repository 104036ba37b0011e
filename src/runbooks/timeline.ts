import { listAudit, type AuditEntry } from '../store/audit.ts';
import { formatDuration } from './duration.ts';
import { escapeText, mentionUser, slackDate, truncate } from './mrkdwn.ts';
import { LIMITS, type SlackMessage } from './render.ts';
import type { IncidentView } from './view.ts';

/**
 * Renders the post-incident timeline: every recorded event in the order it
 * happened, with who and when, then each deadline and whether it was met.
 */
export function renderTimeline(view: IncidentView, events: string[] = []): SlackMessage {
  const { incident } = view;
  const end = incident.resolvedAt ?? view.now;
  const lines = [`*Timeline of incident #${incident.id}* (${escapeText(incident.title)}): ${incident.status} after ${formatDuration(end - incident.declaredAt)}`];
  lines.push(...events);

  const deadlines = view.steps.filter((step) => step.row.dueAt !== null);
  if (deadlines.length > 0) lines.push('*Deadlines*');
  for (const step of deadlines) {
    const { row } = step;
    const metOn = row.status === 'done' && row.doneAt !== null && row.doneAt <= row.dueAt!;
    let verdict: string;
    if (metOn) verdict = 'met';
    else if (row.status === 'done' && row.doneAt !== null) verdict = `*missed*: done ${slackDate(row.doneAt)}, ${formatDuration(row.doneAt - row.dueAt!)} late`;
    else if (row.deadlineMissed || row.dueAt! <= end) verdict = '*missed*';
    else verdict = `not reached: the incident was ${incident.status} before it`;
    lines.push(`• ${step.number}. ${escapeText(step.def.title)}: due ${slackDate(row.dueAt!)}, ${verdict}`);
  }
  return { text: `Timeline of incident #${incident.id}`, blocks: splitIntoSections(lines) };
}

/** Splits lines into section blocks that each fit Slack's section limit. */
function splitIntoSections(lines: string[]): SlackMessage['blocks'] {
  const blocks: SlackMessage['blocks'] = [];
  let current = '';
  let total = 0;
  for (const [index, line] of lines.entries()) {
    total += line.length;
    if (total > LIMITS.messageCharacters) {
      current += `\n_…and ${lines.length - index} more lines; the audit log keeps every event._`;
      break;
    }
    const piece = truncate(line, LIMITS.sectionText - 1);
    if (current.length + piece.length + 1 > LIMITS.sectionText) {
      blocks.push({ type: 'section', text: { type: 'mrkdwn', text: current } });
      current = '';
    }
    current = current ? `${current}\n${piece}` : piece;
  }
  if (current) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: current } });
  return blocks.slice(0, LIMITS.blocksPerMessage);
}

/** Lists one timeline line per audit entry worth a reader's time, oldest first. */
export function auditTimelineLines(view: IncidentView, db: Parameters<typeof listAudit>[0]): string[] {
  const titles = new Map(view.steps.map((step) => [step.def.id, `${step.number}. ${step.def.title}`]));
  const lines: string[] = [];
  for (const entry of listAudit(db, view.incident.id)) {
    const text = describeEntry(entry, titles);
    if (text) lines.push(`• ${slackDate(entry.at)} ${text}`);
  }
  return lines;
}

function describeEntry(entry: AuditEntry, titles: Map<string, string>): string | undefined {
  const who = entry.actor === 'runbook-bot' ? 'the bot' : mentionUser(entry.actor);
  const step = entry.stepId ? `*${escapeText(titles.get(entry.stepId) ?? entry.stepId)}*` : '';
  const detail = (key: string) => escapeText(String(entry.details[key] ?? ''));
  const prints = Object.entries((entry.details.fingerprints as Record<string, string> | undefined) ?? {}).map(([name, print]) => `${name} ${print}`);
  const fingerprints = prints.length > 0 ? ` (fingerprints ${prints.join(', ')})` : '';
  switch (entry.event) {
    case 'incident.declared':
      return `${who} declared the incident`;
    case 'step.done':
      return entry.details.by === 'pagerduty' ? `${step} done: PagerDuty accepted the page` : `${who} marked ${step} done`;
    case 'step.skipped':
      return `${who} skipped ${step}: ${detail('reason')}`;
    case 'step.undone':
      return `${who} reopened ${step}`;
    case 'step.assigned':
      return `${who} assigned ${step} to ${mentionUser(String(entry.details.assignee))}`;
    case 'incident.lead_taken':
      return `${who} took the lead`;
    case 'incident.paged_again':
      return `${who} paged on-call again`;
    case 'action.requested':
      return `${who} started the action of ${step}`;
    case 'action.approved':
      return `${who} approved the action of ${step}`;
    case 'action.succeeded':
      return `action of ${step} succeeded: ${detail('summary')}${fingerprints}`;
    case 'action.failed':
      return `action of ${step} failed: ${detail('error')}${fingerprints}`;
    case 'action.interrupted':
      return `action of ${step} was interrupted by a restart`;
    case 'permission.refused':
      return `${who} was refused (not a responder) ${step ? `on ${step}` : ''}`.trim();
    case 'timer.fired':
      return entry.details.effect === 'escalated' ? `deadline of ${step} missed; escalated` : undefined;
    case 'incident.cancelled':
      return `${who} cancelled the incident`;
    case 'incident.resolved':
      return 'every step finished; the incident is resolved';
    default:
      return undefined;
  }
}
