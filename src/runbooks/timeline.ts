import { listAudit } from '../store/audit.ts';
import { formatDuration } from './duration.ts';
import { escapeText, mentionUser, slackDate, truncate } from './mrkdwn.ts';
import { LIMITS, type SlackMessage } from './render.ts';
import type { IncidentView } from './view.ts';

/**
 * The post-incident timeline: each step with who finished it and when, and
 * whether its deadline was met. Audit entries are summarised by the view's
 * caller through `renderAuditLines`.
 */
export function renderTimeline(view: IncidentView, auditLines: string[] = []): SlackMessage {
  const { incident } = view;
  const end = incident.resolvedAt ?? view.now;
  const lines = [
    `*Timeline of incident #${incident.id}* (${escapeText(incident.title)}), ${incident.status} after ${formatDuration(end - incident.declaredAt)}`,
    `• ${slackDate(incident.declaredAt)}: declared by ${mentionUser(incident.declaredBy)}`,
  ];
  for (const step of view.steps) {
    const { row } = step;
    const who = row.doneBy ? (row.doneBy === 'runbook-bot' ? 'the bot' : mentionUser(row.doneBy)) : 'nobody';
    let line = `• ${step.number}. ${escapeText(step.def.title)}: `;
    if (row.status === 'done') line += `done by ${who} at ${slackDate(row.doneAt!)}`;
    else if (row.status === 'skipped') line += `skipped by ${who} at ${slackDate(row.doneAt!)} (${escapeText(row.skipReason ?? '')})`;
    else line += 'not finished';
    if (row.dueAt !== null) {
      const met = row.status === 'done' && row.doneAt !== null && row.doneAt <= row.dueAt;
      line += met ? ' · deadline met' : ' · *deadline missed*';
    }
    lines.push(line);
  }
  lines.push(...auditLines);
  lines.push(`• ${slackDate(end)}: ${incident.status}`);

  // Split into sections that each fit Slack's section limit.
  const blocks: SlackMessage['blocks'] = [];
  let current = '';
  for (const line of lines) {
    const piece = truncate(line, LIMITS.sectionText - 1);
    if (current.length + piece.length + 1 > LIMITS.sectionText) {
      blocks.push({ type: 'section', text: { type: 'mrkdwn', text: current } });
      current = '';
    }
    current = current ? `${current}\n${piece}` : piece;
  }
  if (current) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: current } });
  return { text: `Timeline of incident #${incident.id}`, blocks: blocks.slice(0, LIMITS.blocksPerMessage) };
}

/** Audit events worth a line in the timeline: actions, escalations, lead changes, refusals. */
export function auditTimelineLines(view: IncidentView, db: Parameters<typeof listAudit>[0]): string[] {
  const interesting = new Set(['action.succeeded', 'action.failed', 'action.interrupted', 'action.approved', 'incident.lead_taken', 'permission.refused', 'incident.paged_again']);
  const lines: string[] = [];
  for (const entry of listAudit(db, view.incident.id)) {
    if (entry.event === 'timer.fired' && entry.details.effect === 'escalated') {
      lines.push(`• ${slackDate(entry.at)}: deadline missed on ${escapeText(String(entry.stepId))}, escalated`);
    } else if (interesting.has(entry.event)) {
      const detail = entry.details.summary ?? entry.details.error ?? entry.details.attempted ?? '';
      const prints = Object.entries((entry.details.fingerprints as Record<string, string> | undefined) ?? {}).map(([name, print]) => `${name} ${print}`);
      const actor = entry.actor === 'runbook-bot' ? 'the bot' : mentionUser(entry.actor);
      lines.push(`• ${slackDate(entry.at)}: ${entry.event.replace('.', ' ')} by ${actor}${detail ? `: ${escapeText(String(detail))}` : ''}${prints.length ? ` (fingerprints ${prints.join(', ')})` : ''}`);
    }
  }
  return lines;
}
