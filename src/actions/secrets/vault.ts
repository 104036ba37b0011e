import { ActionError } from '../../bot/errors.ts';
import type { Logger } from '../../bot/logger.ts';
import { registerSecret, scrubText } from '../../bot/redact.ts';
import { checkSecretName, secretStoreError, type SecretStore } from './store.ts';

export interface VaultStoreOptions {
  /** Vault's base address, for example https://vault.internal:8200. */
  addr: string;
  token: string;
  /** Mount path of the KV version 2 engine; default `secret`. */
  mount?: string;
  /** Secret path inside the mount, for example `django/production`. */
  path: string;
  /** Time limit of one HTTP request; default 10 000 ms. */
  timeoutMs?: number;
  logger?: Logger;
}

interface VaultSecret {
  data: Record<string, unknown>;
  /** Current version, 0 when the secret was never written. */
  version: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const PATH_SEGMENT = /^[A-Za-z0-9_.-]+$/;

/**
 * A secret store on one HashiCorp Vault KV version 2 secret. A write merges
 * the changed keys into the current data and sends it with check-and-set
 * (`options.cas` = the version read), so a concurrent writer makes the write
 * fail with `secret_store_conflict` instead of being overwritten.
 */
export class VaultStore implements SecretStore {
  readonly name: string;
  private readonly baseUrl: string;
  private readonly dataUrl: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly logger?: Logger;

  constructor(options: VaultStoreOptions) {
    const mount = checkPath('VAULT_MOUNT', options.mount ?? 'secret');
    const path = checkPath('VAULT_PATH', options.path);
    this.baseUrl = checkAddr(options.addr);
    this.dataUrl = `${this.baseUrl}/v1/${mount}/data/${path}`;
    this.name = `Vault secret ${mount}/data/${path} at ${this.baseUrl}`;
    this.token = options.token;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.logger = options.logger;
    registerSecret(options.token);
  }

  async read(key: string): Promise<string | undefined> {
    checkSecretName(key);
    const secret = await this.readSecret('read');
    const value = secret.data[key];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') {
      throw secretStoreError(
        'secret_store_invalid',
        `${this.name} contains a ${typeof value} under ${key}, not a string; store the value as a string`,
        { key },
      );
    }
    return value;
  }

  async write(changes: Record<string, string | null>): Promise<void> {
    for (const [key, value] of Object.entries(changes)) {
      checkSecretName(key);
      if (value !== null && typeof value !== 'string') {
        throw secretStoreError('secret_store_invalid', `the value for ${key} must be a string or null`, { key });
      }
    }

    const current = await this.readSecret('write');
    const data: Record<string, unknown> = { ...current.data };
    for (const [key, value] of Object.entries(changes)) {
      if (value === null) delete data[key];
      else data[key] = value;
    }

    const response = await this.request('write', 'POST', { options: { cas: current.version }, data });
    if (response.status !== 200 && response.status !== 204) {
      throw this.statusError('write', response.status, response.errors);
    }
    this.logger?.info(
      { store: 'vault', secret: this.name, keys: Object.keys(changes), version: current.version + 1 },
      'secret store written',
    );
  }

  private async readSecret(operation: 'read' | 'write'): Promise<VaultSecret> {
    const response = await this.request(operation, 'GET');
    const body = response.body as {
      data?: { data?: Record<string, unknown> | null; metadata?: { version?: number } };
    };

    // A missing secret is 404; one whose latest version was deleted is also
    // 404 but still reports that version in its metadata.
    if (response.status === 404) {
      return { data: {}, version: body?.data?.metadata?.version ?? 0 };
    }
    if (response.status !== 200) throw this.statusError(operation, response.status, response.errors);

    const version = body?.data?.metadata?.version;
    if (typeof version !== 'number') {
      throw secretStoreError(
        'secret_store_unavailable',
        `${this.name} returned a response without data.metadata.version; check that the mount is a KV version 2 engine`,
        { status: response.status },
      );
    }
    return { data: body.data?.data ?? {}, version };
  }

  private async request(
    operation: 'read' | 'write',
    method: 'GET' | 'POST',
    payload?: unknown,
  ): Promise<{ status: number; body: unknown; errors: string[] }> {
    const headers: Record<string, string> = { 'X-Vault-Token': this.token };
    if (payload !== undefined) headers['Content-Type'] = 'application/json';

    let response: Response;
    try {
      response = await fetch(this.dataUrl, {
        method,
        headers,
        body: payload === undefined ? undefined : JSON.stringify(payload),
        signal: AbortSignal.timeout(this.timeoutMs),
        redirect: 'error',
      });
    } catch (error) {
      throw this.networkError(operation, error);
    }

    const text = await response.text().catch(() => '');
    let body: unknown;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    const errors = (body as { errors?: unknown })?.errors;
    return {
      status: response.status,
      body,
      errors: Array.isArray(errors) ? errors.map((item) => scrubText(String(item)).slice(0, 300)) : [],
    };
  }

  private networkError(operation: 'read' | 'write', error: unknown): ActionError {
    const unchanged = operation === 'write' ? '; nothing was changed' : '';
    const name = (error as Error).name;
    const cause = (error as { cause?: { code?: string } }).cause;
    let reason = `request failed (${cause?.code ?? scrubText((error as Error).message)})`;
    if (cause?.code === 'ECONNREFUSED') reason = 'connection refused';
    if (name === 'TimeoutError' || name === 'AbortError') reason = `no response within ${this.timeoutMs} ms`;
    return secretStoreError(
      'secret_store_unreachable',
      `cannot reach Vault at ${this.baseUrl}: ${reason}${unchanged}; check VAULT_ADDR and that Vault is running`,
      { addr: this.baseUrl },
    );
  }

  private statusError(operation: 'read' | 'write', status: number, errors: string[]): ActionError {
    const unchanged = operation === 'write' ? ', so nothing was changed' : '';
    const said = errors.length > 0 ? ` (${errors.join('; ')})` : '';
    const details = { status, errors };

    if (status === 403) {
      return secretStoreError(
        'secret_store_denied',
        `Vault denied access to ${this.name}${said}${unchanged}; check that VAULT_TOKEN is valid ` +
          'and that its policy allows read, create and update on that path',
        details,
      );
    }
    if (status === 400 && errors.some((text) => text.includes('check-and-set'))) {
      return secretStoreError(
        'secret_store_conflict',
        `another writer changed ${this.name} while this write ran${said}${unchanged}; run the action again`,
        details,
      );
    }
    if (status >= 500) {
      return secretStoreError(
        'secret_store_unavailable',
        `Vault cannot serve ${this.name} now: HTTP ${status}${said}${unchanged}; check that Vault is unsealed and healthy`,
        details,
      );
    }
    return secretStoreError(
      'secret_store_invalid',
      `Vault rejected the ${operation} of ${this.name}: HTTP ${status}${said}${unchanged}`,
      details,
    );
  }
}

function checkAddr(addr: string): string {
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    // Not echoed: a value that does not parse may still carry a token or password.
    throw secretStoreError('secret_store_invalid', `invalid VAULT_ADDR (${addr.length} characters, not a URL): expected a URL such as https://vault.example.com:8200`, {});
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password) {
    throw secretStoreError(
      'secret_store_invalid',
      `invalid VAULT_ADDR ${url.protocol}//${url.host}: use http:// or https:// without credentials`,
      {},
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function checkPath(variable: string, path: string): string {
  const segments = path.split('/').filter((segment) => segment !== '');
  const valid =
    segments.length > 0 &&
    segments.every((segment) => PATH_SEGMENT.test(segment) && segment !== '.' && segment !== '..');
  if (!valid) {
    throw secretStoreError(
      'secret_store_invalid',
      `invalid ${variable} ${JSON.stringify(path)}: use segments of letters, digits, _ . - separated by /`,
      {},
    );
  }
  return segments.join('/');
}
