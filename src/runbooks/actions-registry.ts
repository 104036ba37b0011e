import type { ActionContext, ActionOutcome } from '../actions/types.ts';

/** One action that runbook steps can run, as the engine sees it. */
export interface ActionDefinition {
  id: string;
  /** Variables that must be set before the action can run; empty when configured. */
  missingConfig(): string[];
  run(context: ActionContext, args: Record<string, string | number | boolean>): Promise<ActionOutcome>;
}

export class ActionRegistry {
  private readonly actions = new Map<string, ActionDefinition>();

  register(definition: ActionDefinition): this {
    this.actions.set(definition.id, definition);
    return this;
  }

  get(id: string): ActionDefinition | undefined {
    return this.actions.get(id);
  }

  /** Missing variables for `id`, or a note that no such action exists in this build. */
  missingConfig(id: string): string[] {
    const definition = this.actions.get(id);
    return definition ? definition.missingConfig() : [`an action named ${id} (this build has none)`];
  }

  ids(): string[] {
    return [...this.actions.keys()];
  }
}
