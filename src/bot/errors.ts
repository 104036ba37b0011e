/**
 * Errors that users can cause. Each has a code that handlers branch on and a
 * message written for the person who caused it: what was wrong, the value,
 * and what to do instead.
 */
export type UserErrorCode =
  | 'unknown_runbook'
  | 'invalid_command'
  | 'incident_not_found'
  | 'incident_closed'
  | 'step_not_found'
  | 'invalid_transition'
  | 'not_permitted'
  | 'action_not_configured'
  | 'action_already_run'
  | 'invalid_input'
  | 'stale_button';

export class UserError extends Error {
  constructor(
    readonly code: UserErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/** A failure of an outside system that an action talks to. */
export class ActionError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'ActionError';
  }
}
