import type { AllMiddlewareArgs, SlackViewMiddlewareArgs, ViewSubmitAction } from '@slack/bolt';

import { UserError } from '../bot/errors.ts';
import { actorOf } from './buttons.ts';
import type { HandlerDeps } from './deps.ts';
import { INPUT_IDS } from './modals.ts';
import { parseModalMetadata } from './payloads.ts';
import { describeError } from './replies.ts';

type ViewArgs = SlackViewMiddlewareArgs<ViewSubmitAction> & AllMiddlewareArgs;

/**
 * Wraps a modal submission. A UserError about the input keeps the modal open
 * with the message under `errorBlock`; other errors close it and post an
 * ephemeral message in the incident's channel.
 */
function submission(deps: HandlerDeps, name: string, errorBlock: string | undefined, work: (args: ViewArgs) => Promise<void>) {
  return async (args: ViewArgs): Promise<void> => {
    const logger = deps.logger.child({ handler: name, userId: args.body.user.id, viewId: args.view.id });
    try {
      await work(args);
      await args.ack();
    } catch (error) {
      const text = describeError(error, logger, {});
      if (error instanceof UserError && error.code === 'invalid_input' && errorBlock) {
        await args.ack({ response_action: 'errors', errors: { [errorBlock]: text.slice(0, 150) } });
        return;
      }
      if (error instanceof UserError && error.code === 'stale_button') {
        // The form lost its incident, so there is no channel to post to. Show the message in the modal.
        await args.ack({ response_action: 'update', view: messageView(text) });
        return;
      }
      await args.ack();
      await notifyUser(args, text, logger);
    }
  };
}

/** Builds the modal that replaces a submitted form and explains why it was not saved. */
export function messageView(text: string) {
  return {
    type: 'modal' as const,
    title: { type: 'plain_text' as const, text: 'Not saved' },
    close: { type: 'plain_text' as const, text: 'Close' },
    blocks: [{ type: 'section' as const, text: { type: 'mrkdwn' as const, text: text.slice(0, 2900) } }],
  };
}

async function notifyUser(args: ViewArgs, text: string, logger: HandlerDeps['logger']): Promise<void> {
  try {
    const metadata = parseModalMetadata(args.view.private_metadata);
    await args.client.chat.postEphemeral({ channel: metadata.channelId, user: args.body.user.id, text });
  } catch (error) {
    logger.warn({ err: error }, 'could not tell the user why the form failed');
  }
}

function valueOf(args: ViewArgs, block: string, action: string): string {
  const state = args.view.state.values[block]?.[action];
  return String(state?.value ?? state?.selected_user ?? '');
}

export function viewSubmissions(deps: HandlerDeps) {
  return {
    skip: submission(deps, 'view.skip', INPUT_IDS.reason.block, async (args) => {
      const { incidentId, stepId } = parseModalMetadata(args.view.private_metadata);
      const actor = await actorOf(deps, args.body.user.id);
      deps.engine.skipStep(incidentId, stepId, actor, valueOf(args, INPUT_IDS.reason.block, INPUT_IDS.reason.action));
    }),
    assign: submission(deps, 'view.assign', INPUT_IDS.assignee.block, async (args) => {
      const { incidentId, stepId } = parseModalMetadata(args.view.private_metadata);
      const actor = await actorOf(deps, args.body.user.id);
      const assignee = valueOf(args, INPUT_IDS.assignee.block, INPUT_IDS.assignee.action);
      deps.engine.assignStep(incidentId, stepId, actor, assignee, await deps.responders.isResponder(assignee));
    }),
    actionInputs: submission(deps, 'view.action_inputs', undefined, async (args) => {
      const { incidentId, stepId } = parseModalMetadata(args.view.private_metadata);
      const actor = await actorOf(deps, args.body.user.id);
      const inputs: Record<string, string> = {};
      for (const [blockId, actions] of Object.entries(args.view.state.values)) {
        if (!blockId.startsWith('input_')) continue;
        const inputId = blockId.slice('input_'.length);
        inputs[inputId] = String(actions[inputId]?.value ?? '');
      }
      deps.engine.requestAction(incidentId, stepId, actor, inputs);
    }),
  };
}
