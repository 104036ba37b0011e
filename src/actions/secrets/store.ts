import { ActionError } from '../../bot/errors.ts';

/**
 * A place that stores the application's secrets (a `.env` file, a Vault path).
 * Implementations throw ActionError with one of SecretStoreErrorCode; their
 * messages name the file or address and the reason, never a secret value.
 */
export interface SecretStore {
  /** Short description for messages, for example "env file /srv/app/.env". */
  readonly name: string;

  /** Reads one secret; `undefined` when the store has no such key. */
  read(key: string): Promise<string | undefined>;

  /**
   * Applies all changes at once: either every key is updated or none is.
   * A `null` value deletes the key.
   */
  write(changes: Record<string, string | null>): Promise<void>;
}

export type SecretStoreErrorCode =
  /** The store's file or folder cannot be written (read-only, no permission, full disk). */
  | 'secret_store_unwritable'
  /** The store's file cannot be read or parsed. */
  | 'secret_store_unreadable'
  /** The configured file does not exist. */
  | 'secret_store_not_found'
  /** The server rejected the credentials (Vault 403). */
  | 'secret_store_denied'
  /** No connection, or no response within the timeout. */
  | 'secret_store_unreachable'
  /** The server responded but cannot serve requests now (Vault 5xx, sealed). */
  | 'secret_store_unavailable'
  /** Someone else changed the secret since it was read (Vault check-and-set). */
  | 'secret_store_conflict'
  /** The key or value cannot be stored (bad name, NUL byte, non-string value). */
  | 'secret_store_invalid';

/** Environment-variable style key names, the only ones both stores accept. */
export const SECRET_KEY_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function secretStoreError(
  code: SecretStoreErrorCode,
  message: string,
  details: Record<string, unknown> = {},
): ActionError {
  return new ActionError(code, message, details);
}

/** Throws `secret_store_invalid` unless `key` matches SECRET_KEY_NAME. */
export function checkSecretName(key: string): void {
  if (!SECRET_KEY_NAME.test(key)) {
    throw secretStoreError(
      'secret_store_invalid',
      `invalid secret name ${JSON.stringify(key)}: use letters, digits and underscores, not starting with a digit`,
      { key },
    );
  }
}
