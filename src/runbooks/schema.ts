import { z } from 'zod';

import { parseDuration } from './duration.ts';

/** A duration written as `15m`, `48h` or `7d`, parsed to milliseconds. */
const duration = z.string().transform((text, context) => {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    context.addIssue({
      code: 'custom',
      message: `invalid duration "${text}"; write a number and a unit, such as 90s, 15m, 48h or 7d`,
    });
    return z.NEVER;
  }
  return ms;
});

const identifier = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,39}$/, 'must be lower-case letters, digits and dashes, starting with a letter, at most 40 characters');

export const SEVERITIES = ['critical', 'high', 'medium', 'low'] as const;
export type Severity = (typeof SEVERITIES)[number];

const inputSchema = z.strictObject({
  id: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'must be lower-case letters, digits and underscores'),
  label: z.string().min(1).max(150),
  hint: z.string().max(150).optional(),
  multiline: z.boolean().default(false),
  optional: z.boolean().default(false),
});

const actionSchema = z.strictObject({
  /** The registered action to run, for example `django.rotate_secret_key`. */
  id: z.string().regex(/^[a-z][a-z0-9_.]{0,79}$/, 'must name a registered action such as django.rotate_secret_key'),
  label: z.string().min(1).max(75),
  /** Text of the confirm dialog: what will happen. */
  confirm: z.string().min(1).max(300),
  /** Changes production: needs a responder, and a second approver when that is required. */
  destructive: z.boolean().default(true),
  inputs: z.array(inputSchema).max(10).default([]),
  /** Extra arguments for the action, such as which secret to rotate. */
  with: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
});

const watchSchema = z.strictObject({
  duration,
  checkin: duration.optional(),
});

const stepSchema = z
  .strictObject({
    id: identifier,
    title: z.string().min(1).max(200),
    description: z.string().max(2000).optional(),
    deadline: duration.optional(),
    reminders: z.array(duration).max(5).default([]),
    watch: watchSchema.optional(),
    action: actionSchema.optional(),
    /** Set by the engine when an outside event completes the step (a page accepted). */
    completes_on: z.enum(['page_accepted']).optional(),
    /** Starts the step's action when the incident opens, as the declarer (a responder or the bot). */
    runs_on_start: z.boolean().default(false),
    /** Steps that must be done before this step's action may run. */
    requires: z.array(identifier).max(20).default([]),
  })
  .superRefine((step, context) => {
    for (const [index, reminder] of step.reminders.entries()) {
      if (step.deadline === undefined) {
        context.addIssue({ code: 'custom', path: ['reminders'], message: 'reminders need a deadline on the same step' });
        break;
      }
      if (reminder >= step.deadline) {
        context.addIssue({
          code: 'custom',
          path: ['reminders', index],
          message: 'a reminder must come before the deadline (it is how long before the deadline to remind)',
        });
      }
    }
    if (step.runs_on_start && !step.action) {
      context.addIssue({ code: 'custom', path: ['runs_on_start'], message: 'runs_on_start needs an action on the same step' });
    }
    if (step.watch?.checkin !== undefined && step.watch.checkin >= step.watch.duration) {
      context.addIssue({ code: 'custom', path: ['watch', 'checkin'], message: 'the check-in interval must be shorter than the watch' });
    }
  });

export const runbookSchema = z
  .strictObject({
    id: identifier,
    aliases: z.array(identifier).default([]),
    title: z.string().min(1).max(150),
    description: z.string().max(2000).optional(),
    severity: z.enum(SEVERITIES),
    pages: z.boolean().default(false),
    /** False for runbooks that only the bot opens (a restore starts from the backup picker). */
    declarable: z.boolean().default(true),
    steps: z.array(stepSchema).min(1).max(200),
  })
  .superRefine((runbook, context) => {
    const seen = new Set<string>();
    for (const [index, step] of runbook.steps.entries()) {
      if (seen.has(step.id)) {
        context.addIssue({ code: 'custom', path: ['steps', index, 'id'], message: `duplicate step id "${step.id}"` });
      }
      for (const [position, required] of step.requires.entries()) {
        if (!seen.has(required)) {
          context.addIssue({ code: 'custom', path: ['steps', index, 'requires', position], message: `"${required}" is not an earlier step of this runbook` });
        }
      }
      seen.add(step.id);
    }
  });

export type Runbook = z.infer<typeof runbookSchema>;
export type RunbookStep = Runbook['steps'][number];
export type RunbookAction = NonNullable<RunbookStep['action']>;
