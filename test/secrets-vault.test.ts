import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { generateDjangoSecretKey } from '../src/actions/django.ts';
import { createSecretStore, EnvFileStore, VaultStore } from '../src/actions/secrets/index.ts';
import { ActionError } from '../src/bot/errors.ts';
import { createLogger } from '../src/bot/logger.ts';
import { startVaultServer, type VaultDouble } from './helpers/vault-server.ts';

const TOKEN = 'runbook-test-vault-token-5d1c9e';
const PATH = 'apps/django';

let vault: VaultDouble;

beforeEach(async () => {
  vault = await startVaultServer({ token: TOKEN, mount: 'kv' });
});

afterEach(async () => {
  await vault.stop();
});

function captureLogs() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => lines.push(line) });
  return { logger, text: () => lines.join('') };
}

function storeFor(options: Partial<ConstructorParameters<typeof VaultStore>[0]> = {}) {
  return new VaultStore({ addr: vault.addr, token: TOKEN, mount: 'kv', path: PATH, ...options });
}

async function expectActionError(promise: Promise<unknown>): Promise<ActionError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ActionError);
  return error as ActionError;
}

describe('VaultStore', () => {
  it('read returns stored value', async () => {
    vault.putSecret(PATH, { DJANGO_SECRET_KEY: 'stored-key-value' });

    const value = await storeFor().read('DJANGO_SECRET_KEY');

    expect(value).toBe('stored-key-value');
    expect(vault.requests[0].method).toBe('GET');
    expect(vault.requests[0].path).toBe('/v1/kv/data/apps/django');
    expect(vault.requests[0].token).toBe(TOKEN);
  });

  it('read of missing secret', async () => {
    const store = storeFor();

    expect(await store.read('DJANGO_SECRET_KEY')).toBeUndefined();
  });

  it('write merges with current data', async () => {
    const key = generateDjangoSecretKey();
    vault.putSecret(PATH, { OTHER: 'kept', DJANGO_SECRET_KEY: 'old', DJANGO_SECRET_KEY_FALLBACKS: 'x' });

    await storeFor().write({ DJANGO_SECRET_KEY: key, DJANGO_SECRET_KEY_FALLBACKS: null });

    const post = vault.requests.find((request) => request.method === 'POST');
    expect(vault.secret(PATH)?.data).toEqual({ OTHER: 'kept', DJANGO_SECRET_KEY: key });
    expect(vault.secret(PATH)?.version).toBe(2);
    expect(post?.body).toEqual({ options: { cas: 1 }, data: { OTHER: 'kept', DJANGO_SECRET_KEY: key } });
  });

  it('first write uses cas zero', async () => {
    await storeFor().write({ A: '1' });

    const post = vault.requests.find((request) => request.method === 'POST');
    expect((post?.body as { options: { cas: number } }).options.cas).toBe(0);
    expect(vault.secret(PATH)?.data).toEqual({ A: '1' });
  });

  it('soft-deleted secret gets next version', async () => {
    vault.putSecret(PATH, { A: 'old' });
    vault.deleteLatest(PATH);
    const store = storeFor();

    const before = await store.read('A');
    await store.write({ A: 'new' });

    expect(before).toBeUndefined();
    expect(vault.secret(PATH)).toEqual({ data: { A: 'new' }, version: 2 });
  });

  it('wrong token is denied', async () => {
    const key = generateDjangoSecretKey();
    const wrongToken = 'runbook-wrong-vault-token-77aa01';
    vault.putSecret(PATH, { DJANGO_SECRET_KEY: 'old' });
    const logs = captureLogs();

    const error = await expectActionError(
      storeFor({ token: wrongToken, logger: logs.logger }).write({ DJANGO_SECRET_KEY: key }),
    );

    expect(error.code).toBe('secret_store_denied');
    expect(error.message).toContain('permission denied');
    expect(error.message).toContain('VAULT_TOKEN');
    expect(error.message).toContain('nothing was changed');
    expect(error.message).not.toContain(wrongToken);
    expect(error.message).not.toContain(key);
    expect(JSON.stringify(error.details)).not.toContain(wrongToken);
    expect(vault.secret(PATH)).toEqual({ data: { DJANGO_SECRET_KEY: 'old' }, version: 1 });
    expect(logs.text()).not.toContain(wrongToken);
  });

  it('concurrent writer causes conflict', async () => {
    vault.putSecret(PATH, { A: '1' });
    vault.beforeNextWrite(() => vault.putSecret(PATH, { A: 'other writer' }));

    const error = await expectActionError(storeFor().write({ A: 'mine' }));

    expect(error.code).toBe('secret_store_conflict');
    expect(error.message).toContain('check-and-set parameter did not match the current version');
    expect(vault.secret(PATH)).toEqual({ data: { A: 'other writer' }, version: 2 });
  });

  it('sealed vault is unavailable', async () => {
    vault.putSecret(PATH, { A: '1' });
    vault.setFailure(503);

    const error = await expectActionError(storeFor().write({ A: '2' }));

    expect(error.code).toBe('secret_store_unavailable');
    expect(error.message).toContain('HTTP 503');
    vault.setFailure(null);
    expect(vault.secret(PATH)).toEqual({ data: { A: '1' }, version: 1 });
  });

  it('stopped vault is unreachable', async () => {
    const store = storeFor();
    await vault.stop();

    const error = await expectActionError(store.write({ A: '1' }));

    expect(error.code).toBe('secret_store_unreachable');
    expect(error.message).toContain(`cannot reach Vault at ${vault.addr}: connection refused`);
    vault = await startVaultServer({ token: TOKEN });
  });

  it('silent vault times out', async () => {
    vault.setFailure('hang');

    const error = await expectActionError(storeFor({ timeoutMs: 300 }).read('A'));

    expect(error.code).toBe('secret_store_unreachable');
    expect(error.message).toContain('no response within 300 ms');
  });

  it('non-string value is rejected', async () => {
    vault.putSecret(PATH, { A: 42 });

    const error = await expectActionError(storeFor().read('A'));

    expect(error.code).toBe('secret_store_invalid');
    expect(error.message).toContain('number');
  });

  it('bad address and path rejected', () => {
    const badAddr = () => new VaultStore({ addr: 'vault:8200', token: TOKEN, path: PATH });
    const badPath = () => new VaultStore({ addr: vault.addr, token: TOKEN, path: '../sys/seal' });
    const credentials = () =>
      new VaultStore({ addr: 'http://user:pw@127.0.0.1:1', token: TOKEN, path: PATH });

    expect(badAddr).toThrow(/invalid VAULT_ADDR/);
    expect(badPath).toThrow(/invalid VAULT_PATH/);
    expect(credentials).toThrow(/without credentials/);
  });

  it('write logs key names only', async () => {
    const key = generateDjangoSecretKey();
    const logs = captureLogs();

    await storeFor({ logger: logs.logger }).write({ DJANGO_SECRET_KEY: key });

    expect(logs.text()).toContain('DJANGO_SECRET_KEY');
    expect(logs.text()).not.toContain(key);
    expect(logs.text()).not.toContain(TOKEN);
  });
});

describe('createSecretStore', () => {
  it('lists missing store choice', () => {
    expect(createSecretStore({})).toEqual({ missing: ['SECRET_STORE'] });
  });

  it('env store needs its file', () => {
    expect(createSecretStore({ SECRET_STORE: 'env', DJANGO_ENV_FILE: ' ' })).toEqual({
      missing: ['DJANGO_ENV_FILE'],
    });
  });

  it('vault store needs address and token', () => {
    expect(createSecretStore({ SECRET_STORE: 'vault' })).toEqual({
      missing: ['VAULT_ADDR', 'VAULT_TOKEN'],
    });
  });

  it('unknown store kind rejected', () => {
    const create = () => createSecretStore({ SECRET_STORE: 'aws' });

    expect(create).toThrow(/invalid SECRET_STORE "aws": set it to env/);
  });

  it('env store is created', () => {
    const folder = mkdtempSync(join(tmpdir(), 'store-config-'));
    const setup = createSecretStore({ SECRET_STORE: 'env', DJANGO_ENV_FILE: join(folder, '.env') });

    expect('store' in setup && setup.store).toBeInstanceOf(EnvFileStore);
    rmSync(folder, { recursive: true, force: true });
  });

  it('vault store uses default mount', async () => {
    const defaults = await startVaultServer({ token: TOKEN });
    defaults.putSecret('django', { A: 'from default path' });
    const setup = createSecretStore({
      SECRET_STORE: 'vault',
      VAULT_ADDR: defaults.addr,
      VAULT_TOKEN: TOKEN,
    });

    const value = 'store' in setup ? await setup.store.read('A') : undefined;

    expect(value).toBe('from default path');
    expect('store' in setup && setup.store.name).toBe(`Vault secret secret/data/django at ${defaults.addr}`);
    await defaults.stop();
  });
});
