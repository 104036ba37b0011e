import type { ActionRunRow } from '../store/action-runs.ts';
import type { IncidentRow, StepRow } from '../store/incidents.ts';
import type { Runbook, RunbookStep } from './schema.ts';

/** Everything the renderer needs about one step, read in one go. */
export interface StepView {
  number: number;
  def: RunbookStep;
  row: StepRow;
  /** The latest run of the step's action, if it ever ran. */
  run?: ActionRunRow;
  /** Variables to set before the step's action can run; empty when configured. */
  missingConfig: string[];
}

export interface IncidentView {
  incident: IncidentRow;
  runbook: Runbook;
  steps: StepView[];
  now: number;
  paging: PagingView;
}

export interface PagingView {
  /** PagerDuty is configured, so Page again can page. */
  enabled?: boolean;
  /** Why paging is off, when it is: the variable to set. */
  disabledReason?: string;
  /** Delivery state of the latest page. */
  state?: 'queued' | 'retrying' | 'accepted' | 'rejected';
  detail?: string;
}

export function progressOf(view: IncidentView): { finished: number; total: number } {
  const finished = view.steps.filter((step) => step.row.status !== 'pending').length;
  return { finished, total: view.steps.length };
}

/** Returns the pending step whose deadline comes first, if any step has one. */
export function nextDeadline(view: IncidentView): StepView | undefined {
  return view.steps
    .filter((step) => step.row.status === 'pending' && step.row.dueAt !== null)
    .sort((a, b) => a.row.dueAt! - b.row.dueAt!)[0];
}
