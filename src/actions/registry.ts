import type { Config } from '../bot/config.ts';
import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { registerSecret } from '../bot/redact.ts';
import { ActionRegistry, type ActionDefinition } from '../runbooks/actions-registry.ts';
import { parseCommandLine } from './command.ts';
import { invalidateSessions, lockAccounts, parseIdentifiers, removeFallback, rotateSecretKey, type RotationDeps } from './django.ts';
import { createSecretStore, EnvFileStore, type SecretStore } from './secrets/index.ts';
import { opsActions, type OpsServices } from './ops-registry.ts';
import { sentryActions } from './sentry-registry.ts';
import { present, type Env } from './env-values.ts';
import type { ActionContext } from './types.ts';

/** Secret names whose current values are scrubbed from every output from start-up on. */
const STORED_SECRETS = ['DJANGO_SECRET_KEY', 'DJANGO_SECRET_KEY_FALLBACKS', 'SENTRY_DSN'];

/**
 * Reads the Django app's current secrets and registers them with the
 * scrubber. Command output that prints them (an audit check, a restart
 * script) is then scrubbed even before the bot rotates anything.
 */
export async function registerStoredSecrets(config: Config, logger: Logger): Promise<void> {
  const stores: SecretStore[] = [];
  try {
    const setup = createSecretStore(config.env, logger);
    if ('store' in setup) stores.push(setup.store);
  } catch {
    // An invalid SECRET_STORE is shown on the steps that need it.
  }
  const envFile = present(config.env.DJANGO_ENV_FILE);
  if (envFile) stores.push(new EnvFileStore(envFile, logger));
  for (const store of stores) {
    for (const name of STORED_SECRETS) {
      try {
        const value = await store.read(name);
        for (const part of (value ?? '').split(',')) registerSecret(part.trim());
      } catch (error) {
        logger.warn({ store: store.name, secret: name, err: error }, 'reading a secret to scrub it failed');
      }
    }
  }
}

/** Builds the actions that runbook steps can run, each configured from the environment. */
export function buildActions(config: Config, logger: Logger, services?: OpsServices): ActionRegistry {
  const env = config.env;
  registerSecret(env.VAULT_TOKEN);
  const registry = new ActionRegistry();
  registerSecret(env.SENTRY_AUTH_TOKEN);
  registerSecret(env.BACKUP_ENCRYPTION_KEY);
  for (const definition of [...djangoActions(env, logger), ...sentryActions(env, logger), ...opsActions(config, logger, services)]) {
    registry.register(definition);
  }
  return registry;
}

/** Builds the secret store and restart settings that the rotation actions share, or lists what to set. */
function rotationSetup(env: Env, logger: Logger): { deps?: RotationDeps; missing: string[] } {
  let setup;
  try {
    setup = createSecretStore(env, logger);
  } catch (error) {
    // A wrong SECRET_STORE value shows on the step instead of stopping the bot.
    return { missing: [`SECRET_STORE (${error instanceof ActionError ? error.message : String(error)})`] };
  }
  const missing = 'missing' in setup ? [...setup.missing] : [];
  const restartText = present(env.DJANGO_RESTART_COMMAND);
  const healthUrl = present(env.DJANGO_HEALTH_URL);
  if (!restartText) missing.push('DJANGO_RESTART_COMMAND');
  if (!healthUrl) missing.push('DJANGO_HEALTH_URL');
  if (missing.length > 0 || !('store' in setup)) return { missing };
  let restart: string[];
  try {
    restart = parseCommandLine(restartText!);
  } catch (error) {
    return { missing: [`DJANGO_RESTART_COMMAND (${(error as Error).message})`] };
  }
  const fallbackHours = present(env.DJANGO_FALLBACK_HOURS) ? Number(env.DJANGO_FALLBACK_HOURS) : undefined;
  return { deps: { store: setup.store as SecretStore, restart, healthUrl, fallbackHours, logger }, missing: [] };
}

function djangoActions(env: Env, logger: Logger): ActionDefinition[] {
  const rotation = rotationSetup(env, logger);
  const databasePath = present(env.DJANGO_DATABASE_PATH);
  const databaseMissing = databasePath ? [] : ['DJANGO_DATABASE_PATH'];
  const needRotation = () => {
    if (!rotation.deps) throw new ActionError('not_configured', `not configured: set ${rotation.missing.join(', ')}`);
    return rotation.deps;
  };

  return [
    {
      id: 'django.rotate_secret_key',
      missingConfig: () => rotation.missing,
      // `with: { fallbacks: none }` in a runbook also drops the older fallback keys.
      run: (context: ActionContext, args) => rotateSecretKey(needRotation(), context, { dropAllFallbacks: args.fallbacks === 'none' }),
    },
    {
      id: 'django.remove_fallback',
      missingConfig: () => rotation.missing,
      run: (context: ActionContext, args) => removeFallback(needRotation(), context, String(args.fingerprint ?? '')),
    },
    {
      id: 'django.invalidate_sessions',
      missingConfig: () => databaseMissing,
      run: (context: ActionContext) => invalidateSessions({ databasePath: databasePath! }, context),
    },
    {
      id: 'django.lock_accounts',
      missingConfig: () => databaseMissing,
      run: async (context: ActionContext) => {
        const outcome = await lockAccounts({ databasePath: databasePath! }, context, parseIdentifiers(context.inputs.accounts ?? ''));
        if (outcome.notFound.length > 0) {
          // Unknown names are reported, never guessed; failing the run lets a
          // responder run it again with the names corrected.
          throw new ActionError(
            'accounts_not_found',
            `${outcome.summary}. Locked: ${outcome.locked.join(', ') || 'none'}. Not found: ${outcome.notFound.join(', ')}. Check the names and run it again.`,
          );
        }
        return outcome;
      },
    },
  ];
}
