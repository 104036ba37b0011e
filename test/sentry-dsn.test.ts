import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';

import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { EnvFileStore } from '../src/actions/secrets/env-file.ts';
import type { SecretStore } from '../src/actions/secrets/store.ts';
import { SentryApiClient } from '../src/actions/sentry-api.ts';
import {
  deactivateSentryKey,
  rotateSentryDsn,
  type RestartResult,
  type SentryDsnDeps,
} from '../src/actions/sentry-dsn.ts';
import type { ActionContext } from '../src/actions/types.ts';
import { AdjustableClock } from '../src/bot/clock.ts';
import { ActionError } from '../src/bot/errors.ts';
import { fingerprint } from '../src/bot/fingerprint.ts';
import { createLogger } from '../src/bot/logger.ts';
import { startSentryServer, type SentryServer, type StoredClientKey } from './helpers/sentry-server.ts';

const token = `sntrys_${randomBytes(24).toString('hex')}`;

let sentry: SentryServer;
let dir: string;
let envPath: string;
let store: EnvFileStore;
let oldKey: StoredClientKey;
let logLines: string[];
let restarts: string[];

function context(reason: ActionContext['reason']): ActionContext {
  logLines = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      logLines.push(chunk.toString());
      callback();
    },
  });
  return {
    incidentId: 17,
    declaredAt: 0,
    metadata: {},
    stepId: 'rotate',
    inputs: {},
    reason,
    clock: new AdjustableClock(0, { now: () => Date.parse('2026-03-01T10:00:00Z') }),
    logger: createLogger('debug', stream),
  };
}

function deps(overrides: Partial<SentryDsnDeps> = {}): SentryDsnDeps {
  return {
    sentry: new SentryApiClient({
      baseUrl: sentry.baseUrl,
      token,
      org: 'acme',
      project: 'web',
      timeoutMs: 2_000,
    }),
    store,
    restart: async (): Promise<RestartResult> => {
      restarts.push((await store.read('SENTRY_DSN')) ?? '');
      return { ok: true, detail: 'health check 200 after 1.2 s' };
    },
    ...overrides,
  };
}

async function failure(promise: Promise<unknown>): Promise<ActionError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof ActionError)) throw new Error(`expected an ActionError, got ${String(error)}`);
  return error;
}

function newKeys(): StoredClientKey[] {
  return sentry.keys.filter((key) => key.id !== oldKey.id);
}

beforeAll(async () => {
  sentry = await startSentryServer({
    org: 'acme',
    project: 'web',
    projectId: 77,
    tokens: { [token]: ['project:write'] },
  });
});

afterAll(async () => {
  await sentry.close();
});

beforeEach(() => {
  sentry.keys.length = 0;
  oldKey = sentry.addKey('Default');
  restarts = [];
  dir = mkdtempSync(path.join(tmpdir(), 'runbook-bot-dsn-'));
  envPath = path.join(dir, '.env');
  writeFileSync(envPath, `DEBUG=False\nSENTRY_DSN=${sentry.dsnFor(oldKey)}\nALLOWED_HOSTS=example.com\n`);
  store = new EnvFileStore(envPath);
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('rotateSentryDsn for an incident', () => {
  it('writes new DSN and deactivates leaked key', async () => {
    const outcome = await rotateSentryDsn(deps(), context('incident'));
    const [created] = newKeys();

    expect(created?.isActive).toBe(true);
    expect(await store.read('SENTRY_DSN')).toBe(sentry.dsnFor(created!));
    expect(oldKey.isActive).toBe(false);
    expect(outcome.summary).toBe(
      `New Sentry DSN ${fingerprint(sentry.dsnFor(created!))} written to env file ${envPath}; restart passed; leaked key ${fingerprint(sentry.dsnFor(oldKey))} deactivated`,
    );
    expect(outcome.followUps).toBeUndefined();
  });

  it('restarts after the new DSN is written', async () => {
    await rotateSentryDsn(deps(), context('incident'));
    const [created] = newKeys();

    expect(restarts).toEqual([sentry.dsnFor(created!)]);
  });

  it('keeps other env lines', async () => {
    await rotateSentryDsn(deps(), context('incident'));
    const text = readFileSync(envPath, 'utf8');

    expect(text).toContain('DEBUG=False\n');
    expect(text).toContain('ALLOWED_HOSTS=example.com\n');
  });

  it('outcome shows fingerprints only', async () => {
    const outcome = await rotateSentryDsn(deps(), context('incident'));
    const [created] = newKeys();
    const displayed = JSON.stringify(outcome);
    const logs = logLines.join('');

    expect(outcome.fingerprints).toEqual({ SENTRY_DSN: fingerprint(sentry.dsnFor(created!)) });
    expect(outcome.rotated).toEqual(['SENTRY_DSN']);
    for (const secret of [oldKey.id, created!.id, oldKey.secret, created!.secret, token]) {
      expect(displayed).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
  });

  it('names the new key after the incident', async () => {
    await rotateSentryDsn(deps(), context('incident'));

    expect(newKeys()[0]?.name).toBe('runbook-bot incident 17 2026-03-01T10:00');
  });
});

describe('rotateSentryDsn for a planned rotation', () => {
  it('schedules old key deactivation', async () => {
    const outcome = await rotateSentryDsn(deps(), context('periodic'));

    expect(oldKey.isActive).toBe(true);
    expect(outcome.followUps).toEqual([
      {
        kind: 'deactivate_sentry_key',
        delayMs: 7 * 24 * 60 * 60 * 1000,
        payload: { dsnFingerprint: fingerprint(sentry.dsnFor(oldKey)) },
      },
    ]);
  });

  it('follow-up deactivates the old key', async () => {
    const outcome = await rotateSentryDsn(deps(), context('periodic'));
    const payload = outcome.followUps?.[0]?.payload as { dsnFingerprint: string };

    const done = await deactivateSentryKey(deps(), context('periodic'), payload.dsnFingerprint);

    expect(oldKey.isActive).toBe(false);
    expect(newKeys()[0]?.isActive).toBe(true);
    expect(done.summary).toBe(`Old Sentry client key ${payload.dsnFingerprint} deactivated`);
  });
});

describe('rotateSentryDsn failures', () => {
  it('unset SENTRY_DSN changes nothing', async () => {
    writeFileSync(envPath, 'DEBUG=False\n');

    const error = await failure(rotateSentryDsn(deps(), context('incident')));

    expect(error.code).toBe('sentry_dsn_not_set');
    expect(sentry.keys).toHaveLength(1);
  });

  it('foreign SENTRY_DSN changes nothing', async () => {
    const foreign = `https://${randomBytes(16).toString('hex')}@o1.ingest.sentry.io/9`;
    writeFileSync(envPath, `SENTRY_DSN=${foreign}\n`);

    const error = await failure(rotateSentryDsn(deps(), context('incident')));

    expect(error.code).toBe('sentry_dsn_unknown_key');
    expect(error.message).toContain(`fingerprint ${fingerprint(foreign)}`);
    expect(error.message).not.toContain(foreign);
    expect(sentry.keys).toHaveLength(1);
  });

  it('failed write deactivates the new key', async () => {
    const broken: SecretStore = {
      name: 'broken store',
      read: (key) => store.read(key),
      write: async () => {
        throw new ActionError('secret_store_unwritable', 'disk full');
      },
    };

    const error = await failure(rotateSentryDsn(deps({ store: broken }), context('incident')));

    expect(error.code).toBe('sentry_dsn_write_failed');
    expect(error.message).toContain('was deactivated again');
    expect(newKeys()[0]?.isActive).toBe(false);
    expect(oldKey.isActive).toBe(true);
    expect(restarts).toEqual([]);
  });

  it('failed restart keeps old key active', async () => {
    const restart = async (): Promise<RestartResult> => ({ ok: false, detail: 'exit status 3' });

    const error = await failure(rotateSentryDsn(deps({ restart }), context('incident')));
    const [created] = newKeys();

    expect(error.code).toBe('sentry_dsn_restart_failed');
    expect(error.message).toContain('the restart failed: exit status 3');
    expect(error.details.fingerprints).toEqual({ SENTRY_DSN: fingerprint(sentry.dsnFor(created!)) });
    expect(oldKey.isActive).toBe(true);
  });

  it('throwing restart is reported', async () => {
    const restart = async (): Promise<RestartResult> => {
      throw new Error('systemctl not found');
    };

    const error = await failure(rotateSentryDsn(deps({ restart }), context('periodic')));

    expect(error.code).toBe('sentry_dsn_restart_failed');
    expect(error.message).toContain('systemctl not found');
  });

  it('failed deactivation says what is done', async () => {
    const restart = async (): Promise<RestartResult> => {
      sentry.failNext(1, 503);
      return { ok: true, detail: 'ok' };
    };

    const error = await failure(rotateSentryDsn(deps({ restart }), context('incident')));

    expect(error.code).toBe('sentry_dsn_deactivate_failed');
    expect(error.message).toContain('restart passed, but deactivating the leaked key');
    expect(oldKey.isActive).toBe(true);
  });
});

describe('deactivateSentryKey', () => {
  it('refuses the key in use', async () => {
    const current = fingerprint(sentry.dsnFor(oldKey));

    const error = await failure(deactivateSentryKey(deps(), context('periodic'), current));

    expect(error.code).toBe('sentry_key_in_use');
    expect(oldKey.isActive).toBe(true);
  });

  it('missing key is reported as done', async () => {
    const outcome = await deactivateSentryKey(deps(), context('periodic'), 'deadbeef');

    expect(outcome.summary).toBe('Old Sentry client key deadbeef no longer exists; nothing to deactivate');
  });

  it('rejects a raw key id', async () => {
    const error = await failure(deactivateSentryKey(deps(), context('periodic'), oldKey.id));

    expect(error.code).toBe('sentry_invalid_input');
    expect(error.message).not.toContain(oldKey.id);
  });
});
