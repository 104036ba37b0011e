import type { App } from '@slack/bolt';

import { ACTION_IDS } from '../runbooks/render.ts';
import { incidentButtons, stepButtons } from './buttons.ts';
import type { HandlerDeps } from './deps.ts';
import { incidentCommand } from './incident-command.ts';
import { VIEW_IDS } from './modals.ts';
import { viewSubmissions } from './view-submissions.ts';

/**
 * The whole Slack surface of the bot: every command, button and modal it
 * handles. The HTTP routes beside it are GET /healthz, POST /webhooks/sentry
 * and, when the clock may move, POST /admin/clock (src/bot/app.ts).
 */
export function registerHandlers(app: App, deps: HandlerDeps): void {
  app.command('/incident', incidentCommand(deps));

  const steps = stepButtons(deps);
  app.action(ACTION_IDS.stepDone, steps.done);
  app.action(ACTION_IDS.stepUndo, steps.undo);
  app.action(ACTION_IDS.stepSkip, steps.skip);
  app.action(ACTION_IDS.stepAssign, steps.assign);
  app.action(ACTION_IDS.stepRun, steps.run);
  app.action(ACTION_IDS.stepApprove, steps.approve);

  const incident = incidentButtons(deps);
  app.action(ACTION_IDS.takeLead, incident.takeLead);
  app.action(ACTION_IDS.pageAgain, incident.pageAgain);
  app.action(ACTION_IDS.cancel, incident.cancel);
  app.action(ACTION_IDS.followUp, incident.followUp);
  app.action(ACTION_IDS.declareAnyway, incident.declareAnyway);
  app.action(ACTION_IDS.startRunbook, incident.startRunbook);
  app.action(ACTION_IDS.chooseBackup, incident.chooseBackup);
  app.action(ACTION_IDS.recordRotation, incident.recordRotation);

  // Any other action id (an old message from an earlier version) is
  // acknowledged, so Slack does not show the click as failed.
  const known = Object.values(ACTION_IDS).map((id) => id.replace(/\./g, '\\.')).join('|');
  app.action(new RegExp(`^(?!(${known})$)`), async ({ ack, body, logger }) => {
    await ack();
    logger.info(`ignored a click on an action this version does not handle: ${(body as { actions?: Array<{ action_id?: string }> }).actions?.[0]?.action_id ?? 'unknown'}`);
  });

  const views = viewSubmissions(deps);
  app.view(VIEW_IDS.skip, views.skip);
  app.view(VIEW_IDS.assign, views.assign);
  app.view(VIEW_IDS.actionInputs, views.actionInputs);
}
