// Rotates SENTRY_DSN through Sentry's project client keys. The action creates
// a new key, writes its public DSN to the secret store and restarts the app.
// It then deactivates the old key at once after a leak, or 7 days later after
// a planned rotation. Sentry uses a key's public key as its id, and that
// public key is the credential inside the DSN. Outcomes, logs and timer
// payloads therefore name a key by the fingerprint of its DSN, never by its id.
import { ActionError } from '../bot/errors.ts';
import { fingerprint } from '../bot/fingerprint.ts';
import { registerSecret, scrubText } from '../bot/redact.ts';
import type { SecretStore } from './secrets/store.ts';
import type { SentryApiClient, SentryClientKey } from './sentry-api.ts';
import type { ActionContext, ActionOutcome } from './types.ts';

export const SENTRY_DSN_KEY = 'SENTRY_DSN';
export const DEACTIVATE_SENTRY_KEY_TIMER = 'deactivate_sentry_key';
/** How long the old key keeps accepting events after a planned rotation. */
export const OLD_KEY_GRACE_MS = 7 * 24 * 60 * 60 * 1000;

export interface RestartResult {
  ok: boolean;
  /** One line for the step, for example "health check 200 after 4.1 s". */
  detail: string;
}

export interface SentryDsnDeps {
  sentry: Pick<SentryApiClient, 'listClientKeys' | 'createClientKey' | 'deactivateClientKey'>;
  store: SecretStore;
  /** Restarts the app so it reads the new SENTRY_DSN. */
  restart(): Promise<RestartResult>;
}

/** The payload of the `deactivate_sentry_key` timer. */
export interface DeactivateSentryKeyPayload {
  dsnFingerprint: string;
}

function messageOf(error: unknown): string {
  return scrubText(error instanceof Error ? error.message : String(error));
}

/** Extracts the public key, which is the DSN's user name, or returns undefined for a malformed DSN. */
function publicKeyOf(dsn: string): string | undefined {
  try {
    return new URL(dsn).username || undefined;
  } catch {
    return undefined;
  }
}

function findCurrentKey(keys: SentryClientKey[], dsn: string): SentryClientKey | undefined {
  const publicKey = publicKeyOf(dsn);
  return keys.find((key) => key.dsn === dsn) ?? keys.find((key) => key.id === publicKey);
}

function keyName(ctx: ActionContext): string {
  const stamp = new Date(ctx.clock.now()).toISOString().slice(0, 16);
  return ctx.reason === 'incident'
    ? `runbook-bot incident ${ctx.incidentId} ${stamp}`
    : `runbook-bot rotation ${stamp}`;
}

async function readCurrentDsn(store: SecretStore): Promise<string> {
  const current = await store.read(SENTRY_DSN_KEY);
  if (current === undefined || current.trim() === '') {
    throw new ActionError(
      'sentry_dsn_not_set',
      `${SENTRY_DSN_KEY} is not set in ${store.name}, so there is no key to rotate. Set it to the DSN the app uses now, then run the step again. Nothing was changed.`,
    );
  }

  registerSecret(current);
  return current;
}

async function writeNewDsn(
  deps: SentryDsnDeps,
  created: SentryClientKey,
  ctx: ActionContext,
): Promise<void> {
  try {
    await deps.store.write({ [SENTRY_DSN_KEY]: created.dsn });
  } catch (error) {
    let cleanup = `deactivate client key ${created.dsnFingerprint} in Sentry`;
    try {
      await deps.sentry.deactivateClientKey(created.id);
      cleanup = `client key ${created.dsnFingerprint} was deactivated again`;
    } catch (cleanupError) {
      ctx.logger.error(
        { err: cleanupError, incidentId: ctx.incidentId, dsnFingerprint: created.dsnFingerprint },
        'sentry key cleanup failed',
      );
    }

    throw new ActionError(
      'sentry_dsn_write_failed',
      `A new Sentry client key ${created.dsnFingerprint} was created, but writing ${SENTRY_DSN_KEY} to ${deps.store.name} failed: ${messageOf(error)}. The app still uses the old DSN; ${cleanup}.`,
      { cause: (error as { code?: unknown })?.code ?? null, fingerprints: {} },
    );
  }
}

async function runRestart(deps: SentryDsnDeps): Promise<RestartResult> {
  try {
    const result = await deps.restart();
    return { ok: result.ok, detail: scrubText(result.detail) };
  } catch (error) {
    return { ok: false, detail: messageOf(error) };
  }
}

/**
 * Rotates SENTRY_DSN. For `ctx.reason` 'incident' the leaked key is
 * deactivated as soon as the restart passes, because a responder confirmed
 * the action before it started. For 'periodic' the outcome requests a
 * `deactivate_sentry_key` timer in 7 days. Throws ActionError, without
 * changing anything, when SENTRY_DSN is unset or matches no key of the
 * project. The messages of later failures state what is already done.
 */
export async function rotateSentryDsn(deps: SentryDsnDeps, ctx: ActionContext): Promise<ActionOutcome> {
  const current = await readCurrentDsn(deps.store);
  const currentFingerprint = fingerprint(current);

  const keys = await deps.sentry.listClientKeys();
  const old = findCurrentKey(keys, current);
  if (!old) {
    throw new ActionError(
      'sentry_dsn_unknown_key',
      `${SENTRY_DSN_KEY} in ${deps.store.name} (fingerprint ${currentFingerprint}) matches none of the ${keys.length} client keys of the Sentry project. Check that it is this project's DSN. Nothing was changed.`,
    );
  }

  const created = await deps.sentry.createClientKey(keyName(ctx));
  await writeNewDsn(deps, created, ctx);
  const fingerprints = { [SENTRY_DSN_KEY]: created.dsnFingerprint };

  const restart = await runRestart(deps);
  if (!restart.ok) {
    throw new ActionError(
      'sentry_dsn_restart_failed',
      `New ${SENTRY_DSN_KEY} ${created.dsnFingerprint} is written to ${deps.store.name}, but the restart failed: ${restart.detail}. The old key ${old.dsnFingerprint} stays active; restart the app by hand, then deactivate the old key.`,
      { fingerprints },
    );
  }

  const facts: ActionOutcome['facts'] = [
    ['New client key', `${created.name} (DSN ${created.dsnFingerprint})`],
    ['Old client key', `${old.name} (DSN ${old.dsnFingerprint})`],
    ['Restart', restart.detail],
  ];
  const outcome: ActionOutcome = {
    summary: '',
    facts,
    fingerprints,
    rotated: [SENTRY_DSN_KEY],
  };
  const written = `New Sentry DSN ${created.dsnFingerprint} written to ${deps.store.name}; restart passed`;

  if (!old.isActive) {
    facts.push(['Old key', 'already inactive']);
    outcome.summary = `${written}; old key ${old.dsnFingerprint} was already inactive`;
  } else if (ctx.reason === 'incident') {
    try {
      await deps.sentry.deactivateClientKey(old.id);
    } catch (error) {
      throw new ActionError(
        'sentry_dsn_deactivate_failed',
        `${written}, but deactivating the leaked key ${old.dsnFingerprint} failed: ${messageOf(error)}. Deactivate it in Sentry under Project Settings, Client Keys.`,
        { fingerprints, code: (error as { code?: unknown })?.code ?? null },
      );
    }
    facts.push(['Old key', 'deactivated']);
    outcome.summary = `${written}; leaked key ${old.dsnFingerprint} deactivated`;
  } else {
    const payload: DeactivateSentryKeyPayload = { dsnFingerprint: old.dsnFingerprint };
    facts.push(['Old key', 'deactivation due in 7 days']);
    outcome.summary = `${written}; old key ${old.dsnFingerprint} is deactivated in 7 days`;
    outcome.followUps = [{ kind: DEACTIVATE_SENTRY_KEY_TIMER, delayMs: OLD_KEY_GRACE_MS, payload: { ...payload } }];
  }

  ctx.logger.info(
    {
      incidentId: ctx.incidentId,
      stepId: ctx.stepId,
      reason: ctx.reason,
      newDsnFingerprint: created.dsnFingerprint,
      oldDsnFingerprint: old.dsnFingerprint,
    },
    'sentry dsn rotated',
  );
  return outcome;
}

/**
 * Deactivates the client key whose DSN has fingerprint `dsnFingerprint`, for
 * the `deactivate_sentry_key` timer. A key that is gone or already inactive
 * is reported as done. Refuses to deactivate the key that SENTRY_DSN uses now.
 */
export async function deactivateSentryKey(
  deps: Pick<SentryDsnDeps, 'sentry' | 'store'>,
  ctx: ActionContext,
  dsnFingerprint: string,
): Promise<ActionOutcome> {
  if (!/^[0-9a-f]{8}$/.test(dsnFingerprint)) {
    throw new ActionError(
      'sentry_invalid_input',
      `Sentry key reference is not a DSN fingerprint: expected 8 lowercase hex digits, got ${dsnFingerprint.length} characters. The value is not shown because it may be a key id.`,
    );
  }

  const keys = await deps.sentry.listClientKeys();
  const matches = keys.filter((key) => key.dsnFingerprint === dsnFingerprint);
  if (matches.length > 1) {
    throw new ActionError(
      'sentry_key_ambiguous',
      `${matches.length} client keys have DSN fingerprint ${dsnFingerprint}; deactivate the old one in Sentry by hand.`,
    );
  }

  const key = matches[0];
  if (!key) {
    return {
      summary: `Old Sentry client key ${dsnFingerprint} no longer exists; nothing to deactivate`,
      facts: [['Old key', 'not found in the project']],
    };
  }

  const current = await deps.store.read(SENTRY_DSN_KEY);
  if (current !== undefined && fingerprint(current) === dsnFingerprint) {
    throw new ActionError(
      'sentry_key_in_use',
      `Client key ${dsnFingerprint} is the DSN in ${SENTRY_DSN_KEY} of ${deps.store.name}, so it was not deactivated. Rotate SENTRY_DSN first.`,
    );
  }

  if (!key.isActive) {
    return {
      summary: `Old Sentry client key ${dsnFingerprint} was already inactive`,
      facts: [['Old key', `${key.name} (DSN ${dsnFingerprint}), already inactive`]],
    };
  }

  await deps.sentry.deactivateClientKey(key.id);
  ctx.logger.info(
    { incidentId: ctx.incidentId, stepId: ctx.stepId, dsnFingerprint },
    'sentry key deactivated',
  );
  return {
    summary: `Old Sentry client key ${dsnFingerprint} deactivated`,
    facts: [['Old key', `${key.name} (DSN ${dsnFingerprint}), deactivated`]],
  };
}
