import { ActionError } from '../../bot/errors.ts';
import type { Logger } from '../../bot/logger.ts';
import { EnvFileStore } from './env-file.ts';
import type { SecretStore } from './store.ts';
import { VaultStore } from './vault.ts';

export type { SecretStore } from './store.ts';
export { EnvFileStore } from './env-file.ts';
export { VaultStore } from './vault.ts';

/** The configuration variables that choose and reach the secret store. */
export interface SecretStoreConfig {
  /** `env` for a .env file, `vault` for HashiCorp Vault KV version 2. */
  SECRET_STORE?: string;
  /** Path of the .env file that the Django app reads (SECRET_STORE=env). */
  DJANGO_ENV_FILE?: string;
  VAULT_ADDR?: string;
  VAULT_TOKEN?: string;
  /** Mount of the KV version 2 engine; default `secret`. */
  VAULT_MOUNT?: string;
  /** Secret path inside the mount; default DEFAULT_VAULT_PATH. */
  VAULT_PATH?: string;
}

export type SecretStoreSetup = { store: SecretStore } | { missing: string[] };

export const DEFAULT_VAULT_PATH = 'django';

/**
 * Creates the configured secret store, or lists the variables still to set
 * so the engine can show "not configured: set X". Throws ActionError
 * `secret_store_invalid` for a value that is set but wrong.
 */
export function createSecretStore(config: SecretStoreConfig, logger?: Logger): SecretStoreSetup {
  const kind = present(config.SECRET_STORE);
  if (kind === undefined) return { missing: ['SECRET_STORE'] };

  if (kind === 'env') {
    const path = present(config.DJANGO_ENV_FILE);
    if (path === undefined) return { missing: ['DJANGO_ENV_FILE'] };
    return { store: new EnvFileStore(path, logger) };
  }

  if (kind === 'vault') {
    const addr = present(config.VAULT_ADDR);
    const token = present(config.VAULT_TOKEN);
    const missing = [
      ...(addr === undefined ? ['VAULT_ADDR'] : []),
      ...(token === undefined ? ['VAULT_TOKEN'] : []),
    ];
    if (addr === undefined || token === undefined) return { missing };

    const store = new VaultStore({
      addr,
      token,
      mount: present(config.VAULT_MOUNT),
      path: present(config.VAULT_PATH) ?? DEFAULT_VAULT_PATH,
      logger,
    });
    return { store };
  }

  throw new ActionError(
    'secret_store_invalid',
    `invalid SECRET_STORE ${JSON.stringify(kind)}: set it to env (a .env file) or vault (HashiCorp Vault KV version 2)`,
    { SECRET_STORE: kind },
  );
}

function present(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === '' ? undefined : trimmed;
}
