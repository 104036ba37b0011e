import type { Clock } from '../bot/clock.ts';
import type { Logger } from '../bot/logger.ts';

/** The context the engine gives an action when it runs. */
export interface ActionContext {
  incidentId: number;
  /** When the incident was declared, in milliseconds since the epoch. */
  declaredAt: number;
  /** Facts the incident was opened with, such as the backup chosen for a restore. */
  metadata: Record<string, unknown>;
  stepId: string;
  /** Values collected in the step's modal, keyed by input id. */
  inputs: Record<string, string>;
  /** Why the action runs: a declared incident (leak) or a planned rotation. */
  reason: 'incident' | 'periodic';
  clock: Clock;
  logger: Logger;
}

/** A timer that an action has the engine arm, relative to when the action finished. */
export interface FollowUpTimer {
  kind: string;
  delayMs: number;
  payload: Record<string, unknown>;
}

/**
 * The outcome of a successful action. Every string here is shown in Slack and
 * stored in SQLite, so none may contain a secret: use fingerprints.
 */
export interface ActionOutcome {
  /** One line for the step, for example "New key a1b2c3d4 written; restart passed". */
  summary: string;
  /** Facts shown under the summary, in order ("Health check": "200 in 41 ms"). */
  facts: Array<[label: string, value: string]>;
  /** Fingerprints of secrets written, by secret name. */
  fingerprints?: Record<string, string>;
  /** Rotations to record in the rotation history, by secret name. */
  rotated?: string[];
  followUps?: FollowUpTimer[];
  /**
   * False when the action ran but its result needs a person's judgement (an
   * audit check that warned), so the step stays open. Default true.
   */
  completesStep?: boolean;
  /** A restore-test report to store, shown by the next security audit. */
  restoreTest?: { passed: boolean; report: Record<string, unknown> };
}

// A failed action throws ActionError (src/bot/errors.ts). Its message is shown
// in Slack, so it names what failed and what is already done ("new key
// a1b2c3d4 stays written; restart exited 1"); `details.fingerprints` lists
// secrets that were written before the failure.
