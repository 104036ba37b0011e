import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import type { ActionDefinition } from '../runbooks/actions-registry.ts';
import { formatDuration } from '../runbooks/duration.ts';
import { describeCommandResult, parseCommandLine, runCommand } from './command.ts';
import { waitForHealth } from './health.ts';
import { createSecretStore } from './secrets/index.ts';
import { checkAlertRules, createMissingAlertRules } from './sentry-alerts.ts';
import { SentryApiClient, type SuspiciousEventReport } from './sentry-api.ts';
import { deactivateSentryKey, rotateSentryDsn, type RestartResult } from './sentry-dsn.ts';
import { present, type Env } from './env-values.ts';
import type { ActionContext, ActionOutcome } from './types.ts';

const DAY_MS = 86_400_000;

/** Builds the Sentry REST client from SENTRY_API_URL, SENTRY_AUTH_TOKEN, SENTRY_ORG and SENTRY_PROJECT, or lists what to set. */
export function sentryClientFromEnv(env: Env, logger: Logger): { client?: SentryApiClient; missing: string[] } {
  const names = ['SENTRY_API_URL', 'SENTRY_AUTH_TOKEN', 'SENTRY_ORG', 'SENTRY_PROJECT'] as const;
  const missing = names.filter((name) => !present(env[name]));
  if (missing.length > 0) return { missing };
  return {
    client: new SentryApiClient({
      baseUrl: present(env.SENTRY_API_URL)!,
      token: present(env.SENTRY_AUTH_TOKEN)!,
      org: present(env.SENTRY_ORG)!,
      project: present(env.SENTRY_PROJECT)!,
      timeoutMs: 15_000,
      logger,
    }),
    missing: [],
  };
}

/** Returns how far before the declaration the forged-session search starts (SENTRY_LOOKBACK_DAYS, default 7 days). */
export function lookbackMs(env: Env): number {
  const days = Number(present(env.SENTRY_LOOKBACK_DAYS) ?? 7);
  return (Number.isFinite(days) && days > 0 ? days : 7) * DAY_MS;
}

/** Restarts the app with DJANGO_RESTART_COMMAND and waits for DJANGO_HEALTH_URL. */
function appRestarter(env: Env, logger: Logger): { restart?: () => Promise<RestartResult>; missing: string[] } {
  const command = present(env.DJANGO_RESTART_COMMAND);
  const healthUrl = present(env.DJANGO_HEALTH_URL);
  const missing = [...(command ? [] : ['DJANGO_RESTART_COMMAND']), ...(healthUrl ? [] : ['DJANGO_HEALTH_URL'])];
  if (missing.length > 0) return { missing };
  let argv: string[];
  try {
    argv = parseCommandLine(command!);
  } catch (error) {
    return { missing: [`DJANGO_RESTART_COMMAND (${(error as Error).message})`] };
  }
  return {
    missing: [],
    restart: async () => {
      const result = await runCommand(argv, { timeoutMs: 120_000, logger });
      if (result.exitCode !== 0) return { ok: false, detail: `restart ${describeCommandResult(result, 120_000)}` };
      const health = await waitForHealth(healthUrl!, { timeoutMs: 60_000 });
      return health.ok
        ? { ok: true, detail: `restart passed; health check ${health.status} after ${formatDuration(health.durationMs)}` }
        : { ok: false, detail: `health check failed: ${health.error ?? `status ${health.status}`}` };
    },
  };
}

/** Describes each signal in one line, with counts and links, for the audit step and the watch check-ins. */
export function describeSuspiciousEvents(report: SuspiciousEventReport): { summary: string; facts: Array<[string, string]> } {
  const facts: Array<[string, string]> = report.signals.map((signal) => {
    const links = signal.permalinks.slice(0, 3).join(' ');
    let burst = '';
    if (signal.burst?.detected) burst = `, burst of ${signal.burst.maxInWindow} in ${signal.burst.windowMinutes} min`;
    else if (signal.burst) burst = ', no burst';
    return [signal.title, `${signal.count}${signal.truncated ? '+' : ''} events${burst}${links ? ` ${links}` : ''}`];
  });
  const flagged = report.signals.filter((signal) => (signal.burst ? signal.burst.detected : signal.count > 0));
  const summary = flagged.length === 0
    ? `No sign of forged sessions or tokens in Sentry from ${report.since} to ${report.until}`
    : `${flagged.length} suspicious signal${flagged.length === 1 ? '' : 's'} in Sentry from ${report.since} to ${report.until}: ${flagged.map((signal) => signal.title).join(', ')}`;
  return { summary, facts };
}

export function sentryActions(env: Env, logger: Logger): ActionDefinition[] {
  const sentry = sentryClientFromEnv(env, logger);
  const restarter = appRestarter(env, logger);
  let storeSetup: ReturnType<typeof createSecretStore> | { missing: string[] };
  try {
    storeSetup = createSecretStore(env, logger);
  } catch (error) {
    storeSetup = { missing: [`SECRET_STORE (${(error as Error).message})`] };
  }
  const storeMissing = 'missing' in storeSetup ? storeSetup.missing : [];
  const rotationMissing = [...sentry.missing, ...storeMissing, ...restarter.missing];
  const requireClient = () => {
    if (!sentry.client) throw new ActionError('not_configured', `not configured: set ${sentry.missing.join(', ')}`);
    return sentry.client;
  };
  const rotationDeps = () => {
    if (rotationMissing.length > 0 || !('store' in storeSetup)) throw new ActionError('not_configured', `not configured: set ${rotationMissing.join(', ')}`);
    return { sentry: requireClient(), store: storeSetup.store, restart: restarter.restart! };
  };
  const alertAction = present(env.SENTRY_ALERT_ACTION_JSON);

  return [
    {
      id: 'sentry.rotate_dsn',
      missingConfig: () => rotationMissing,
      run: (context: ActionContext) => rotateSentryDsn(rotationDeps(), context),
    },
    {
      id: 'sentry.deactivate_key',
      missingConfig: () => rotationMissing,
      run: (context: ActionContext, args) => deactivateSentryKey(rotationDeps(), context, String(args.dsnFingerprint ?? '')),
    },
    {
      id: 'sentry.find_forgery',
      missingConfig: () => sentry.missing,
      run: async (context: ActionContext): Promise<ActionOutcome> => {
        const report = await requireClient().findSuspiciousEvents({ since: context.declaredAt - lookbackMs(env), until: context.clock.now() });
        return describeSuspiciousEvents(report);
      },
    },
    {
      id: 'sentry.ensure_alert_rules',
      missingConfig: () => [...sentry.missing, ...(alertAction ? [] : ['SENTRY_ALERT_ACTION_JSON'])],
      run: async (): Promise<ActionOutcome> => {
        const client = requireClient();
        let issueAction: Record<string, unknown>;
        try {
          issueAction = JSON.parse(alertAction!) as Record<string, unknown>;
        } catch {
          throw new ActionError('invalid_input', 'SENTRY_ALERT_ACTION_JSON is not valid JSON; set it to the issue rule action that sends webhooks to the bot');
        }
        const before = await checkAlertRules(client);
        const { created } = await createMissingAlertRules(client, { issueActions: [issueAction], metricActions: [] });
        return {
          summary: created.length === 0 ? 'All four alert rules exist in Sentry' : `Created ${created.length} missing alert rule${created.length === 1 ? '' : 's'} in Sentry`,
          facts: [
            ['Present', before.present.map((entry) => entry.alert.title).join(', ') || 'none'],
            ['Created', created.map((rule) => rule.name).join(', ') || 'none'],
          ],
        };
      },
    },
  ];
}
