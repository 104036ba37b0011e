import type { AllMiddlewareArgs, BlockAction, ButtonAction, SlackActionMiddlewareArgs } from '@slack/bolt';

import { UserError } from '../bot/errors.ts';
import type { Actor } from '../runbooks/engine.ts';
import type { HandlerDeps } from './deps.ts';
import { actionInputsModal, assignModal, skipModal } from './modals.ts';
import { parseButtonValue, parseDeclareAnyway, requireStep } from './payloads.ts';
import { describeError, replyEphemeral } from './replies.ts';

export type ButtonArgs = SlackActionMiddlewareArgs<BlockAction<ButtonAction>> & AllMiddlewareArgs;

export async function actorOf(deps: HandlerDeps, userId: string): Promise<Actor> {
  return { userId, isResponder: await deps.responders.isResponder(userId) };
}

/**
 * Wraps a button handler; an error becomes an ephemeral reply to the person
 * who clicked and one log line. A click that changes state is committed
 * before Slack gets its acknowledgement, so an acknowledged click is never
 * lost. `ackFirst` is for buttons that open a modal, because a trigger_id
 * expires three seconds after the click.
 */
function button(deps: HandlerDeps, name: string, work: (args: ButtonArgs, actor: Actor) => Promise<string | void>, options: { ackFirst?: boolean } = {}) {
  return async (args: ButtonArgs): Promise<void> => {
    const logger = deps.logger.child({ handler: name, userId: args.body.user.id, channelId: args.body.channel?.id, actionId: args.action.action_id });
    let acked = false;
    const ack = async () => {
      if (acked) return;
      acked = true;
      await args.ack();
    };
    if (options.ackFirst) await ack();
    try {
      requireSameChannel(deps, args);
      const actor = await actorOf(deps, args.body.user.id);
      const reply = await work(args, actor);
      await ack();
      if (reply) await replyEphemeral(args.respond, reply, logger, {});
    } catch (error) {
      await ack();
      await replyEphemeral(args.respond, describeError(error, logger, { value: args.action.value?.slice(0, 200) }), logger, {});
    }
  };
}

/**
 * Rejects a button whose value names an incident of another channel: the
 * bot's own buttons always sit in their incident's channel.
 */
function requireSameChannel(deps: HandlerDeps, args: ButtonArgs): void {
  let incidentId: number | undefined;
  try {
    incidentId = (JSON.parse(String(args.action.value ?? '')) as { i?: unknown }).i as number | undefined;
  } catch {
    return;
  }
  const clickedIn = args.body.channel?.id ?? (args.body.container as { channel_id?: string } | undefined)?.channel_id;
  if (typeof incidentId !== 'number' || !clickedIn) return;
  const incident = deps.engine.findIncident(incidentId);
  if (incident && incident.channelId !== clickedIn) {
    throw new UserError('stale_button', `This button belongs to incident #${incidentId} in another channel, so nothing was changed.`);
  }
}

/** Parses a JSON button value; anything else is a stale or forged button. */
function jsonValue(args: ButtonArgs): Record<string, unknown> {
  try {
    const value = JSON.parse(String(args.action.value ?? '')) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // Fall through to the refusal below.
  }
  throw new UserError('stale_button', 'This button does not carry a valid value, so nothing was changed. Use the latest message.');
}

function channelOf(args: ButtonArgs): string {
  const channel = args.body.channel?.id ?? (args.body.container as { channel_id?: string } | undefined)?.channel_id;
  if (!channel) throw new UserError('stale_button', 'This button was pressed outside a channel, so it cannot change an incident.');
  return channel;
}

export function stepButtons(deps: HandlerDeps) {
  return {
    done: button(deps, 'step.done', async ({ action }, actor) => {
      const { incidentId, stepId } = requireStep(parseButtonValue(action.value));
      deps.engine.completeStep(incidentId, stepId, actor);
    }),
    undo: button(deps, 'step.undo', async ({ action }, actor) => {
      const { incidentId, stepId } = requireStep(parseButtonValue(action.value));
      deps.engine.undoStep(incidentId, stepId, actor);
    }),
    skip: button(deps, 'step.skip', async (args) => {
      const { incidentId, stepId } = requireStep(parseButtonValue(args.action.value));
      const step = stepOf(deps, incidentId, stepId);
      await args.client.views.open({ trigger_id: args.body.trigger_id, view: skipModal({ incidentId, stepId, channelId: channelOf(args) }, step.def.title) });
    }, { ackFirst: true }),
    assign: button(deps, 'step.assign', async (args) => {
      const { incidentId, stepId } = requireStep(parseButtonValue(args.action.value));
      const step = stepOf(deps, incidentId, stepId);
      await args.client.views.open({ trigger_id: args.body.trigger_id, view: assignModal({ incidentId, stepId, channelId: channelOf(args) }, step.def.title) });
    }, { ackFirst: true }),
    run: button(deps, 'step.run', async (args, actor) => {
      const { incidentId, stepId } = requireStep(parseButtonValue(args.action.value));
      const step = stepOf(deps, incidentId, stepId);
      const action = step.def.action;
      if (action && action.inputs.length > 0) {
        // Check permission and state before opening the form, so no one fills it in for nothing.
        deps.engine.checkActionAllowed(incidentId, stepId, actor);
        await args.client.views.open({ trigger_id: args.body.trigger_id, view: actionInputsModal({ incidentId, stepId, channelId: channelOf(args) }, action) });
        return;
      }
      deps.engine.requestAction(incidentId, stepId, actor);
    }),
    approve: button(deps, 'step.approve', async ({ action }, actor) => {
      const value = parseButtonValue(action.value);
      const { incidentId, stepId } = requireStep(value);
      if (!value.r) throw new UserError('stale_button', 'This approval button names no action run; use the latest checklist message.');
      deps.engine.approveAction(incidentId, stepId, value.r, actor);
    }),
  };
}

function stepOf(deps: HandlerDeps, incidentId: number, stepId: string) {
  const view = deps.engine.view(incidentId);
  if (view.incident.status !== 'open') {
    throw new UserError('incident_closed', `Incident #${incidentId} is ${view.incident.status}, so its steps can no longer change.`);
  }
  const step = view.steps.find((candidate) => candidate.def.id === stepId);
  if (!step) throw new UserError('step_not_found', `Incident #${incidentId} has no step "${stepId}"; use the latest checklist message.`);
  return step;
}

export function incidentButtons(deps: HandlerDeps) {
  return {
    takeLead: button(deps, 'incident.take_lead', async ({ action }, actor) => {
      deps.engine.takeLead(parseButtonValue(action.value).i, actor);
    }),
    pageAgain: button(deps, 'incident.page_again', async ({ action }, actor) => {
      deps.engine.pageAgain(parseButtonValue(action.value).i, actor);
      return 'Paging on-call again.';
    }),
    cancel: button(deps, 'incident.cancel', async ({ action }, actor) => {
      deps.engine.cancel(parseButtonValue(action.value).i, actor);
    }),
    followUp: button(deps, 'incident.follow_up', async ({ action }, actor) => {
      const value = parseButtonValue(action.value);
      if (!value.t) throw new UserError('stale_button', 'This follow-up button names no timer; use the latest message in the thread.');
      deps.engine.runFollowUp(value.i, value.t, actor);
    }),
    startRunbook: button(deps, 'runbook.start', async (args, actor) => {
      const request = parseDeclareAnyway(args.action.value);
      const runbook = deps.runbooks.find(request.runbook);
      if (!runbook || !runbook.declarable) throw new UserError('unknown_runbook', `Runbook "${request.runbook}" cannot be started from a button; type /incident help.`);
      const messageTs = (args.body.container as { message_ts?: string } | undefined)?.message_ts ?? args.body.message?.ts;
      const result = deps.engine.declare({ runbook, summary: request.summary, channelId: channelOf(args), userId: actor.userId, origin: 'alert', idempotencyKey: messageTs ? `start:${channelOf(args)}:${messageTs}` : undefined });
      if (result.kind === 'duplicate') return `${runbook.title} already has an open incident here: #${result.open.id}. Work that one.`;
      return `Declared incident #${result.incidentId}: ${runbook.title}.`;
    }),
    chooseBackup: button(deps, 'restore.choose_backup', async (args, actor) => {
      const id = Number(jsonValue(args).backup);
      const backup = Number.isInteger(id) ? deps.engine.getBackup(id) : undefined;
      if (!backup || backup.status !== 'good') throw new UserError('stale_button', 'That backup is no longer available; type /incident restore again.');
      const runbook = deps.runbooks.find('restore');
      if (!runbook) throw new UserError('unknown_runbook', 'The restore runbook is not loaded.');
      const name = backup.path.split('/').pop() ?? backup.path;
      const result = deps.engine.declare({
        runbook,
        summary: `Restore from ${name}`,
        channelId: channelOf(args),
        userId: actor.userId,
        actor,
        metadata: { backupId: backup.id, backupPath: backup.path, sha256: backup.sha256, backupCreatedAt: backup.createdAt },
      });
      if (result.kind === 'duplicate') return `A restore is already open here: incident #${result.open.id}. Finish or cancel it first.`;
      return `Opened restore incident #${result.incidentId} for ${name}.`;
    }),
    recordRotation: button(deps, 'rotation.record_outside', async (args, actor) => {
      const secret = String(jsonValue(args).secret ?? '');
      deps.engine.recordOutsideRotation(secret, actor);
      return `Recorded a rotation of ${secret} done outside the bot. The next reminder comes 90 days from now.`;
    }),
    declareAnyway: button(deps, 'incident.declare_anyway', async (args, actor) => {
      const request = parseDeclareAnyway(args.action.value);
      const runbook = deps.runbooks.find(request.runbook);
      if (!runbook) throw new UserError('unknown_runbook', `Runbook "${request.runbook}" is no longer loaded; type /incident help.`);
      // Two presses of the same button (a double click) open one incident.
      const messageTs = (args.body.container as { message_ts?: string } | undefined)?.message_ts;
      const result = deps.engine.declare({
        runbook,
        summary: request.summary,
        channelId: channelOf(args),
        userId: actor.userId,
        force: true,
        idempotencyKey: messageTs ? `anyway:${actor.userId}:${messageTs}` : undefined,
      });
      if (result.kind === 'declared') {
        await args.respond({ response_type: 'ephemeral', replace_original: true, text: `Declared incident #${result.incidentId}: ${runbook.title}.` });
      }
    }),
  };
}
