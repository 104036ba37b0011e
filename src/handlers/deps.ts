import type { Config } from '../bot/config.ts';
import type { Logger } from '../bot/logger.ts';
import type { ResponderDirectory } from '../bot/responders.ts';
import type { Engine } from '../runbooks/engine.ts';
import type { RunbookCatalog } from '../runbooks/loader.ts';

/** What every Slack handler may use: the engine decides, handlers only translate. */
export interface HandlerDeps {
  engine: Engine;
  runbooks: RunbookCatalog;
  responders: ResponderDirectory;
  logger: Logger;
  config: Config;
  /** Resolves when Slack's requests pause; work that may wait a moment awaits it after the ack. */
  quiet: () => Promise<void>;
  /** Lists schedules for `/incident schedules`; absent when no scheduler runs. */
  listSchedules?: () => Array<{ name: string; cron: string; nextRun: number | undefined; timezone: string }>;
}
