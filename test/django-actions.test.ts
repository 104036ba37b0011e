import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';

import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import {
  DJANGO_KEY_ALPHABET,
  generateDjangoSecretKey,
  invalidateSessions,
  lockAccounts,
  parseIdentifiers,
  removeFallback,
  rotateSecretKey,
  sessionUserId,
  type RotationDeps,
} from '../src/actions/django.ts';
import { checkHealth, waitForHealth } from '../src/actions/health.ts';
import { EnvFileStore } from '../src/actions/secrets/env-file.ts';
import { VaultStore } from '../src/actions/secrets/vault.ts';
import type { ActionContext } from '../src/actions/types.ts';
import { systemClock } from '../src/bot/clock.ts';
import { ActionError } from '../src/bot/errors.ts';
import { fingerprint } from '../src/bot/fingerprint.ts';
import { createLogger, type Logger } from '../src/bot/logger.ts';
import { DjangoBrowser, startDjango, type DjangoSite } from './helpers/django.ts';
import { startVaultServer } from './helpers/vault-server.ts';

const KEY = 'DJANGO_SECRET_KEY';
const FALLBACKS = 'DJANGO_SECRET_KEY_FALLBACKS';
const HOUR_MS = 3_600_000;

function captureLogs() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => lines.push(line) });
  return { logger, text: () => lines.join('') };
}

function context(reason: ActionContext['reason'], logger: Logger): ActionContext {
  return { incidentId: 7, declaredAt: 0, metadata: {}, stepId: 'rotate', inputs: {}, reason, clock: systemClock, logger };
}

async function expectActionError(promise: Promise<unknown>): Promise<ActionError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ActionError);
  return error as ActionError;
}

/** Asserts that no secret appears in any of the texts (logs, outcomes, error messages). */
function expectNoSecrets(texts: Record<string, string>, secrets: Array<string | undefined>) {
  for (const secret of secrets) {
    expect(secret, 'secret to look for').toBeTruthy();
    for (const [label, text] of Object.entries(texts)) {
      expect(text.includes(secret as string), `${label} contains a secret`).toBe(false);
    }
  }
}

function errorText(error: ActionError): string {
  return `${error.message} ${JSON.stringify(error.details)}`;
}

function sessionCount(databasePath: string, sessionKey?: string): number {
  const db = new Database(databasePath, { readonly: true });
  try {
    const row = sessionKey
      ? db.prepare('SELECT count(*) AS n FROM django_session WHERE session_key = ?').get(sessionKey)
      : db.prepare('SELECT count(*) AS n FROM django_session').get();
    return (row as { n: number }).n;
  } finally {
    db.close();
  }
}

function journalMode(databasePath: string): string {
  const db = new Database(databasePath, { readonly: true });
  try {
    return db.pragma('journal_mode', { simple: true }) as string;
  } finally {
    db.close();
  }
}

describe('Django site rotations', () => {
  let site: DjangoSite;

  beforeAll(async () => {
    site = await startDjango();
  });

  afterAll(async () => {
    await site?.stop();
  });

  function siteDeps(logger: Logger): RotationDeps {
    return {
      store: new EnvFileStore(site.envFile, logger),
      restart: site.restartArgv,
      healthUrl: `${site.baseUrl}/healthz/`,
      logger,
    };
  }

  describe('periodic rotation', () => {
    const logs = captureLogs();
    const activeBrowser = () => new DjangoBrowser(site.baseUrl);
    let active: DjangoBrowser;
    let idle: DjangoBrowser;
    let oldKey: string | undefined;
    let newKey: string | undefined;
    let rotationText = '';

    it('keeps old sessions logged in', async () => {
      const store = new EnvFileStore(site.envFile);
      oldKey = await store.read(KEY);
      active = activeBrowser();
      idle = activeBrowser();
      expect(await active.login('alice')).toBe(200);
      expect(await idle.login('bob')).toBe(200);

      const outcome = await rotateSecretKey(siteDeps(logs.logger), context('periodic', logs.logger));
      newKey = await store.read(KEY);
      rotationText = JSON.stringify(outcome);

      const loaded = await site.loadedKeys();
      expect(loaded.secretKey).toBe(fingerprint(newKey as string));
      expect(loaded.fallbacks).toEqual([fingerprint(oldKey as string)]);
      expect(await active.whoami()).toBe('alice');
      expect(outcome.rotated).toEqual([KEY]);
      expect(outcome.fingerprints).toEqual({ [KEY]: fingerprint(newKey as string) });
      expect(outcome.followUps).toEqual([
        { kind: 'remove_fallback', delayMs: 24 * HOUR_MS, payload: { fingerprint: fingerprint(oldKey as string) } },
      ]);
      expect(outcome.summary).toContain(`old key ${fingerprint(oldKey as string)} kept as a fallback for 24 h`);
      expect(outcome.summary).toContain('restart passed; health check passed');
      expectNoSecrets({ logs: logs.text(), outcome: rotationText }, [oldKey, newKey]);
    });

    it('logs out once fallback removed', async () => {
      const idleSession = idle.sessionKey as string;

      const outcome = await removeFallback(
        siteDeps(logs.logger),
        context('periodic', logs.logger),
        fingerprint(oldKey as string),
      );

      const loaded = await site.loadedKeys();
      expect(loaded.fallbacks).toEqual([]);
      expect(sessionCount(site.databasePath, idleSession)).toBe(1);
      expect(await idle.whoami()).toBeUndefined();
      expect(await active.whoami()).toBe('alice');
      expect(readFileSync(site.envFile, 'utf8')).toContain(`${FALLBACKS}=''`);
      expect(outcome.summary).toContain(`Fallback key ${fingerprint(oldKey as string)} removed`);
      expectNoSecrets({ logs: logs.text(), outcome: JSON.stringify(outcome) }, [oldKey, newKey]);
    });
  });

  it('incident rotation logs out at once', async () => {
    const logs = captureLogs();
    const store = new EnvFileStore(site.envFile);
    const leakedKey = await store.read(KEY);
    const browser = new DjangoBrowser(site.baseUrl);
    expect(await browser.login('alice')).toBe(200);
    expect(await browser.whoami()).toBe('alice');

    const outcome = await rotateSecretKey(siteDeps(logs.logger), context('incident', logs.logger));
    const newKey = await store.read(KEY);

    const loaded = await site.loadedKeys();
    expect(loaded.secretKey).toBe(fingerprint(newKey as string));
    expect(loaded.fallbacks).toEqual([]);
    expect(await browser.whoami()).toBeUndefined();
    expect(outcome.followUps).toBeUndefined();
    expect(outcome.summary).toContain(`leaked key ${fingerprint(leakedKey as string)} not kept as a fallback`);
    expectNoSecrets({ logs: logs.text(), outcome: JSON.stringify(outcome) }, [leakedKey, newKey]);
  });

  it('invalidate sessions empties table', async () => {
    const logs = captureLogs();
    const first = new DjangoBrowser(site.baseUrl);
    const second = new DjangoBrowser(site.baseUrl);
    expect(await first.login('alice')).toBe(200);
    expect(await second.login('bob')).toBe(200);
    const before = sessionCount(site.databasePath);

    const outcome = await invalidateSessions(
      { databasePath: site.databasePath },
      context('incident', logs.logger),
    );

    expect(before).toBeGreaterThanOrEqual(2);
    expect(outcome.deleted).toBe(before);
    expect(sessionCount(site.databasePath)).toBe(0);
    expect(await first.whoami()).toBeUndefined();
    expect(await second.whoami()).toBeUndefined();
    expect(journalMode(site.databasePath)).toBe('delete');
    expect(existsSync(`${site.databasePath}-wal`)).toBe(false);
    expect(outcome.facts).toContainEqual(['Sessions deleted', String(before)]);
  });

  it('locked account cannot log in', async () => {
    const logs = captureLogs();
    const alice = new DjangoBrowser(site.baseUrl);
    const aliceAgain = new DjangoBrowser(site.baseUrl);
    const dave = new DjangoBrowser(site.baseUrl);
    const frank = new DjangoBrowser(site.baseUrl);
    expect(await alice.login('alice')).toBe(200);
    expect(await aliceAgain.login('alice')).toBe(200);
    expect(await dave.login('dave')).toBe(200);
    expect(await frank.login('bob')).toBe(200);
    const bobSession = frank.sessionKey as string;

    const outcome = await lockAccounts(
      { databasePath: site.databasePath },
      context('incident', logs.logger),
      parseIdentifiers('alice, carol\nshared@EXAMPLE.com; nobody@example.com alice'),
    );

    expect(outcome.locked).toEqual(['alice', 'dave', 'erin']);
    expect(outcome.alreadyInactive).toEqual(['carol']);
    expect(outcome.notFound).toEqual(['nobody@example.com']);
    expect(outcome.sessionsDeleted).toBe(3);
    expect(outcome.sessionsUnreadable).toBe(0);
    expect(await alice.whoami()).toBeUndefined();
    expect(await aliceAgain.whoami()).toBeUndefined();
    expect(await dave.whoami()).toBeUndefined();
    expect(await frank.whoami()).toBe('bob');
    expect(sessionCount(site.databasePath, bobSession)).toBe(1);
    expect(await new DjangoBrowser(site.baseUrl).login('alice')).toBe(401);
    expect(await new DjangoBrowser(site.baseUrl).login('erin')).toBe(401);
    expect(journalMode(site.databasePath)).toBe('delete');
    expect(outcome.summary).toBe('Locked 3 accounts, 1 already inactive, 1 not found; 3 sessions deleted');
  });

  it('lock by e-mail ignores case', async () => {
    const logs = captureLogs();

    const outcome = await lockAccounts(
      { databasePath: site.databasePath },
      context('incident', logs.logger),
      ['BOB.BUILDER@example.COM'],
    );

    expect(outcome.locked).toEqual(['bob']);
    expect(await new DjangoBrowser(site.baseUrl).login('bob')).toBe(401);
  });
});

describe('rotation failures', () => {
  let folder: string;
  let envFile: string;
  let marker: string;
  const oldKey = generateDjangoSecretKey();

  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), 'rotation-'));
    envFile = join(folder, '.env');
    marker = join(folder, 'restarted');
    writeFileSync(envFile, `# app settings\n${KEY}='${oldKey}'\nDEBUG=0\n`);
  });

  afterEach(() => {
    chmodSync(folder, 0o755);
    rmSync(folder, { recursive: true, force: true });
  });

  function envDeps(logger: Logger, overrides: Partial<RotationDeps> = {}): RotationDeps {
    return {
      store: new EnvFileStore(envFile, logger),
      restart: ['/bin/sh', '-c', 'touch "$1"', 'sh', marker],
      logger,
      ...overrides,
    };
  }

  it('failing restart keeps new key', async () => {
    const logs = captureLogs();
    const restart = ['/bin/sh', '-c', 'cat "$1"; echo restart broke >&2; exit 3', 'sh', envFile];

    const error = await expectActionError(
      rotateSecretKey(envDeps(logs.logger, { restart }), context('incident', logs.logger)),
    );
    const newKey = await new EnvFileStore(envFile).read(KEY);

    expect(error.code).toBe('restart_failed');
    expect(error.message).toContain('exited with status 3');
    expect(error.message).toContain(`New key ${fingerprint(newKey as string)} stays written to env file ${envFile}`);
    expect(error.message).toContain('restart broke');
    expect(error.message).toContain('[REDACTED]');
    expect(error.details.exitCode).toBe(3);
    expect(error.details.fingerprints).toEqual({ [KEY]: fingerprint(newKey as string) });
    expect(newKey).not.toBe(oldKey);
    expectNoSecrets({ logs: logs.text(), error: errorText(error) }, [oldKey, newKey]);
  });

  it('timed-out restart keeps new key', async () => {
    const logs = captureLogs();
    const restart = ['/bin/sh', '-c', 'echo waiting; sleep 30'];

    const error = await expectActionError(
      rotateSecretKey(
        envDeps(logs.logger, { restart, restartTimeoutMs: 300 }),
        context('periodic', logs.logger),
      ),
    );
    const store = new EnvFileStore(envFile);
    const newKey = await store.read(KEY);

    expect(error.code).toBe('restart_timed_out');
    expect(error.message).toContain('timed out after 300 ms');
    expect(error.message).toContain('waiting');
    expect(error.details.timedOut).toBe(true);
    expect(fingerprint(newKey as string)).toBe((error.details.fingerprints as Record<string, string>)[KEY]);
    expect(await store.read(FALLBACKS)).toBe(oldKey);
    expectNoSecrets({ logs: logs.text(), error: errorText(error) }, [oldKey, newKey]);
  });

  it('failing health check keeps new key', async () => {
    const logs = captureLogs();
    const port = await closedPort();

    const error = await expectActionError(
      rotateSecretKey(
        envDeps(logs.logger, { healthUrl: `http://127.0.0.1:${port}/healthz/`, healthTimeoutMs: 800 }),
        context('incident', logs.logger),
      ),
    );
    const newKey = await new EnvFileStore(envFile).read(KEY);

    expect(error.code).toBe('health_check_failed');
    expect(error.message).toContain('refused the connection');
    expect(error.message).toContain(`New key ${fingerprint(newKey as string)} stays written`);
    expect(existsSync(marker)).toBe(true);
    expectNoSecrets({ logs: logs.text(), error: errorText(error) }, [oldKey, newKey]);
  });

  it('read-only env changes nothing', async () => {
    const logs = captureLogs();
    chmodSync(envFile, 0o444);
    const before = readFileSync(envFile, 'utf8');

    const error = await expectActionError(
      rotateSecretKey(envDeps(logs.logger), context('incident', logs.logger)),
    );

    expect(error.code).toBe('secret_store_unwritable');
    expect(error.message).toContain('read-only');
    expect(readFileSync(envFile, 'utf8')).toBe(before);
    expect(existsSync(marker)).toBe(false);
    expect(readdirSync(folder)).toEqual(['.env']);
    expectNoSecrets({ logs: logs.text(), error: errorText(error) }, [oldKey]);
  });

  it('incident drops leaked fallback', async () => {
    const logs = captureLogs();
    const olderKey = generateDjangoSecretKey();
    writeFileSync(envFile, `${KEY}='${oldKey}'\n${FALLBACKS}='${oldKey},${olderKey}'\n`);
    const store = new EnvFileStore(envFile);

    const outcome = await rotateSecretKey(envDeps(logs.logger), context('incident', logs.logger));
    const newKey = await store.read(KEY);

    expect(await store.read(FALLBACKS)).toBe(olderKey);
    expect(outcome.summary).toContain('not kept as a fallback and removed from the fallbacks');
    expect(existsSync(marker)).toBe(true);
    expectNoSecrets({ logs: logs.text(), outcome: JSON.stringify(outcome) }, [oldKey, olderKey, newKey]);
  });

  it('periodic prepends old key', async () => {
    const logs = captureLogs();
    const olderKey = generateDjangoSecretKey();
    writeFileSync(envFile, `${KEY}='${oldKey}'\n${FALLBACKS}='${olderKey}'\n`);
    const store = new EnvFileStore(envFile);

    const outcome = await rotateSecretKey(
      envDeps(logs.logger, { fallbackHours: 36 }),
      context('periodic', logs.logger),
    );
    const newKey = await store.read(KEY);

    expect(await store.read(FALLBACKS)).toBe(`${oldKey},${olderKey}`);
    expect(outcome.followUps?.[0].delayMs).toBe(36 * HOUR_MS);
    expectNoSecrets({ logs: logs.text(), outcome: JSON.stringify(outcome) }, [oldKey, olderKey, newKey]);
  });

  it('periodic without old key', async () => {
    const logs = captureLogs();
    writeFileSync(envFile, `${KEY}=''\nDEBUG=0\n`);
    const store = new EnvFileStore(envFile);

    const outcome = await rotateSecretKey(envDeps(logs.logger), context('periodic', logs.logger));
    const newKey = await store.read(KEY);

    expect(newKey).toHaveLength(50);
    expect(await store.read(FALLBACKS)).toBeUndefined();
    expect(outcome.followUps).toBeUndefined();
    expect(outcome.summary).toContain('there was no old key, so no fallback is kept');
    expectNoSecrets({ logs: logs.text(), outcome: JSON.stringify(outcome) }, [newKey]);
  });

  it('missing restart is reported', async () => {
    const logs = captureLogs();

    const outcome = await rotateSecretKey(
      envDeps(logs.logger, { restart: undefined }),
      context('incident', logs.logger),
    );
    const newKey = await new EnvFileStore(envFile).read(KEY);

    expect(outcome.summary).toContain('no restart command is configured');
    expect(outcome.facts).toContainEqual(['Restart', 'not configured']);
    expectNoSecrets({ logs: logs.text(), outcome: JSON.stringify(outcome) }, [oldKey, newKey]);
  });

  it('fallback hours are validated', async () => {
    const logs = captureLogs();

    for (const hours of [0, 49, Number.NaN]) {
      const error = await expectActionError(
        rotateSecretKey(envDeps(logs.logger, { fallbackHours: hours }), context('periodic', logs.logger)),
      );
      expect(error.code, String(hours)).toBe('invalid_fallback_hours');
    }
    expect(await new EnvFileStore(envFile).read(KEY)).toBe(oldKey);
  });

  it('unknown fallback changes nothing', async () => {
    const logs = captureLogs();
    writeFileSync(envFile, `${KEY}='${oldKey}'\n${FALLBACKS}='a-fallback-key-value'\n`);
    const before = readFileSync(envFile, 'utf8');

    const outcome = await removeFallback(envDeps(logs.logger), context('periodic', logs.logger), '0badf00d');
    const invalid = await expectActionError(
      removeFallback(envDeps(logs.logger), context('periodic', logs.logger), 'not-hex'),
    );

    expect(outcome.summary).toBe('No fallback key 0badf00d is configured, so nothing was changed');
    expect(readFileSync(envFile, 'utf8')).toBe(before);
    expect(existsSync(marker)).toBe(false);
    expect(invalid.code).toBe('invalid_fingerprint');
  });

  describe('through Vault', () => {
    const token = 'runbook-rotation-vault-token-42';

    it('rotation writes both keys', async () => {
      const logs = captureLogs();
      const vault = await startVaultServer({ token });
      vault.putSecret('django', { [KEY]: oldKey, OTHER: 'kept' });
      const store = new VaultStore({ addr: vault.addr, token, path: 'django' });

      const outcome = await rotateSecretKey(envDeps(logs.logger, { store }), context('periodic', logs.logger));
      const data = vault.secret('django')?.data as Record<string, string>;
      await vault.stop();

      expect(data[FALLBACKS]).toBe(oldKey);
      expect(data.OTHER).toBe('kept');
      expect(fingerprint(data[KEY])).toBe(outcome.fingerprints?.[KEY]);
      expect(vault.secret('django')?.version).toBe(2);
      expectNoSecrets({ logs: logs.text(), outcome: JSON.stringify(outcome) }, [oldKey, data[KEY], token]);
    });

    it('denied token changes nothing', async () => {
      const logs = captureLogs();
      const vault = await startVaultServer({ token });
      vault.putSecret('django', { [KEY]: oldKey });
      const wrongToken = 'runbook-wrong-rotation-token-43';
      const store = new VaultStore({ addr: vault.addr, token: wrongToken, path: 'django' });

      const error = await expectActionError(
        rotateSecretKey(envDeps(logs.logger, { store }), context('incident', logs.logger)),
      );
      const secret = vault.secret('django');
      const posts = vault.requests.filter((request) => request.method === 'POST');
      await vault.stop();

      expect(error.code).toBe('secret_store_denied');
      expect(secret).toEqual({ data: { [KEY]: oldKey }, version: 1 });
      expect(posts).toEqual([]);
      expect(existsSync(marker)).toBe(false);
      expectNoSecrets({ logs: logs.text(), error: errorText(error) }, [oldKey, wrongToken]);
    });

    it('stopped Vault changes nothing', async () => {
      const logs = captureLogs();
      const vault = await startVaultServer({ token });
      const store = new VaultStore({ addr: vault.addr, token, path: 'django' });
      await vault.stop();

      const error = await expectActionError(
        rotateSecretKey(envDeps(logs.logger, { store }), context('incident', logs.logger)),
      );

      expect(error.code).toBe('secret_store_unreachable');
      expect(existsSync(marker)).toBe(false);
      expectNoSecrets({ logs: logs.text(), error: errorText(error) }, [token]);
    });
  });
});

describe('Django database checks', () => {
  it('identifiers are validated first', async () => {
    const logs = captureLogs();
    const deps = { databasePath: '/nonexistent/db.sqlite3' };
    const ctx = context('incident', logs.logger);
    const tooMany = Array.from({ length: 101 }, (_, index) => `user${index}`);

    const empty = await expectActionError(lockAccounts(deps, ctx, [' ', '']));
    const many = await expectActionError(lockAccounts(deps, ctx, tooMany));
    const bad = await expectActionError(lockAccounts(deps, ctx, ['alice', "x'; DROP TABLE auth_user; --"]));

    expect(empty.code).toBe('invalid_input');
    expect(empty.message).toContain('no usernames or e-mail addresses were given');
    expect(many.message).toContain('101 accounts were given, but at most 100');
    expect(bad.message).toContain(`"x'; DROP TABLE auth_user; --"`);
    expect(bad.message).not.toContain('"alice"');
  });

  it('missing database is reported', async () => {
    const logs = captureLogs();

    const error = await expectActionError(
      invalidateSessions({ databasePath: '/nonexistent/db.sqlite3' }, context('incident', logs.logger)),
    );

    expect(error.code).toBe('django_database_not_found');
    expect(error.message).toContain('/nonexistent/db.sqlite3');
  });

  it('missing session table is reported', async () => {
    const logs = captureLogs();
    const folder = mkdtempSync(join(tmpdir(), 'not-django-'));
    const databasePath = join(folder, 'db.sqlite3');
    new Database(databasePath).close();

    const error = await expectActionError(
      invalidateSessions({ databasePath }, context('incident', logs.logger)),
    );
    rmSync(folder, { recursive: true, force: true });

    expect(error.code).toBe('django_table_missing');
    expect(error.message).toContain('no django_session table');
  });

  it('session data decodes user id', () => {
    const plain = Buffer.from(JSON.stringify({ _auth_user_id: '12', other: 1 })).toString('base64url');
    const packed = deflateSync(Buffer.from(JSON.stringify({ _auth_user_id: '34', pad: 'x'.repeat(200) })));
    const anonymous = Buffer.from('{"cart": []}').toString('base64url');

    expect(sessionUserId(`${plain}:1rAbCd:signature`)).toBe('12');
    expect(sessionUserId(`.${packed.toString('base64url')}:1rAbCd:signature`)).toBe('34');
    expect(sessionUserId(`${anonymous}:1rAbCd:signature`)).toBeUndefined();
    expect(sessionUserId('bm90IGpzb24:1rAbCd:signature')).toBeNull();
    expect(sessionUserId('legacy-format-without-separators')).toBeNull();
  });
});

describe('generateDjangoSecretKey', () => {
  it('uses Django alphabet and length', () => {
    const keys = Array.from({ length: 20 }, generateDjangoSecretKey);

    for (const key of keys) {
      expect(key).toHaveLength(50);
      expect([...key].every((char) => DJANGO_KEY_ALPHABET.includes(char))).toBe(true);
    }
    expect(new Set(keys).size).toBe(20);
  });
});

describe('checkHealth', () => {
  let server: Server;
  let base: string;

  beforeAll(async () => {
    server = createServer((request, response) => {
      if (request.url === '/ok') response.writeHead(204).end();
      else if (request.url === '/moved') response.writeHead(301, { location: '/ok' }).end();
      else if (request.url === '/slow') setTimeout(() => response.writeHead(200).end(), 1000);
      else response.writeHead(503).end('down');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('2xx passes', async () => {
    const result = await checkHealth(`${base}/ok`, { timeoutMs: 2000 });

    expect(result.ok).toBe(true);
    expect(result.status).toBe(204);
    expect(result.error).toBeUndefined();
  });

  it('5xx fails with status', async () => {
    const result = await checkHealth(`${base}/down`, { timeoutMs: 2000 });

    expect(result.ok).toBe(false);
    expect(result.status).toBe(503);
    expect(result.error).toContain('returned HTTP 503');
  });

  it('redirect is not followed', async () => {
    const result = await checkHealth(`${base}/moved`, { timeoutMs: 2000 });

    expect(result.ok).toBe(false);
    expect(result.error).toContain('redirected to /ok');
  });

  it('slow response times out', async () => {
    const result = await checkHealth(`${base}/slow`, { timeoutMs: 200 });

    expect(result.ok).toBe(false);
    expect(result.status).toBe(0);
    expect(result.error).toContain('did not respond within 200 ms');
  });

  it('invalid URL and credentials hidden', async () => {
    const invalid = await checkHealth('not a url', { timeoutMs: 200 });
    const withPassword = await checkHealth(`http://user:hunter2-password@127.0.0.1:${await closedPort()}/`, {
      timeoutMs: 500,
    });

    expect(invalid.error).toContain('invalid health URL');
    expect(withPassword.error).toContain('refused the connection');
    expect(withPassword.error).not.toContain('hunter2-password');
  });

  it('wait retries until healthy', async () => {
    let calls = 0;
    const flaky = createServer((_request, response) => {
      calls++;
      response.writeHead(calls < 3 ? 503 : 200).end();
    });
    await new Promise<void>((resolve) => flaky.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(flaky.address() as AddressInfo).port}/`;

    const result = await waitForHealth(url, { timeoutMs: 5000, intervalMs: 50 });
    flaky.closeAllConnections();
    await new Promise((resolve) => flaky.close(resolve));

    expect(result.ok).toBe(true);
    expect(result.attempts).toBe(3);
  });
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
