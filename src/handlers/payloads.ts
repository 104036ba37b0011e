import { z } from 'zod';

import { UserError } from '../bot/errors.ts';

const buttonValueSchema = z.object({
  i: z.number().int().positive(),
  s: z.string().min(1).max(80).optional(),
  t: z.number().int().positive().optional(),
  r: z.number().int().positive().optional(),
});

export type ParsedButton = z.infer<typeof buttonValueSchema>;

/** Parses the value of one of the bot's buttons; a forged or foreign value is a stale_button error. */
export function parseButtonValue(value: unknown): ParsedButton {
  try {
    return buttonValueSchema.parse(JSON.parse(String(value)));
  } catch {
    throw new UserError('stale_button', 'This button does not carry a valid incident reference, so nothing was changed. Use the buttons on the latest incident message.');
  }
}

export function requireStep(button: ParsedButton): { incidentId: number; stepId: string } {
  if (!button.s) throw new UserError('stale_button', 'This button names no step, so nothing was changed. Use the buttons on the latest checklist.');
  return { incidentId: button.i, stepId: button.s };
}

const metadataSchema = z.object({
  incidentId: z.number().int().positive(),
  stepId: z.string().min(1).max(80),
  channelId: z.string().min(1).max(40),
});

export type ModalMetadata = z.infer<typeof metadataSchema>;

export function parseModalMetadata(text: string): ModalMetadata {
  try {
    return metadataSchema.parse(JSON.parse(text));
  } catch {
    throw new UserError('stale_button', 'This form does not belong to a known incident step; close it and press the button on the checklist again.');
  }
}

const declareAnywaySchema = z.object({ runbook: z.string().min(1).max(40), summary: z.string().max(2000) });

export function parseDeclareAnyway(value: unknown): z.infer<typeof declareAnywaySchema> {
  try {
    return declareAnywaySchema.parse(JSON.parse(String(value)));
  } catch {
    throw new UserError('stale_button', 'This button is malformed, so nothing was declared. Type the /incident command again.');
  }
}
