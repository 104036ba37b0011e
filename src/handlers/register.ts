import type { App } from '@slack/bolt';

type ActionHandler = ReturnType<typeof stepButtons>['done'];
type ViewHandler = ReturnType<typeof viewSubmissions>['skip'];

import { ACTION_IDS } from '../runbooks/render.ts';
import { incidentButtons, stepButtons } from './buttons.ts';
import type { HandlerDeps } from './deps.ts';
import { incidentCommand } from './incident-command.ts';
import { VIEW_IDS } from './modals.ts';
import { messageView, viewSubmissions } from './view-submissions.ts';

/**
 * The whole Slack surface of the bot: every command, button and modal it
 * handles. The HTTP routes beside it are GET /healthz, POST /webhooks/sentry
 * and, when the clock may move, POST /admin/clock (src/bot/app.ts).
 */
export function registerHandlers(app: App, deps: HandlerDeps): void {
  app.command('/incident', incidentCommand(deps));

  // One listener per kind, dispatched by id here. Bolt runs the middleware of
  // every registered listener for each request, slash commands included.
  const steps = stepButtons(deps);
  const incident = incidentButtons(deps);
  const buttons = new Map<string, ActionHandler>([
    [ACTION_IDS.stepDone, steps.done],
    [ACTION_IDS.stepUndo, steps.undo],
    [ACTION_IDS.stepSkip, steps.skip],
    [ACTION_IDS.stepAssign, steps.assign],
    [ACTION_IDS.stepRun, steps.run],
    [ACTION_IDS.stepApprove, steps.approve],
    [ACTION_IDS.takeLead, incident.takeLead],
    [ACTION_IDS.pageAgain, incident.pageAgain],
    [ACTION_IDS.cancel, incident.cancel],
    [ACTION_IDS.followUp, incident.followUp],
    [ACTION_IDS.declareAnyway, incident.declareAnyway],
    [ACTION_IDS.startRunbook, incident.startRunbook],
    [ACTION_IDS.chooseBackup, incident.chooseBackup],
    [ACTION_IDS.recordRotation, incident.recordRotation],
  ]);
  app.action(/.*/, async (args) => {
    const actionId = (args.action as { action_id?: string }).action_id ?? '';
    const handler = buttons.get(actionId);
    if (handler) return handler(args as Parameters<ActionHandler>[0]);
    // An action id this version does not know (an old message from an
    // earlier version) is acknowledged, so Slack does not show the click as failed.
    await args.ack();
    args.logger.info(`ignored a click on an action this version does not handle: ${actionId || 'unknown'}`);
    try {
      await args.respond?.({ response_type: 'ephemeral', replace_original: false, text: 'This button comes from another version of runbook-bot and does nothing now. Use the buttons on the current incident message.' });
    } catch (error) {
      args.logger.warn(`posting the note about an unknown button failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  });

  // The bot sets no notify_on_close and declares no shortcuts, so these come
  // only from another version's views or app settings. Acknowledging them at
  // once keeps Slack from showing a failure after 3 s.
  app.view({ type: 'view_closed', callback_id: /.*/ }, async ({ ack }) => {
    await ack();
  });
  app.shortcut(/.*/, async ({ ack, shortcut, logger }) => {
    await ack();
    logger.info(`ignored a shortcut this version does not handle: ${shortcut.callback_id || 'unknown'}`);
  });

  const views = viewSubmissions(deps);
  const submissions = new Map<string, ViewHandler>([
    [VIEW_IDS.skip, views.skip],
    [VIEW_IDS.assign, views.assign],
    [VIEW_IDS.actionInputs, views.actionInputs],
  ]);
  app.view(/.*/, async (args) => {
    const handler = submissions.get(args.view.callback_id);
    if (handler) return handler(args as Parameters<ViewHandler>[0]);
    await args.ack({ response_action: 'update', view: messageView('This form comes from another version of runbook-bot and cannot be used. Close it and start again from the incident thread.') });
    args.logger.info(`rejected a form this version does not handle: ${args.view.callback_id || 'unknown'}`);
  });
}
