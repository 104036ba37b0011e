import type { Clock } from '../bot/clock.ts';
import { ActionError, UserError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { scrubText } from '../bot/redact.ts';
import * as runsStore from '../store/action-runs.ts';
import { insertAccepted, listAcceptedIds, takeAccepted, type AcceptedDeclaration } from '../store/accepted-declarations.ts';
import { appendAudit } from '../store/audit.ts';
import { inTransaction, type Db } from '../store/db.ts';
import * as incidents from '../store/incidents.ts';
import { enqueue, listOutbox, type OutboxRow } from '../store/outbox.ts';
import * as timers from '../store/timers.ts';
import { findWebhookEvent, recordWebhookEvent } from '../store/webhook-events.ts';
import { getBackup, recentBackups, type BackupRow } from '../store/backups.ts';
import { recordRotation } from '../store/rotations.ts';
import type { ActionRegistry } from './actions-registry.ts';
import type { RunbookCatalog } from './loader.ts';
import { escapeText, mentionUser } from './mrkdwn.ts';
import {
  countdownLabel,
  LATE_THRESHOLD_MS,
  renderEscalation,
  renderNotice,
  renderReminder,
  renderWatchCheckin,
  renderWatchEnd,
  type SlackMessage,
} from './render.ts';
import type { Runbook, RunbookStep } from './schema.ts';
import { auditTimelineLines, renderTimeline } from './timeline.ts';
import type { IncidentView, PagingView, StepView } from './view.ts';

/** The person who pressed a button or typed a command. */
export interface Actor {
  userId: string;
  /** In RESPONDERS, directly or through a user group. */
  isResponder: boolean;
}

export interface EnginePolicy {
  /** RESPONDERS is set; without it anyone may mark steps and no action runs. */
  respondersConfigured: boolean;
  requireSecondApprover: boolean;
}

export interface PagingConfig {
  enabled: boolean;
  /** Shown when paging is off: the variable to set. */
  disabledReason?: string;
}

export interface EngineDeps {
  db: Db;
  clock: Clock;
  logger: Logger;
  runbooks: RunbookCatalog;
  actions: ActionRegistry;
  policy: EnginePolicy;
  paging: PagingConfig;
  /** Called after each commit that queued outbox messages, to deliver them now. */
  onOutbox: () => void;
  /** Called after each commit that armed timers, to schedule them now. */
  onTimers: () => void;
  /**
   * Looks for signs of forged sessions between two times, for the watch
   * check-ins; returns mrkdwn lines to post, or undefined to post nothing.
   */
  watchFindings?: (incidentId: number, since: number, until: number) => Promise<string | undefined>;
  /** Called after an action run succeeds, inside its transaction (rotation history). */
  onActionSucceeded?: (event: { incidentId: number; actionId: string; actor: string; outcome: import('../actions/types.ts').ActionOutcome; at: number }) => void;
}

export const MAX_SUMMARY_LENGTH = 8000;
/** Secrets whose rotations the bot tracks for its 90-day reminders. */
export const ROTATED_SECRETS = ['DJANGO_SECRET_KEY', 'SENTRY_DSN'];
export const MAX_REASON_LENGTH = 500;
export const BOT_ACTOR = 'runbook-bot';

export interface DeclareInput {
  runbook: Runbook;
  summary: string;
  channelId: string;
  userId: string;
  origin?: string;
  force?: boolean;
  metadata?: Record<string, unknown>;
  /** The declarer; steps marked runs_on_start run as this actor when it may run actions. */
  actor?: Actor;
  /** A second declaration with the same key (a double click) returns the first incident. */
  idempotencyKey?: string;
}

export type DeclareResult =
  | { kind: 'declared'; incidentId: number }
  | { kind: 'duplicate'; open: incidents.IncidentRow };

/** Returns the trimmed summary, or throws when it is longer than an incident message can carry. */
export function checkSummary(text: string): string {
  const summary = text.trim();
  if (summary.length > MAX_SUMMARY_LENGTH) {
    throw new UserError(
      'invalid_command',
      `The summary is ${summary.length} characters long; the limit is ${MAX_SUMMARY_LENGTH}. Put the short version in the command and the details in the thread.`,
    );
  }
  return summary;
}

/**
 * The incident state machine. Every change is one immediate transaction that
 * writes the new state, its audit entry, the timers it arms and the outbox
 * messages that tell Slack and PagerDuty. Nothing here talks to Slack.
 */
export class Engine {
  private readonly inFlight = new Set<Promise<unknown>>();
  /** When this process started; a timer due before it fired late because the bot was down. */
  private readonly startedAt: number;

  constructor(private readonly deps: EngineDeps) {
    this.startedAt = deps.clock.now();
  }

  get now(): number {
    return this.deps.clock.now();
  }

  /** Whether PagerDuty is configured, and the variable to set when it is not. */
  get paging(): PagingConfig {
    return this.deps.paging;
  }

  // --- declaring and closing ---------------------------------------------------------

  declare(input: DeclareInput): DeclareResult {
    const summary = checkSummary(input.summary);
    const now = this.now;
    const result = inTransaction(this.deps.db, () => this.writeDeclaration({ ...input, summary }, now));
    this.afterDeclaration(result, input);
    return result;
  }

  /**
   * Records a declaration before Slack is acknowledged and returns its id.
   * It is one small insert, so the incident's rows do not delay the ack, and
   * a process killed after the ack still opens the incident on restart.
   */
  acceptDeclaration(input: { runbook: Runbook; summary: string; channelId: string; userId: string }): number {
    const summary = checkSummary(input.summary);
    return insertAccepted(this.deps.db, { receivedAt: this.now, runbookId: input.runbook.id, summary, channelId: input.channelId, userId: input.userId });
  }

  /**
   * Turns an accepted declaration into an incident in the transaction that
   * deletes the accepted row, so a second call finds no row and opens nothing.
   * Deadlines count from when the command arrived. Returns undefined when the
   * row is gone or names a runbook this build lacks (logged).
   */
  declareAccepted(acceptedId: number, actor?: Actor): DeclareResult | undefined {
    let declared: { result: DeclareResult; input: DeclareInput } | undefined;
    inTransaction(this.deps.db, () => {
      const accepted = takeAccepted(this.deps.db, acceptedId);
      if (!accepted) return;
      const runbook = this.deps.runbooks.find(accepted.runbookId);
      if (!runbook) {
        this.dropAccepted(accepted);
        return;
      }
      const input: DeclareInput = { runbook, summary: accepted.summary, channelId: accepted.channelId, userId: accepted.userId, actor };
      declared = { result: this.writeDeclaration(input, accepted.receivedAt), input };
    });
    if (!declared) return undefined;
    this.afterDeclaration(declared.result, declared.input);
    return declared.result;
  }

  /**
   * Opens the incidents of declarations accepted before the process stopped
   * and returns how many there were. The response URL is not stored, so their
   * declarers get no ephemeral confirmation, only the incident message.
   */
  declareLeftoverAccepted(): number {
    const ids = listAcceptedIds(this.deps.db);
    for (const acceptedId of ids) {
      const result = this.declareAccepted(acceptedId);
      this.deps.logger.info({ acceptedId, incidentId: result?.kind === 'declared' ? result.incidentId : undefined, outcome: result?.kind ?? 'dropped' }, 'accepted declaration resumed after a restart');
    }
    return ids.length;
  }

  /**
   * Tells the channel that an acknowledged declaration could not be opened,
   * because its runbook is gone (removed or renamed before a restart).
   */
  private dropAccepted(accepted: AcceptedDeclaration): void {
    const { db, logger } = this.deps;
    const ids = this.deps.runbooks.all.filter((runbook) => runbook.declarable).map((runbook) => `\`${runbook.id}\``);
    const text = `:warning: ${mentionUser(accepted.userId)}, your \`/incident ${escapeText(accepted.runbookId)}\` was not opened: this version of runbook-bot has no runbook "${escapeText(accepted.runbookId)}" (removed or renamed before the bot restarted). Declare it again with one of ${ids.join(', ')}.`;
    enqueue(db, { incidentId: null, target: 'slack', kind: 'channel_post', payload: { channel: accepted.channelId, message: renderNotice(text) } }, this.now);
    appendAudit(db, { incidentId: null, at: this.now, actor: BOT_ACTOR, event: 'declaration.dropped', details: { runbook: accepted.runbookId, userId: accepted.userId, channelId: accepted.channelId, receivedAt: accepted.receivedAt } });
    logger.error({ acceptedId: accepted.id, runbookId: accepted.runbookId, channelId: accepted.channelId, userId: accepted.userId }, 'accepted declaration names an unknown runbook; dropped');
    this.deps.onOutbox();
  }

  private writeDeclaration(input: DeclareInput, now: number): DeclareResult {
    const { db } = this.deps;
    if (input.idempotencyKey) {
      const earlier = incidents.findByIdempotencyKey(db, input.idempotencyKey);
      if (earlier) return { kind: 'duplicate', open: earlier };
    }
    if (!input.force) {
      const open = incidents.findOpenIncident(db, input.channelId, input.runbook.id);
      if (open) return { kind: 'duplicate', open };
    }
    const id = incidents.insertIncident(db, {
      runbookId: input.runbook.id,
      title: input.runbook.title,
      severity: input.runbook.severity,
      summary: input.summary,
      channelId: input.channelId,
      declaredBy: input.userId,
      declaredAt: now,
      origin: input.origin ?? 'command',
      metadata: input.idempotencyKey ? { ...input.metadata, idempotencyKey: input.idempotencyKey } : input.metadata,
      steps: input.runbook.steps.map((step) => ({
        stepId: step.id,
        dueAt: step.deadline !== undefined ? now + step.deadline : null,
        watchEndsAt: step.watch ? now + step.watch.duration : null,
      })),
    });
    this.armStepTimers(id, input.runbook, now);
    appendAudit(db, { incidentId: id, at: now, actor: input.userId, event: 'incident.declared', details: { runbook: input.runbook.id, origin: input.origin ?? 'command', forced: Boolean(input.force) } });
    enqueue(db, { incidentId: id, target: 'slack', kind: 'post_incident' }, now);
    if (input.runbook.pages && this.deps.paging.enabled) this.queuePage(id, 'trigger', input.runbook.severity, 'declared');
    return { kind: 'declared', incidentId: id };
  }

  private afterDeclaration(result: DeclareResult, input: DeclareInput): void {
    if (result.kind !== 'declared') return;
    this.deps.logger.info({ incidentId: result.incidentId, runbookId: input.runbook.id, userId: input.userId }, 'incident declared');
    this.afterCommit();
    this.startOnDeclare(result.incidentId, input.runbook, input.actor ?? { userId: input.userId, isResponder: input.userId === BOT_ACTOR });
  }

  /** Starts the actions of steps marked runs_on_start; a refusal leaves the step for a person. */
  private startOnDeclare(incidentId: number, runbook: Runbook, actor: Actor): void {
    for (const step of runbook.steps.filter((candidate) => candidate.runs_on_start)) {
      try {
        this.requestAction(incidentId, step.id, actor);
      } catch (error) {
        this.deps.logger.info({ incidentId, stepId: step.id, code: error instanceof UserError ? error.code : 'error' }, 'action not started at declaration');
      }
    }
  }

  private armStepTimers(incidentId: number, runbook: Runbook, start: number): void {
    const { db } = this.deps;
    for (const step of runbook.steps) {
      if (step.deadline !== undefined) {
        const dueAt = start + step.deadline;
        for (const before of step.reminders) {
          timers.insertTimer(db, { incidentId, stepId: step.id, kind: 'reminder', dueAt: dueAt - before, payload: { beforeMs: before } });
        }
        timers.insertTimer(db, { incidentId, stepId: step.id, kind: 'deadline', dueAt });
      }
      if (step.watch) {
        const { duration, checkin } = step.watch;
        if (checkin) {
          for (let at = checkin; at < duration; at += checkin) {
            timers.insertTimer(db, { incidentId, stepId: step.id, kind: 'watch_checkin', dueAt: start + at, payload: { elapsedMs: at } });
          }
        }
        timers.insertTimer(db, { incidentId, stepId: step.id, kind: 'watch_end', dueAt: start + duration });
      }
    }
  }

  cancel(incidentId: number, actor: Actor): void {
    const now = this.now;
    this.change(incidentId, actor, { requireResponder: true, event: 'incident.cancel' }, (incident) => {
      this.closeInTransaction(incident, 'cancelled', actor.userId, now);
    });
  }

  private closeInTransaction(incident: incidents.IncidentRow, status: 'resolved' | 'cancelled', actorId: string, now: number): void {
    const { db } = this.deps;
    if (!incidents.closeIncident(db, incident.id, status, now)) return;
    // Follow-ups (removing a fallback key, deactivating an old Sentry key)
    // outlive the incident: the old key must go even after the thread closes.
    const cancelled = timers.cancelIncidentTimers(db, incident.id, undefined, ['reminder', 'deadline', 'watch_checkin', 'watch_end']);
    appendAudit(db, { incidentId: incident.id, at: now, actor: actorId, event: `incident.${status}`, details: { timersCancelled: cancelled } });
    const runbook = this.runbookOf(incident);
    if (runbook.pages && this.deps.paging.enabled) this.queuePage(incident.id, 'resolve', runbook.severity, status);
    this.queueRefresh(incident.id);
    const view = this.view(incident.id);
    this.queuePost(incident.id, renderTimeline(view, auditTimelineLines(view, db)));
  }

  // --- steps ---------------------------------------------------------------------------

  completeStep(incidentId: number, stepId: string, actor: Actor): void {
    const now = this.now;
    this.changeStep(incidentId, stepId, actor, 'step.done', (incident, step) => {
      if (step.status === 'done' && step.doneBy === actor.userId) {
        // A double click: the first click already marked it, so report that.
        throw new UserError('invalid_transition', `You already marked "${this.stepDef(incident, step.stepId).title}" done, so nothing changed.`);
      }
      this.requireStatus(incident, step, 'pending', 'mark it done');
      this.requirePrerequisites(incident, this.stepDef(incident, stepId));
      incidents.setStepStatus(this.deps.db, incidentId, stepId, { status: 'done', by: actor.userId, at: now });
      this.resolveWhenFinished(incident, actor.userId, now);
    });
  }

  skipStep(incidentId: number, stepId: string, actor: Actor, reason: string): void {
    const trimmed = reason.trim();
    if (trimmed.length === 0) throw new UserError('invalid_input', 'A skip needs a reason, so the review can see why the step was not done. Write one and submit again.');
    if (trimmed.length > MAX_REASON_LENGTH) {
      throw new UserError('invalid_input', `The reason is ${trimmed.length} characters long; the limit is ${MAX_REASON_LENGTH}. Shorten it and submit again.`);
    }
    const now = this.now;
    this.changeStep(incidentId, stepId, actor, 'step.skipped', (incident, step) => {
      this.requireStatus(incident, step, 'pending', 'skip it');
      this.requirePrerequisites(incident, this.stepDef(incident, stepId));
      incidents.setStepStatus(this.deps.db, incidentId, stepId, { status: 'skipped', by: actor.userId, at: now, skipReason: trimmed });
      this.resolveWhenFinished(incident, actor.userId, now);
    }, { reason: trimmed });
  }

  undoStep(incidentId: number, stepId: string, actor: Actor): void {
    const now = this.now;
    this.changeStep(incidentId, stepId, actor, 'step.undone', (incident, step) => {
      if (step.status === 'pending') {
        throw new UserError('invalid_transition', `Step "${this.stepDef(incident, stepId).title}" is not done or skipped, so there is nothing to undo.`);
      }
      incidents.setStepStatus(this.deps.db, incidentId, stepId, { status: 'pending', by: null, at: null });
      // A deadline that passed while the step was done has not escalated yet: escalate now.
      if (step.dueAt !== null && step.dueAt <= now && !step.deadlineMissed) {
        timers.insertTimer(this.deps.db, { incidentId, stepId, kind: 'deadline', dueAt: now });
      }
    });
  }

  assignStep(incidentId: number, stepId: string, actor: Actor, assignee: string, assigneeIsResponder = true): void {
    if (!/^[UW][A-Z0-9]{2,}$/.test(assignee)) throw new UserError('invalid_input', `"${assignee}" is not a Slack user; pick a person from the list.`);
    this.changeStep(incidentId, stepId, actor, 'step.assigned', (incident, step) => {
      this.requireStatus(incident, step, 'pending', 'assign it');
      if (incident.severity === 'critical' && this.deps.policy.respondersConfigured && !assigneeIsResponder) {
        throw new UserError('invalid_input', `${mentionUser(assignee)} is not a responder, so they could not change this critical incident. Pick a responder.`);
      }
      incidents.setStepAssignee(this.deps.db, incidentId, stepId, assignee);
      // Slack does not notify a person mentioned in an edited message, so the
      // assignment gets a thread reply of its own.
      const title = this.runbookOf(incident).steps.find((candidate) => candidate.id === stepId)?.title ?? stepId;
      const assignment = assignee === actor.userId ? `${mentionUser(assignee)} took` : `${mentionUser(actor.userId)} assigned ${mentionUser(assignee)}`;
      this.queuePost(incidentId, renderNotice(`:bust_in_silhouette: ${assignment} the step *${escapeText(title)}*.`));
    }, { assignee });
  }

  takeLead(incidentId: number, actor: Actor): void {
    // Slack shows the button to every viewer, the lead included. The lead's
    // own press changes nothing and is not a refused change, even for a lead
    // who is not a responder on a critical incident.
    const current = incidents.getIncident(this.deps.db, incidentId);
    if (current?.status === 'open' && current.leadUserId === actor.userId) {
      throw new UserError('invalid_transition', `You already lead incident #${incidentId}, so nothing was changed.`);
    }
    this.change(incidentId, actor, { requireResponder: true, event: 'incident.lead_taken' }, (incident) => {
      // The same check in the transaction, for two presses that race.
      if (incident.leadUserId === actor.userId) throw new UserError('invalid_transition', `You already lead incident #${incidentId}, so nothing was changed.`);
      incidents.setLead(this.deps.db, incidentId, actor.userId);
      this.queuePost(incidentId, renderNotice(`:bust_in_silhouette: ${mentionUser(actor.userId)} is now the lead of incident #${incidentId} (was ${mentionUser(incident.leadUserId)}).`));
    }, (incident) => ({ previousLead: incident.leadUserId }));
  }

  pageAgain(incidentId: number, actor: Actor): void {
    if (!this.deps.paging.enabled) throw new UserError('action_not_configured', `Paging is off: ${this.deps.paging.disabledReason ?? 'PagerDuty is not configured'}.`);
    this.change(incidentId, actor, { requireResponder: true, event: 'incident.paged_again' }, (incident) => {
      this.queuePage(incidentId, 'trigger', 'critical', 'page_again', actor.userId);
      this.queuePost(incidentId, renderNotice(`:pager: ${mentionUser(actor.userId)} paged on-call again for incident #${incident.id}.`));
    });
  }

  /** Ticks steps that complete when PagerDuty accepts the page. */
  onPageAccepted(incidentId: number, dedupKey: string): void {
    const now = this.now;
    const { db } = this.deps;
    inTransaction(db, () => {
      const incident = incidents.getIncident(db, incidentId);
      if (!incident || incident.status !== 'open') return;
      const runbook = this.runbookOf(incident);
      for (const def of runbook.steps.filter((step) => step.completes_on === 'page_accepted')) {
        const step = incidents.getStep(db, incidentId, def.id);
        if (step?.status !== 'pending') continue;
        incidents.setStepStatus(db, incidentId, def.id, { status: 'done', by: BOT_ACTOR, at: now });
        incidents.setStepNote(db, incidentId, def.id, `PagerDuty accepted the page (dedup key ${dedupKey})`);
        appendAudit(db, { incidentId, at: now, actor: BOT_ACTOR, event: 'step.done', stepId: def.id, details: { by: 'pagerduty', dedupKey } });
        this.resolveWhenFinished(incident, BOT_ACTOR, now);
      }
      this.queueRefresh(incidentId);
    });
    this.afterCommit();
  }

  /**
   * Tells the thread how paging goes: once when PagerDuty cannot be reached
   * (the page stays queued), once when it lands after retries, and once when
   * PagerDuty rejects it. A rejection repeated by later events is not posted again.
   */
  notePageAttempt(message: OutboxRow, result: { kind: 'delivered' | 'retry' | 'failed'; error?: string; result?: Record<string, unknown> }): void {
    const incidentId = message.incidentId;
    if (incidentId === null) {
      this.noteOpsPageAttempt(message, result);
      return;
    }
    const { db } = this.deps;
    const action = String(message.payload.action);
    const isTrigger = action === 'trigger';
    inTransaction(db, () => {
      if (result.kind === 'retry' && message.attempts === 0) {
        this.queuePost(incidentId, renderNotice(`:warning: PagerDuty is unreachable (${escapeText(result.error ?? 'no answer')}). The ${isTrigger ? 'page' : 'resolve'} is queued and retrying; on-call has not been reached yet.`));
      } else if (result.kind === 'delivered' && message.attempts > 0) {
        this.queuePost(incidentId, renderNotice(`:pager: The ${isTrigger ? 'page' : 'resolve'} reached PagerDuty after ${message.attempts + 1} attempts.`));
      } else if (result.kind === 'failed') {
        const earlier = listOutbox(db, incidentId, 'pagerduty').filter((row) => row.id !== message.id && row.status === 'failed' && row.lastError === result.error);
        if (earlier.length === 0) this.queuePost(incidentId, renderNotice(`:x: ${escapeText(result.error ?? 'PagerDuty rejected the event')}. Check PAGERDUTY_ROUTING_KEY; on-call was not paged by the bot.`));
      }
      this.queueRefresh(incidentId);
    });
    if (result.kind === 'delivered' && isTrigger && message.payload.reason === 'declared') {
      this.onPageAccepted(incidentId, String(result.result?.dedupKey ?? ''));
    } else {
      this.afterCommit();
    }
  }

  /**
   * Tells the channel named by a page outside any incident (a failed backup)
   * how its delivery goes: once when PagerDuty cannot be reached, once when
   * it lands after retries, and once when it cannot be delivered at all.
   */
  private noteOpsPageAttempt(message: OutboxRow, result: { kind: 'delivered' | 'retry' | 'failed'; error?: string }): void {
    const channel = message.payload.channel;
    if (typeof channel !== 'string') return;
    const subject = escapeText(String(message.payload.subject ?? message.payload.dedupKey));
    let text: string | undefined;
    if (result.kind === 'retry' && message.attempts === 0) {
      text = `:warning: PagerDuty is unreachable (${escapeText(result.error ?? 'no answer')}). The page for ${subject} is queued and retrying; on-call has not been reached yet.`;
    } else if (result.kind === 'delivered' && message.attempts > 0) {
      text = `:pager: The page for ${subject} reached PagerDuty after ${message.attempts + 1} attempts.`;
    } else if (result.kind === 'failed') {
      text = `:x: The page for ${subject} was not delivered: ${escapeText(result.error ?? 'no reason given')}. Check PAGERDUTY_ROUTING_KEY; on-call was not paged by the bot.`;
    }
    if (text) this.postToChannel(channel, renderNotice(text), `ops_page.${result.kind}`, { dedupKey: message.payload.dedupKey, attempt: message.attempts + 1 });
  }

  private resolveWhenFinished(incident: incidents.IncidentRow, actorId: string, now: number): void {
    const pending = incidents.listSteps(this.deps.db, incident.id).filter((step) => step.status === 'pending');
    if (pending.length === 0) this.closeInTransaction({ ...incident }, 'resolved', actorId, now);
  }

  // --- actions ---------------------------------------------------------------------------

  /**
   * Starts the action of a step, or requests it when a second approver is
   * required. Returns the run; the action itself runs after the commit.
   */
  requestAction(incidentId: number, stepId: string, actor: Actor, inputs: Record<string, string> = {}): runsStore.ActionRunRow {
    const now = this.now;
    const { db } = this.deps;
    let runId: number | undefined;
    let start = false;
    this.changeStep(incidentId, stepId, actor, 'action.requested', (incident, step) => {
      const def = this.stepDef(incident, stepId);
      const action = def.action;
      if (!action) throw new UserError('invalid_transition', `Step "${def.title}" has no action to run; press Done when it is finished.`);
      this.requireActionPermission(incident, actor, action.id, stepId);
      const existing = runsStore.findActiveRun(db, incidentId, stepId, action.id);
      // A read-only check may run again (an audit item after a fix); an
      // action that changes something runs once.
      if (existing && existing.status === 'succeeded' && !action.destructive) runsStore.supersedeRun(db, existing.id);
      else if (existing) throw describeExistingRun(existing);
      this.requireStatus(incident, step, 'pending', 'run its action');
      this.requirePrerequisites(incident, def);
      const missing = this.deps.actions.missingConfig(action.id);
      if (missing.length > 0) {
        throw new UserError('action_not_configured', `${action.label} is not configured: set ${missing.join(', ')}. Do the step by hand and press Done.`);
      }
      for (const input of action.inputs) {
        if (!input.optional && !(inputs[input.id] ?? '').trim()) throw new UserError('invalid_input', `${input.label} is empty; fill it in and submit again.`);
      }
      const needsSecond = this.deps.policy.requireSecondApprover && action.destructive;
      runId = runsStore.insertRun(db, { incidentId, stepId, action: action.id, status: needsSecond ? 'requested' : 'running', requestedBy: actor.userId, approvedBy: needsSecond ? null : actor.userId, at: now, inputs });
      if (runId === undefined) throw describeExistingRun(runsStore.findActiveRun(db, incidentId, stepId, action.id)!);
      start = !needsSecond;
    }, { action: this.actionIdOf(incidentId, stepId) });
    const run = runsStore.getRun(db, runId!)!;
    if (start) this.startRun(run.id);
    return run;
  }

  /** Throws what requestAction would refuse for, without starting anything (before a form opens). */
  checkActionAllowed(incidentId: number, stepId: string, actor: Actor): void {
    const { db } = this.deps;
    try {
      const incident = this.requireIncident(incidentId);
      this.requireOpen(incident);
      const def = this.stepDef(incident, stepId);
      if (!def.action) throw new UserError('invalid_transition', `Step "${def.title}" has no action to run.`);
      this.requireActionPermission(incident, actor, def.action.id, stepId);
      const existing = runsStore.findActiveRun(db, incidentId, stepId, def.action.id);
      if (existing && !(existing.status === 'succeeded' && !def.action.destructive)) throw describeExistingRun(existing);
      const step = incidents.getStep(db, incidentId, stepId)!;
      this.requireStatus(incident, step, 'pending', 'run its action');
      this.requirePrerequisites(incident, def);
      const missing = this.deps.actions.missingConfig(def.action.id);
      if (missing.length > 0) throw new UserError('action_not_configured', `${def.action.label} is not configured: set ${missing.join(', ')}.`);
    } finally {
      this.afterCommit();
    }
  }

  /** Approves a requested run as a second responder, then starts it. */
  approveAction(incidentId: number, stepId: string, runId: number, actor: Actor): runsStore.ActionRunRow {
    const now = this.now;
    const { db } = this.deps;
    this.changeStep(incidentId, stepId, actor, 'action.approved', (incident) => {
      const run = runsStore.getRun(db, runId);
      if (!run || run.incidentId !== incidentId || run.stepId !== stepId) throw new UserError('stale_button', 'This approval button is out of date; use the buttons on the latest checklist message.');
      this.requireActionPermission(incident, actor, run.action, stepId);
      if (run.status !== 'requested') throw describeExistingRun(run);
      if (run.requestedBy === actor.userId) {
        throw new UserError('not_permitted', 'A second responder must approve this action; you requested it. Ask another responder to press Approve.');
      }
      runsStore.approveRun(db, runId, actor.userId, now);
    }, { runId });
    this.startRun(runId);
    return runsStore.getRun(db, runId)!;
  }

  /** Starts a follow-up that needs no button (deactivating an old Sentry key a week later). */
  private runAutomaticFollowUp(incidentId: number, timer: timers.TimerRow, actionId: string): void {
    const { db } = this.deps;
    const now = this.now;
    const stepId = `follow-up-${timer.id}`;
    const runId = inTransaction(db, () => {
      const id = runsStore.insertRun(db, { incidentId, stepId, action: actionId, status: 'running', requestedBy: BOT_ACTOR, approvedBy: BOT_ACTOR, at: now, inputs: {} });
      if (id !== undefined) appendAudit(db, { incidentId, at: now, actor: BOT_ACTOR, event: 'follow_up.started', stepId, details: { action: actionId, timerId: timer.id } });
      return id;
    });
    if (runId !== undefined) this.startRun(runId, timer.payload as Record<string, string | number | boolean>);
  }

  /** Runs the follow-up that a fired follow-up timer offered (for example removing a fallback key). */
  runFollowUp(incidentId: number, timerId: number, actor: Actor): runsStore.ActionRunRow {
    const now = this.now;
    const { db } = this.deps;
    const timer = timers.getTimer(db, timerId);
    if (!timer || timer.incidentId !== incidentId || timer.kind !== 'follow_up') {
      throw new UserError('stale_button', 'This button does not match a follow-up of this incident; use /incident list to find the incident.');
    }
    const offer = FOLLOW_UPS[String(timer.payload.followUp)];
    if (!offer) throw new UserError('stale_button', `This build does not know the follow-up "${String(timer.payload.followUp)}".`);
    const actionId = offer.action;
    const stepId = `follow-up-${timerId}`;
    let runId: number | undefined;
    try {
      this.runFollowUpTransaction(incidentId, timerId, actor, actionId, stepId, now, (id) => (runId = id));
    } finally {
      this.afterCommit();
    }
    this.startRun(runId!, timer.payload as Record<string, string | number | boolean>);
    return runsStore.getRun(db, runId!)!;
  }

  private runFollowUpTransaction(incidentId: number, timerId: number, actor: Actor, actionId: string, stepId: string, now: number, setRunId: (id: number) => void): void {
    const { db } = this.deps;
    let runId: number | undefined;
    inTransaction(db, () => {
      const incident = this.requireIncident(incidentId);
      this.requireActionPermissionOrAudit(incident, actor, actionId, stepId, now);
      const existing = runsStore.findActiveRun(db, incidentId, stepId, actionId);
      if (existing) throw describeExistingRun(existing);
      const missing = this.deps.actions.missingConfig(actionId);
      if (missing.length > 0) throw new UserError('action_not_configured', `This follow-up is not configured: set ${missing.join(', ')}.`);
      runId = runsStore.insertRun(db, { incidentId, stepId, action: actionId, status: 'running', requestedBy: actor.userId, approvedBy: actor.userId, at: now, inputs: {} });
      if (runId === undefined) throw describeExistingRun(runsStore.findActiveRun(db, incidentId, stepId, actionId)!);
      appendAudit(db, { incidentId, at: now, actor: actor.userId, event: 'follow_up.requested', stepId, details: { action: actionId, timerId } });
    });
    setRunId(runId!);
  }

  private startRun(runId: number, extraArgs: Record<string, string | number | boolean> = {}): void {
    const promise = this.executeRun(runId, extraArgs).finally(() => this.inFlight.delete(promise));
    this.inFlight.add(promise);
  }

  /** Resolves when every action started so far has finished (for shutdown and tests). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  private async executeRun(runId: number, extraArgs: Record<string, string | number | boolean>): Promise<void> {
    const { db, logger } = this.deps;
    const run = runsStore.getRun(db, runId)!;
    const incident = incidents.getIncident(db, run.incidentId)!;
    const runbook = this.runbookOf(incident);
    const stepDef = runbook.steps.find((step) => step.id === run.stepId);
    const definition = this.deps.actions.get(run.action);
    const runLogger = logger.child({ incidentId: run.incidentId, stepId: run.stepId, actionId: run.action, runId });
    runLogger.info('action started');
    const args = { ...(stepDef?.action?.with ?? {}), ...extraArgs };
    try {
      if (!definition) throw new ActionError('unknown_action', `this build has no action named ${run.action}`);
      const outcome = await definition.run(
        { incidentId: run.incidentId, declaredAt: incident.declaredAt, metadata: incident.metadata, stepId: run.stepId, inputs: run.inputs, reason: args.reason === 'incident' ? 'incident' : 'periodic', clock: this.deps.clock, logger: runLogger },
        args,
      );
      this.finishRunSucceeded(run, incident, stepDef, outcome);
      runLogger.info({ durationMs: this.now - (run.startedAt ?? run.requestedAt) }, 'action succeeded');
    } catch (error) {
      const message = error instanceof ActionError ? scrubText(error.message) : `unexpected error: ${scrubText(error instanceof Error ? error.message : String(error))}`;
      if (error instanceof ActionError) runLogger.warn({ code: error.code, err: error }, 'action failed');
      else runLogger.error({ err: error }, 'action failed with an unexpected error');
      const details = error instanceof ActionError ? error.details : {};
      this.finishRunFailed(run, message, details);
    }
  }

  private finishRunSucceeded(run: runsStore.ActionRunRow, incident: incidents.IncidentRow, stepDef: RunbookStep | undefined, outcome: import('../actions/types.ts').ActionOutcome): void {
    const { db } = this.deps;
    const now = this.now;
    inTransaction(db, () => {
      const result = {
        summary: scrubText(outcome.summary),
        facts: outcome.facts.map(([label, value]) => [label, scrubText(value)]),
        fingerprints: outcome.fingerprints ?? {},
        needsReview: outcome.completesStep === false,
      };
      if (!runsStore.finishRun(db, run.id, { status: 'succeeded', at: now, result })) return;
      appendAudit(db, { incidentId: run.incidentId, at: now, actor: run.approvedBy ?? run.requestedBy, event: 'action.succeeded', stepId: run.stepId, details: { action: run.action, runId: run.id, fingerprints: outcome.fingerprints ?? {}, summary: result.summary } });
      this.deps.onActionSucceeded?.({ incidentId: run.incidentId, actionId: run.action, actor: run.approvedBy ?? run.requestedBy, outcome, at: now });
      for (const followUp of outcome.followUps ?? []) {
        timers.insertTimer(db, { incidentId: run.incidentId, stepId: run.stepId, kind: 'follow_up', dueAt: now + followUp.delayMs, payload: { followUp: followUp.kind, ...followUp.payload } });
      }
      const current = incidents.getIncident(db, run.incidentId)!;
      if (!stepDef) this.completeFollowUpStep(current, run, now);
      const step = stepDef ? incidents.getStep(db, run.incidentId, run.stepId) : undefined;
      if (current.status === 'open' && step?.status === 'pending' && outcome.completesStep !== false) {
        incidents.setStepStatus(db, run.incidentId, run.stepId, { status: 'done', by: run.approvedBy ?? run.requestedBy, at: now });
        appendAudit(db, { incidentId: run.incidentId, at: now, actor: run.approvedBy ?? run.requestedBy, event: 'step.done', stepId: run.stepId, details: { by: 'action', runId: run.id } });
        this.resolveWhenFinished(current, run.approvedBy ?? run.requestedBy, now);
      } else if (!stepDef) {
        this.queuePost(run.incidentId, renderNotice(`:white_check_mark: ${result.summary}`));
      }
      this.queueRefresh(incident.id);
    });
    this.afterCommit();
  }

  /** Ticks the runbook step that a finished follow-up stands for, such as "Remove the old key". */
  private completeFollowUpStep(incident: incidents.IncidentRow, run: runsStore.ActionRunRow, now: number): void {
    const { db } = this.deps;
    const timer = timers.getTimer(db, Number(run.stepId.replace('follow-up-', '')));
    const stepId = FOLLOW_UPS[String(timer?.payload.followUp)]?.completesStep;
    if (!stepId || incident.status !== 'open') return;
    if (incidents.getStep(db, incident.id, stepId)?.status !== 'pending') return;
    const actor = run.approvedBy ?? run.requestedBy;
    incidents.setStepStatus(db, incident.id, stepId, { status: 'done', by: actor, at: now });
    appendAudit(db, { incidentId: incident.id, at: now, actor, event: 'step.done', stepId, details: { by: 'follow-up', runId: run.id } });
    this.resolveWhenFinished(incident, actor, now);
  }

  private finishRunFailed(run: runsStore.ActionRunRow, message: string, details: Record<string, unknown>): void {
    const { db } = this.deps;
    const now = this.now;
    const fingerprints = (details.fingerprints as Record<string, string> | undefined) ?? {};
    const facts = Object.entries(fingerprints).map(([name, print]) => [`${name} written`, `fingerprint ${print}`]);
    inTransaction(db, () => {
      if (!runsStore.finishRun(db, run.id, { status: 'failed', at: now, error: message, result: { facts } })) return;
      appendAudit(db, { incidentId: run.incidentId, at: now, actor: run.approvedBy ?? run.requestedBy, event: 'action.failed', stepId: run.stepId, details: { action: run.action, runId: run.id, error: message, fingerprints } });
      if (run.stepId.startsWith('follow-up-')) this.queuePost(run.incidentId, renderNotice(`:x: Follow-up failed: ${message}`));
      this.queueRefresh(run.incidentId);
    });
    this.afterCommit();
  }

  /** Marks runs that a dead process left running as interrupted; called at start-up. */
  recoverInterruptedRuns(): number {
    const { db } = this.deps;
    const now = this.now;
    const interrupted = inTransaction(db, () => {
      const rows = runsStore.interruptRunningRuns(db, now);
      for (const run of rows) {
        appendAudit(db, { incidentId: run.incidentId, at: now, actor: BOT_ACTOR, event: 'action.interrupted', stepId: run.stepId, details: { action: run.action, runId: run.id } });
        this.queueRefresh(run.incidentId);
      }
      return rows;
    });
    for (const run of interrupted) this.deps.logger.warn({ incidentId: run.incidentId, runId: run.id, actionId: run.action }, 'action run interrupted by a restart');
    if (interrupted.length > 0) this.afterCommit();
    return interrupted.length;
  }

  // --- timers ------------------------------------------------------------------------------

  /** Fires a due timer once; a second call for the same timer does nothing. */
  fireTimer(timerId: number): boolean {
    const { db, logger } = this.deps;
    const now = this.now;
    const fired = inTransaction(db, () => {
      const timer = timers.getTimer(db, timerId);
      if (!timer || timer.status !== 'pending' || timer.dueAt > now) return undefined;
      const lateMs = Math.max(0, now - timer.dueAt);
      if (!timers.claimTimer(db, timerId, now, lateMs)) return undefined;
      // Only lateness from downtime is worth telling people about; a clock
      // moved forward in the sandbox is not the bot being down.
      const downtimeLateMs = timer.dueAt < this.startedAt ? lateMs : 0;
      const effect = timer.incidentId !== null ? this.applyTimer(timer, downtimeLateMs) : 'no incident';
      appendAudit(db, { incidentId: timer.incidentId, at: now, actor: BOT_ACTOR, event: 'timer.fired', stepId: timer.stepId, details: { timerId, kind: timer.kind, dueAt: timer.dueAt, lateMs, late: lateMs >= LATE_THRESHOLD_MS, effect } });
      return { timer, lateMs, effect };
    });
    if (!fired) return false;
    logger.info({ timerId, incidentId: fired.timer.incidentId, stepId: fired.timer.stepId, kind: fired.timer.kind, lateMs: fired.lateMs, effect: fired.effect }, 'timer fired');
    this.afterCommit();
    return true;
  }

  private applyTimer(timer: timers.TimerRow, lateMs: number): string {
    const { db } = this.deps;
    const incident = incidents.getIncident(db, timer.incidentId!);
    if (!incident) return 'incident missing';
    const view = this.view(incident.id);
    if (timer.kind === 'follow_up') return this.offerFollowUp(view, timer, lateMs);
    if (incident.status !== 'open') return 'incident closed';
    const step = view.steps.find((candidate) => candidate.def.id === timer.stepId);
    if (!step) return 'step not in runbook';
    if (step.row.status !== 'pending') return `step ${step.row.status}`;
    switch (timer.kind) {
      case 'reminder':
        // A reminder that comes after its deadline would only echo the escalation.
        if (step.row.dueAt !== null && step.row.dueAt <= this.now) return 'reminder skipped: deadline passed';
        this.queuePost(incident.id, renderReminder(view, step, lateMs));
        return 'reminded';
      case 'deadline':
        incidents.markDeadlineMissed(db, incident.id, step.def.id);
        this.queuePost(incident.id, renderEscalation(view, step, lateMs), { broadcast: true });
        if (this.deps.paging.enabled) this.queuePage(incident.id, 'trigger', 'critical', 'deadline_missed');
        this.queueRefresh(incident.id);
        return 'escalated';
      case 'watch_checkin': {
        this.queuePost(incident.id, renderWatchCheckin(view, step, Number(timer.payload.elapsedMs), lateMs));
        const interval = step.def.watch?.checkin ?? 0;
        this.postCommit.push(() => this.postWatchFindings(incident.id, timer.dueAt - interval, this.now));
        return 'checked in';
      }
      case 'watch_end':
        this.queuePost(incident.id, renderWatchEnd(view, step, lateMs));
        return 'watch ended';
      default:
        return `unknown timer kind ${timer.kind}`;
    }
  }

  private offerFollowUp(view: IncidentView, timer: timers.TimerRow, lateMs: number): string {
    const offer = FOLLOW_UPS[String(timer.payload.followUp)];
    if (!offer) return `unknown follow-up ${String(timer.payload.followUp)}`;
    if (offer.automatic) {
      this.postCommit.push(() => this.runAutomaticFollowUp(view.incident.id, timer, offer.action));
      return 'follow-up started';
    }
    this.queuePost(view.incident.id, offer.render(view, timer.id, lateMs));
    return 'follow-up offered';
  }

  /** Runs the watch query after the commit and posts what it found; a failure is posted and logged. */
  private postWatchFindings(incidentId: number, since: number, until: number): void {
    const finder = this.deps.watchFindings;
    if (!finder) return;
    const task = finder(incidentId, since, until)
      .catch((error: unknown) => {
        this.deps.logger.warn({ incidentId, err: error }, 'watch query failed');
        return `:warning: The Sentry query for this check-in failed: ${escapeText(scrubText(error instanceof Error ? error.message : String(error)))}. Look at Sentry by hand.`;
      })
      .then((findings) => {
        if (!findings) return;
        inTransaction(this.deps.db, () => this.queuePost(incidentId, renderNotice(findings)));
        this.deps.onOutbox();
      })
      .finally(() => this.inFlight.delete(task));
    this.inFlight.add(task);
  }

  // --- reading -----------------------------------------------------------------------------

  /**
   * Queues a refresh of each open incident message whose countdown text
   * changed. Called once a minute, so the countdown costs at most one update
   * a minute per incident.
   */
  // NOTE: chat.update is Slack's Tier 3 (about 50 calls a minute). With more
  // than about 50 incidents in their last hour, the refreshes queue up behind
  // 429s in the outbox and land late.
  refreshCountdowns(): number {
    const { db } = this.deps;
    let refreshed = 0;
    for (const incident of incidents.listOpenIncidents(db)) {
      const label = countdownLabel(this.view(incident.id)) ?? null;
      if (label === incident.countdownLabel) continue;
      inTransaction(db, () => {
        incidents.setCountdownLabel(db, incident.id, label);
        this.queueRefresh(incident.id);
      });
      refreshed++;
    }
    if (refreshed > 0) this.deps.onOutbox();
    return refreshed;
  }

  findIncident(incidentId: number): incidents.IncidentRow | undefined {
    return incidents.getIncident(this.deps.db, incidentId);
  }

  listOpen(): incidents.IncidentRow[] {
    return incidents.listOpenIncidents(this.deps.db);
  }

  view(incidentId: number): IncidentView {
    const { db } = this.deps;
    const incident = this.requireIncident(incidentId);
    const runbook = this.runbookOf(incident);
    const rows = new Map(incidents.listSteps(db, incidentId).map((row) => [row.stepId, row]));
    const steps: StepView[] = [];
    for (const def of runbook.steps) {
      const row = rows.get(def.id);
      if (!row) continue;
      steps.push({
        number: steps.length + 1,
        def,
        row,
        run: def.action ? runsStore.latestRun(db, incidentId, def.id) : undefined,
        missingConfig: def.action ? this.deps.actions.missingConfig(def.action.id) : [],
      });
    }
    return { incident, runbook, steps, now: this.now, paging: this.pagingView(incident, runbook) };
  }

  private pagingView(incident: incidents.IncidentRow, runbook: Runbook): PagingView {
    if (!runbook.pages) return { enabled: this.deps.paging.enabled };
    if (!this.deps.paging.enabled) return { disabledReason: this.deps.paging.disabledReason ?? 'PagerDuty is not configured' };
    const pages = listOutbox(this.deps.db, incident.id, 'pagerduty');
    const latest = pages.at(-1);
    if (!latest) return { enabled: true };
    if (latest.status === 'delivered') return { enabled: true, state: 'accepted' };
    if (latest.status === 'failed') return { enabled: true, state: 'rejected', detail: latest.lastError ?? undefined };
    return latest.attempts > 0 ? { enabled: true, state: 'retrying', detail: latest.lastError ?? undefined } : { enabled: true, state: 'queued' };
  }

  runbookOf(incident: incidents.IncidentRow): Runbook {
    const runbook = this.deps.runbooks.find(incident.runbookId);
    if (!runbook) throw new UserError('unknown_runbook', `Incident #${incident.id} uses runbook "${incident.runbookId}", which is no longer loaded. Restore its file in RUNBOOKS_DIR.`);
    return runbook;
  }

  // --- transaction helpers -------------------------------------------------------------

  private change(
    incidentId: number,
    actor: Actor,
    options: { requireResponder: boolean; event: string },
    apply: (incident: incidents.IncidentRow) => void,
    details: (incident: incidents.IncidentRow) => Record<string, unknown> = () => ({}),
  ): void {
    const { db } = this.deps;
    const now = this.now;
    try {
      inTransaction(db, () => {
        const incident = this.requireIncident(incidentId);
        this.requireOpen(incident);
        if (options.requireResponder) this.requireMarkPermission(incident, actor, options.event, undefined, now);
        // The audit entry comes first, so a timeline rendered by `apply` (on close) includes it.
        appendAudit(db, { incidentId, at: now, actor: actor.userId, event: options.event, details: details(incident) });
        apply(incident);
        this.queueRefresh(incidentId);
      });
    } finally {
      this.afterCommit();
    }
  }

  private changeStep(
    incidentId: number,
    stepId: string,
    actor: Actor,
    event: string,
    apply: (incident: incidents.IncidentRow, step: incidents.StepRow) => void,
    details: Record<string, unknown> = {},
  ): void {
    const { db } = this.deps;
    const now = this.now;
    try {
      inTransaction(db, () => {
        const incident = this.requireIncident(incidentId);
        this.requireOpen(incident);
        const step = incidents.getStep(db, incidentId, stepId);
        if (!step) throw new UserError('step_not_found', `Incident #${incidentId} has no step "${stepId}"; the button is out of date. Use the latest checklist message.`);
        if (!event.startsWith('action.')) this.requireMarkPermission(incident, actor, event, stepId, now);
        // The audit entry comes first, so a timeline rendered by `apply` (on close) includes it.
        appendAudit(db, { incidentId, at: now, actor: actor.userId, event, stepId, details });
        apply(incident, step);
        this.queueRefresh(incidentId);
      });
    } finally {
      this.afterCommit();
    }
  }

  private requireIncident(incidentId: number): incidents.IncidentRow {
    const incident = incidents.getIncident(this.deps.db, incidentId);
    if (!incident) throw new UserError('incident_not_found', `This bot has no incident #${incidentId}; the message may come from another installation. Type /incident list to see open incidents.`);
    return incident;
  }

  private requireOpen(incident: incidents.IncidentRow): void {
    if (incident.status !== 'open') {
      throw new UserError('incident_closed', `Incident #${incident.id} is ${incident.status}, so its steps can no longer change. Declare a new incident if the work goes on.`);
    }
  }

  private requireStatus(incident: incidents.IncidentRow, step: incidents.StepRow, status: incidents.StepStatus, verb: string): void {
    if (step.status === status) return;
    const title = this.stepDef(incident, step.stepId).title;
    const by = step.doneBy ? ` by ${step.doneBy === BOT_ACTOR ? 'the bot' : mentionUser(step.doneBy)}` : '';
    throw new UserError('invalid_transition', `Step "${title}" is already ${step.status}${by}, so you cannot ${verb}. Press Undo first if it needs another go.`);
  }

  /** Rejects a step's action until the steps it requires are done, such as a safety backup before a restore. */
  private requirePrerequisites(incident: incidents.IncidentRow, def: RunbookStep): void {
    const runbook = this.runbookOf(incident);
    const pending = def.requires.filter((required) => {
      if (incidents.getStep(this.deps.db, incident.id, required)?.status !== 'done') return true;
      // A step with an action counts only when its action succeeded: ticking
      // "Take a safety backup" by hand must not unlock the restore.
      const action = runbook.steps.find((step) => step.id === required)?.action;
      return action !== undefined && runsStore.findActiveRun(this.deps.db, incident.id, required, action.id)?.status !== 'succeeded';
    });
    if (pending.length === 0) return;
    const titles = pending.map((required) => `"${this.stepDef(incident, required).title}"`).join(', ');
    throw new UserError('invalid_transition', `Finish ${titles} first: "${def.title}" may only run after ${pending.length === 1 ? 'it is' : 'they are'} done, with ${pending.length === 1 ? 'its action' : 'their actions'} succeeded.`);
  }

  /** Marking steps on a critical incident needs a responder, when RESPONDERS is set. Refusals are audited. */
  private requireMarkPermission(incident: incidents.IncidentRow, actor: Actor, event: string, stepId: string | undefined, now: number): void {
    const { policy } = this.deps;
    if (!policy.respondersConfigured || actor.isResponder || incident.severity !== 'critical') return;
    this.refuse(incident.id, actor, event, stepId, now, `Only responders may change incident #${incident.id} because it is critical. Ask a responder, or ask an admin to add you to RESPONDERS.`);
  }

  private requireActionPermission(incident: incidents.IncidentRow, actor: Actor, actionId: string, stepId: string): void {
    this.requireActionPermissionOrAudit(incident, actor, actionId, stepId, this.now);
  }

  private requireActionPermissionOrAudit(incident: incidents.IncidentRow, actor: Actor, actionId: string, stepId: string, now: number): void {
    // The bot runs the actions of its own schedules (backups, audits).
    if (actor.userId === BOT_ACTOR) return;
    if (!this.deps.policy.respondersConfigured) {
      this.refuse(incident.id, actor, `action.${actionId}`, stepId, now, 'Actions are off because RESPONDERS is not set. Set RESPONDERS to the Slack user and user group ids who may run actions, then restart the bot.');
    }
    if (!actor.isResponder) this.refuse(incident.id, actor, `action.${actionId}`, stepId, now, 'Only responders can run actions. Ask a responder to press the button, or ask an admin to add you to RESPONDERS.');
  }

  /**
   * Records a refusal in its own transaction (it must survive the rollback of
   * the change it refuses), then throws the refusal to the user.
   */
  private refuse(incidentId: number, actor: Actor, event: string, stepId: string | undefined, now: number, message: string): never {
    this.pendingRefusals.push({ incidentId, at: now, actor: actor.userId, event: 'permission.refused', stepId, details: { attempted: event } });
    this.deps.logger.info({ incidentId, userId: actor.userId, stepId, attempted: event }, 'permission denied');
    throw new UserError('not_permitted', message);
  }

  private readonly pendingRefusals: Array<Parameters<typeof appendAudit>[1]> = [];
  private readonly postCommit: Array<() => void> = [];

  private stepDef(incident: incidents.IncidentRow, stepId: string): RunbookStep {
    const def = this.runbookOf(incident).steps.find((step) => step.id === stepId);
    if (!def) throw new UserError('step_not_found', `Runbook ${incident.runbookId} has no step "${stepId}".`);
    return def;
  }

  private actionIdOf(incidentId: number, stepId: string): string | undefined {
    const incident = incidents.getIncident(this.deps.db, incidentId);
    return incident ? this.deps.runbooks.find(incident.runbookId)?.steps.find((step) => step.id === stepId)?.action?.id : undefined;
  }

  // --- outbox ------------------------------------------------------------------------------

  queueRefresh(incidentId: number): void {
    const now = this.now;
    enqueue(this.deps.db, { incidentId, target: 'slack', kind: 'refresh_incident', mergeKey: `incident:${incidentId}:message` }, now);
    enqueue(this.deps.db, { incidentId, target: 'slack', kind: 'refresh_checklist', mergeKey: `incident:${incidentId}:checklist` }, now);
  }

  /**
   * Records a received alert and queues its message for a channel, in one
   * transaction. The message is not part of any incident.
   */
  recordAlert(event: Parameters<typeof recordWebhookEvent>[1], channel: string | undefined, message: SlackMessage | undefined): { id: number; replay: boolean } {
    const { db } = this.deps;
    let replay = false;
    const id = inTransaction(db, () => {
      const earlier = event.requestId ? findWebhookEvent(db, event.source, event.requestId) : undefined;
      if (earlier !== undefined) {
        replay = true;
        return earlier;
      }
      const eventId = recordWebhookEvent(db, event);
      if (channel && message) enqueue(db, { incidentId: null, target: 'slack', kind: 'channel_post', payload: { channel, message } }, this.now);
      appendAudit(db, { incidentId: null, at: this.now, actor: event.source, event: 'webhook.received', details: { eventId, resource: event.resource, alert: event.alert, runbook: event.matchedRunbook } });
      return eventId;
    });
    this.deps.onOutbox();
    return { id, replay };
  }

  /** Posts a message to a channel outside any incident (schedules, digests), with an audit entry. */
  postToChannel(channel: string, message: SlackMessage, event: string, details: Record<string, unknown> = {}): void {
    const { db } = this.deps;
    inTransaction(db, () => {
      enqueue(db, { incidentId: null, target: 'slack', kind: 'channel_post', payload: { channel, message } }, this.now);
      appendAudit(db, { incidentId: null, at: this.now, actor: BOT_ACTOR, event, details });
    });
    this.deps.onOutbox();
  }

  /**
   * Pages outside any incident (a failed backup), under its own dedup key,
   * or resolves such a page with `action: 'resolve'`. When `channel` is set,
   * delivery problems are posted there, naming `subject`.
   */
  pageOps(page: { dedupKey: string; summary: string; severity: 'critical' | 'error' | 'warning' | 'info'; channel?: string; subject?: string; action?: 'trigger' | 'resolve' }): void {
    if (!this.deps.paging.enabled) return;
    inTransaction(this.deps.db, () => {
      enqueue(this.deps.db, { incidentId: null, target: 'pagerduty', kind: 'pagerduty_ops', payload: page }, this.now);
    });
    this.deps.onOutbox();
  }


  /** Records a rotation that was done outside the bot, so reminders count from it. */
  recordOutsideRotation(secretName: string, actor: Actor): void {
    if (!ROTATED_SECRETS.includes(secretName)) {
      throw new UserError('invalid_input', `"${secretName}" is not a secret the bot tracks; use one of ${ROTATED_SECRETS.join(', ')}.`);
    }
    if (this.deps.policy.respondersConfigured && !actor.isResponder) {
      throw new UserError('not_permitted', 'Only responders may record a rotation. Ask a responder, or ask an admin to add you to RESPONDERS.');
    }
    const { db } = this.deps;
    inTransaction(db, () => {
      recordRotation(db, { secretName, rotatedAt: this.now, source: 'outside', actor: actor.userId });
      appendAudit(db, { incidentId: null, at: this.now, actor: actor.userId, event: 'rotation.recorded_outside', details: { secretName } });
    });
  }

  recentBackups(limit = 10): BackupRow[] {
    return recentBackups(this.deps.db, limit, 'database');
  }

  getBackup(id: number): BackupRow | undefined {
    return getBackup(this.deps.db, id);
  }

  /** Queues a thread message; `broadcast` also shows it in the channel (escalations). */
  queuePost(incidentId: number, message: SlackMessage, options: { broadcast?: boolean } = {}): void {
    enqueue(this.deps.db, { incidentId, target: 'slack', kind: 'thread_post', payload: { message, broadcast: Boolean(options.broadcast) } }, this.now);
  }

  private queuePage(incidentId: number, action: 'trigger' | 'resolve', severity: string, reason: string, actor?: string): void {
    enqueue(this.deps.db, { incidentId, target: 'pagerduty', kind: 'pagerduty_event', payload: { action, severity, reason, actor } }, this.now);
  }

  private afterCommit(): void {
    const { db } = this.deps;
    if (this.pendingRefusals.length > 0) {
      const refusals = this.pendingRefusals.splice(0);
      inTransaction(db, () => {
        for (const refusal of refusals) appendAudit(db, refusal);
      });
    }
    this.deps.onOutbox();
    this.deps.onTimers();
    for (const task of this.postCommit.splice(0)) task();
  }
}

function describeExistingRun(run: runsStore.ActionRunRow): UserError {
  const who = mentionUser(run.approvedBy ?? run.requestedBy);
  switch (run.status) {
    case 'requested':
      return new UserError('action_already_run', `Run ${run.id} of this action was requested by ${mentionUser(run.requestedBy)} and waits for a second responder to approve it.`);
    case 'running':
      return new UserError('action_already_run', `Run ${run.id} of this action is already running, started by ${who}. Wait for its result in the thread.`);
    case 'succeeded':
      return new UserError('action_already_run', `Run ${run.id} of this action already succeeded (by ${who}); it does not run twice.`);
    default:
      return new UserError('action_already_run', `Run ${run.id} of this action ${run.status}.`);
  }
}

/** Offers made by follow-up timers that actions arm, by follow-up kind. */
export interface FollowUpOffer {
  /** The registered action that carries out the follow-up. */
  action: string;
  /** The runbook step this follow-up finishes, when the runbook has one (remove-fallback). */
  completesStep?: string;
  /** Runs by itself when due, instead of asking in the thread. */
  automatic?: boolean;
  render: (view: IncidentView, timerId: number, lateMs: number) => SlackMessage;
}

const FOLLOW_UPS: Record<string, FollowUpOffer> = {};

export function registerFollowUp(kind: string, offer: FollowUpOffer): void {
  FOLLOW_UPS[kind] = offer;
}

