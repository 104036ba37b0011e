import type { Config } from '../bot/config.ts';
import type { Logger } from '../bot/logger.ts';
import { ActionRegistry } from '../runbooks/actions-registry.ts';

/** Builds the actions that runbook steps can run, each configured from `config`. */
export function buildActions(config: Config, logger: Logger): ActionRegistry {
  void config;
  void logger;
  return new ActionRegistry();
}
