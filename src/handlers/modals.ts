import type { ModalView } from '@slack/types';

import { escapeText, truncate } from '../runbooks/mrkdwn.ts';
import type { RunbookAction } from '../runbooks/schema.ts';
import type { ModalMetadata } from './payloads.ts';

export const VIEW_IDS = {
  skip: 'step.skip_reason',
  assign: 'step.assign_person',
  actionInputs: 'step.action_inputs',
} as const;

export const INPUT_IDS = {
  reason: { block: 'reason', action: 'reason' },
  assignee: { block: 'assignee', action: 'assignee' },
} as const;

function title(text: string) {
  return { type: 'plain_text' as const, text: truncate(text, 24) };
}

export function skipModal(metadata: ModalMetadata, stepTitle: string): ModalView {
  return {
    type: 'modal',
    callback_id: VIEW_IDS.skip,
    private_metadata: JSON.stringify(metadata),
    title: title('Skip step'),
    submit: title('Skip'),
    close: title('Cancel'),
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `Skip *${escapeText(truncate(stepTitle, 2900))}*? The reason goes into the incident timeline.` } },
      {
        type: 'input',
        block_id: INPUT_IDS.reason.block,
        label: { type: 'plain_text', text: 'Why is this step skipped?' },
        element: { type: 'plain_text_input', action_id: INPUT_IDS.reason.action, multiline: true, max_length: 500 },
      },
    ],
  };
}

export function assignModal(metadata: ModalMetadata, stepTitle: string): ModalView {
  return {
    type: 'modal',
    callback_id: VIEW_IDS.assign,
    private_metadata: JSON.stringify(metadata),
    title: title('Assign step'),
    submit: title('Assign'),
    close: title('Cancel'),
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `Who takes *${escapeText(truncate(stepTitle, 2900))}*?` } },
      {
        type: 'input',
        block_id: INPUT_IDS.assignee.block,
        label: { type: 'plain_text', text: 'Person' },
        element: { type: 'users_select', action_id: INPUT_IDS.assignee.action },
      },
    ],
  };
}

export function actionInputsModal(metadata: ModalMetadata, action: RunbookAction): ModalView {
  return {
    type: 'modal',
    callback_id: VIEW_IDS.actionInputs,
    private_metadata: JSON.stringify(metadata),
    title: title(action.label),
    submit: title('Run'),
    close: title('Cancel'),
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text: `*${escapeText(action.label)}*\n${escapeText(action.confirm)}` } },
      ...action.inputs.map((input) => ({
        type: 'input' as const,
        block_id: `input_${input.id}`,
        optional: input.optional,
        label: { type: 'plain_text' as const, text: truncate(input.label, 2000) },
        ...(input.hint ? { hint: { type: 'plain_text' as const, text: input.hint } } : {}),
        element: { type: 'plain_text_input' as const, action_id: input.id, multiline: input.multiline, max_length: 3000 },
      })),
    ],
  };
}
