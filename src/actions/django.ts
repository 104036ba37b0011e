import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { inflateSync } from 'node:zlib';

import Database from 'better-sqlite3';

import { ActionError } from '../bot/errors.ts';
import { fingerprint } from '../bot/fingerprint.ts';
import type { Logger } from '../bot/logger.ts';
import { registerSecret } from '../bot/redact.ts';
import { describeCommandResult, runCommand } from './command.ts';
import { waitForHealth } from './health.ts';
import type { SecretStore } from './secrets/store.ts';
import type { ActionContext, ActionOutcome } from './types.ts';

/** The alphabet of django.core.management.utils.get_random_secret_key (Django 4.2). */
export const DJANGO_KEY_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)';
export const DJANGO_KEY_LENGTH = 50;

export const SECRET_KEY_NAME = 'DJANGO_SECRET_KEY';
export const FALLBACKS_NAME = 'DJANGO_SECRET_KEY_FALLBACKS';

export const DEFAULT_FALLBACK_HOURS = 24;
export const MAX_FALLBACK_HOURS = 48;
export const DEFAULT_RESTART_TIMEOUT_MS = 120_000;
export const DEFAULT_HEALTH_TIMEOUT_MS = 60_000;

const HOUR_MS = 3_600_000;

export interface RotationDeps {
  store: SecretStore;
  /** Command that restarts the app so it reads the new settings. */
  restart?: string[];
  /** URL that returns 2xx once the restarted app serves requests. */
  healthUrl?: string;
  /** How long a periodic rotation keeps the old key as a fallback; default 24, at most 48. */
  fallbackHours?: number;
  restartTimeoutMs?: number;
  /** Time the restarted app has to return 2xx from the health URL. */
  healthTimeoutMs?: number;
  logger: Logger;
}

export interface DjangoDatabaseDeps {
  /** Path of Django's SQLite database. Its journal mode is left as it is. */
  databasePath: string;
  /** Table of the user model; default `auth_user`. */
  userTable?: string;
}

export interface InvalidateSessionsOutcome extends ActionOutcome {
  deleted: number;
}

export interface LockAccountsOutcome extends ActionOutcome {
  /** Usernames of accounts that were active and are now locked. */
  locked: string[];
  /** Usernames of matched accounts that were already inactive. */
  alreadyInactive: string[];
  /** Identifiers that matched no account. */
  notFound: string[];
  sessionsDeleted: number;
  /** Session rows whose data could not be decoded, so their owner is unknown; they are kept. */
  sessionsUnreadable: number;
}

export const MAX_IDENTIFIERS = 100;
const MAX_IDENTIFIER_LENGTH = 254;
const IDENTIFIER = /^[\p{L}\p{N}@.+_'-]+$/u;
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Generates a key like Django's get_random_secret_key: 50 characters from its alphabet. */
export function generateDjangoSecretKey(): string {
  let key = '';
  for (let index = 0; index < DJANGO_KEY_LENGTH; index++) {
    key += DJANGO_KEY_ALPHABET[randomInt(DJANGO_KEY_ALPHABET.length)];
  }
  return key;
}

export interface RotateSecretKeyOptions {
  /**
   * Removes every key in DJANGO_SECRET_KEY_FALLBACKS as well, for a person
   * who could read the whole secret store (a leaver), not only the current key.
   */
  dropAllFallbacks?: boolean;
}

/**
 * Writes a new DJANGO_SECRET_KEY, restarts the app and checks its health.
 *
 * A periodic rotation puts the old key first in DJANGO_SECRET_KEY_FALLBACKS,
 * so sessions signed with it stay valid, and returns a `remove_fallback`
 * follow-up timer. An incident rotation keeps no fallback and removes the
 * leaked key from the fallbacks too, because anyone holding it could still
 * sign sessions. Older fallback keys stay unless `dropAllFallbacks` is set.
 * A failure after the write throws ActionError whose message states that the
 * new key stays written.
 */
export async function rotateSecretKey(
  deps: RotationDeps,
  ctx: ActionContext,
  options: RotateSecretKeyOptions = {},
): Promise<ActionOutcome> {
  const started = performance.now();
  const fallbackHours = checkFallbackHours(deps.fallbackHours);
  const logger = deps.logger.child({
    incidentId: ctx.incidentId,
    stepId: ctx.stepId,
    action: 'rotate_secret_key',
  });

  const oldKey = nonEmpty(await deps.store.read(SECRET_KEY_NAME));
  registerSecret(oldKey);
  const fallbacksText = await deps.store.read(FALLBACKS_NAME);
  const fallbacks = splitFallbacks(fallbacksText);
  fallbacks.forEach(registerSecret);

  const oldFingerprint = oldKey === undefined ? undefined : fingerprint(oldKey);
  const keepOldKey = ctx.reason === 'periodic' && oldKey !== undefined;
  if (keepOldKey && oldKey.includes(',')) {
    throw new ActionError(
      'secret_key_unsupported',
      `the current ${SECRET_KEY_NAME} (fingerprint ${oldFingerprint}) contains a comma, so it cannot be kept ` +
        `in the comma-separated ${FALLBACKS_NAME}; nothing was changed. Rotate it as an incident instead`,
    );
  }

  const newKey = generateDjangoSecretKey();
  registerSecret(newKey);
  const newFingerprint = fingerprint(newKey);
  const others = fallbacks.filter((key) => key !== oldKey);
  const keptOlderKeys = options.dropAllFallbacks ? [] : others;
  const nextFallbacks = keepOldKey ? [oldKey, ...keptOlderKeys] : keptOlderKeys;

  await deps.store.write({
    [SECRET_KEY_NAME]: newKey,
    [FALLBACKS_NAME]: formatFallbacks(nextFallbacks, fallbacksText),
  });
  logger.info(
    {
      fingerprint: newFingerprint,
      oldFingerprint,
      reason: ctx.reason,
      fallbackCount: nextFallbacks.length,
    },
    'secret key written',
  );

  const applied = await applySettings(deps, logger, {
    written: `new key ${newFingerprint} stays written to ${deps.store.name}`,
    fingerprints: { [SECRET_KEY_NAME]: newFingerprint },
  });

  const oldKeyFact = describeOldKey(ctx.reason, oldFingerprint, fallbacks.length > others.length, fallbackHours);
  const droppedFacts: Array<[string, string]> =
    keptOlderKeys.length < others.length ? [['Older fallback keys removed', describeFingerprints(others)]] : [];
  const facts: Array<[string, string]> = [
    ['Secret store', deps.store.name],
    ['New key', newFingerprint],
    ['Old key', oldKeyFact],
    ['Fallback keys', describeFingerprints(nextFallbacks)],
    ...droppedFacts,
    ...applied.facts,
    ['Duration', formatDuration(performance.now() - started)],
  ];

  const outcome: ActionOutcome = {
    summary: `New key ${newFingerprint} written; ${oldKeyFact}; ${applied.summary}`,
    facts,
    fingerprints: { [SECRET_KEY_NAME]: newFingerprint },
    rotated: [SECRET_KEY_NAME],
  };
  if (keepOldKey) {
    outcome.followUps = [
      {
        kind: 'remove_fallback',
        delayMs: fallbackHours * HOUR_MS,
        payload: { fingerprint: oldFingerprint },
      },
    ];
  }
  return outcome;
}

/**
 * Removes the fallback key whose fingerprint is `keyFingerprint`, then
 * restarts the app and checks its health. A fallback that is already gone
 * changes nothing and is not an error, because an incident rotation may have
 * removed it before the follow-up timer fired.
 */
export async function removeFallback(
  deps: RotationDeps,
  ctx: ActionContext,
  keyFingerprint: string,
): Promise<ActionOutcome> {
  const started = performance.now();
  if (!/^[0-9a-f]{8}$/.test(keyFingerprint)) {
    throw new ActionError(
      'invalid_fingerprint',
      `invalid key fingerprint ${JSON.stringify(keyFingerprint)}: expected 8 lowercase hex digits`,
    );
  }
  const logger = deps.logger.child({
    incidentId: ctx.incidentId,
    stepId: ctx.stepId,
    action: 'remove_fallback',
  });

  const fallbacksText = await deps.store.read(FALLBACKS_NAME);
  const fallbacks = splitFallbacks(fallbacksText);
  fallbacks.forEach(registerSecret);
  const remaining = fallbacks.filter((key) => fingerprint(key) !== keyFingerprint);

  if (remaining.length === fallbacks.length) {
    return {
      summary: `No fallback key ${keyFingerprint} is configured, so nothing was changed`,
      facts: [
        ['Secret store', deps.store.name],
        ['Fallback keys', describeFingerprints(fallbacks)],
      ],
    };
  }

  await deps.store.write({ [FALLBACKS_NAME]: formatFallbacks(remaining, fallbacksText) });
  logger.info({ fingerprint: keyFingerprint, fallbackCount: remaining.length }, 'fallback key removed');

  const applied = await applySettings(deps, logger, {
    written: `fallback key ${keyFingerprint} stays removed from ${deps.store.name}`,
    fingerprints: {},
  });

  return {
    summary: `Fallback key ${keyFingerprint} removed; ${applied.summary}`,
    facts: [
      ['Secret store', deps.store.name],
      ['Removed fallback key', keyFingerprint],
      ['Fallback keys', describeFingerprints(remaining)],
      ...applied.facts,
      ['Duration', formatDuration(performance.now() - started)],
    ],
  };
}

/** Runs the restart command and the health check, throwing ActionError on the first failure. */
async function applySettings(
  deps: RotationDeps,
  logger: Logger,
  written: { written: string; fingerprints: Record<string, string> },
): Promise<{ summary: string; facts: Array<[string, string]> }> {
  const facts: Array<[string, string]> = [];
  const done: string[] = [];

  if (deps.restart === undefined) {
    facts.push(['Restart', 'not configured']);
    done.push('no restart command is configured, so restart the app yourself to load the change');
  } else {
    const timeoutMs = deps.restartTimeoutMs ?? DEFAULT_RESTART_TIMEOUT_MS;
    const result = await runCommand(deps.restart, { timeoutMs, logger });
    const ended = describeCommandResult(result, timeoutMs);

    if (result.timedOut || result.exitCode !== 0) {
      const output = result.output.trim();
      const shownOutput = output === '' ? 'no output' : `output: ${output.slice(-1500)}`;
      throw new ActionError(
        result.timedOut ? 'restart_timed_out' : 'restart_failed',
        `${capitalize(written.written)}, but the restart command ${ended}, so the app may still ` +
          `run with the previous settings; fix the restart and run it by hand (${shownOutput})`,
        {
          fingerprints: written.fingerprints,
          exitCode: result.exitCode,
          signal: result.signal,
          timedOut: result.timedOut,
          durationMs: result.durationMs,
          output: result.output,
        },
      );
    }
    facts.push(['Restart', `exit 0 in ${formatDuration(result.durationMs)}`]);
    done.push('restart passed');
  }

  if (deps.healthUrl === undefined) {
    facts.push(['Health check', 'not configured']);
  } else {
    const timeoutMs = deps.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
    const health = await waitForHealth(deps.healthUrl, { timeoutMs });
    if (!health.ok) {
      logger.warn({ status: health.status, attempts: health.attempts }, 'health check failed');
      throw new ActionError(
        'health_check_failed',
        `${capitalize(written.written)}, but the health check failed after ${health.attempts} attempts ` +
          `in ${formatDuration(health.durationMs)}: ${health.error}`,
        { fingerprints: written.fingerprints, status: health.status, attempts: health.attempts },
      );
    }
    facts.push(['Health check', `${health.status} in ${health.durationMs} ms`]);
    done.push('health check passed');
  }

  return { summary: done.join('; '), facts };
}

/**
 * Deletes every row of django_session in one transaction, which logs every
 * user out. The database's journal mode is not changed.
 */
export async function invalidateSessions(
  deps: DjangoDatabaseDeps,
  ctx: ActionContext,
): Promise<InvalidateSessionsOutcome> {
  const deleted = withDjangoDatabase(deps.databasePath, (db) => {
    requireTable(db, deps.databasePath, 'django_session');
    return db
      .transaction(() => db.prepare('DELETE FROM django_session').run().changes)
      .immediate();
  });

  ctx.logger.info(
    { incidentId: ctx.incidentId, stepId: ctx.stepId, action: 'invalidate_sessions', deleted },
    'sessions deleted',
  );
  return {
    summary: `Deleted ${plural(deleted, 'session')}; every user must log in again`,
    facts: [
      ['Database', deps.databasePath],
      ['Sessions deleted', String(deleted)],
    ],
    deleted,
  };
}

/** Splits modal text into identifiers: commas, semicolons and whitespace separate them. */
export function parseIdentifiers(text: string): string[] {
  return text.split(/[\s,;]+/u).filter((item) => item !== '');
}

/**
 * Locks the accounts named by username (exact) or e-mail address (any case):
 * sets is_active = 0 and deletes their sessions, all in one transaction.
 * Throws ActionError `invalid_input` for a bad list, before opening the database.
 */
export async function lockAccounts(
  deps: DjangoDatabaseDeps,
  ctx: ActionContext,
  identifiers: string[],
): Promise<LockAccountsOutcome> {
  const requested = checkIdentifiers(identifiers);
  const userTable = deps.userTable ?? 'auth_user';
  if (!TABLE_NAME.test(userTable)) {
    throw new ActionError('invalid_input', `invalid user table name ${JSON.stringify(userTable)}`);
  }

  const result = withDjangoDatabase(deps.databasePath, (db) => {
    requireTable(db, deps.databasePath, userTable);
    requireTable(db, deps.databasePath, 'django_session');
    db.function('runbook_casefold', { deterministic: true }, (value: unknown) =>
      typeof value === 'string' ? value.toLowerCase() : value,
    );
    return db.transaction(() => lockInTransaction(db, userTable, requested)).immediate();
  });

  ctx.logger.info(
    {
      incidentId: ctx.incidentId,
      stepId: ctx.stepId,
      action: 'lock_accounts',
      locked: result.locked.length,
      alreadyInactive: result.alreadyInactive.length,
      notFound: result.notFound.length,
      sessionsDeleted: result.sessionsDeleted,
    },
    'accounts locked',
  );

  const facts: Array<[string, string]> = [
    ['Locked', listOrNone(result.locked)],
    ['Already inactive', listOrNone(result.alreadyInactive)],
    ['Not found', listOrNone(result.notFound)],
    ['Sessions deleted', String(result.sessionsDeleted)],
  ];
  if (result.sessionsUnreadable > 0) {
    facts.push(['Sessions not readable (kept)', String(result.sessionsUnreadable)]);
  }

  return {
    summary:
      `Locked ${plural(result.locked.length, 'account')}, ${result.alreadyInactive.length} already inactive, ` +
      `${result.notFound.length} not found; ${plural(result.sessionsDeleted, 'session')} deleted`,
    facts,
    ...result,
  };
}

interface LockResult {
  locked: string[];
  alreadyInactive: string[];
  notFound: string[];
  sessionsDeleted: number;
  sessionsUnreadable: number;
}

function lockInTransaction(db: Database.Database, userTable: string, identifiers: string[]): LockResult {
  const findUsers = db.prepare<[string, string], { id: number; username: string; is_active: number }>(
    `SELECT id, username, is_active FROM "${userTable}"
     WHERE username = ? OR (email <> '' AND runbook_casefold(email) = ?)
     ORDER BY id`,
  );
  const lock = db.prepare<[number]>(`UPDATE "${userTable}" SET is_active = 0 WHERE id = ?`);

  const matched = new Map<number, { username: string; wasActive: boolean }>();
  const notFound: string[] = [];
  for (const identifier of identifiers) {
    const users = findUsers.all(identifier, identifier.toLowerCase());
    if (users.length === 0) notFound.push(identifier);
    for (const user of users) {
      if (!matched.has(user.id)) matched.set(user.id, { username: user.username, wasActive: user.is_active !== 0 });
    }
  }

  for (const [id, user] of matched) {
    if (user.wasActive) lock.run(id);
  }

  const sessions = deleteUserSessions(db, new Set([...matched.keys()].map(String)));
  const accounts = [...matched.values()];
  return {
    locked: accounts.filter((user) => user.wasActive).map((user) => user.username),
    alreadyInactive: accounts.filter((user) => !user.wasActive).map((user) => user.username),
    notFound,
    sessionsDeleted: sessions.deleted,
    sessionsUnreadable: sessions.unreadable,
  };
}

/** Deletes the session rows whose decoded `_auth_user_id` is one of `userIds`. */
function deleteUserSessions(
  db: Database.Database,
  userIds: Set<string>,
): { deleted: number; unreadable: number } {
  if (userIds.size === 0) return { deleted: 0, unreadable: 0 };

  const rows = db
    .prepare<[], { session_key: string; session_data: string }>(
      'SELECT session_key, session_data FROM django_session',
    )
    .all();
  const remove = db.prepare<[string]>('DELETE FROM django_session WHERE session_key = ?');

  let deleted = 0;
  let unreadable = 0;
  for (const row of rows) {
    const userId = sessionUserId(row.session_data);
    if (userId === null) unreadable++;
    else if (userId !== undefined && userIds.has(userId)) deleted += remove.run(row.session_key).changes;
  }
  return { deleted, unreadable };
}

/**
 * Reads `_auth_user_id` from Django's stored session data without checking
 * its signature. Django 4.x stores `signing.dumps(session, compress=True)`:
 * `<payload>:<timestamp>:<signature>`, where the payload is URL-safe base64
 * of the JSON, zlib-compressed and prefixed with "." when that is shorter.
 * Returns undefined for an anonymous session and null when the data cannot
 * be decoded (for example the pre-3.1 format or another serializer).
 */
export function sessionUserId(sessionData: string): string | undefined | null {
  const parts = sessionData.split(':');
  if (parts.length < 3) return null;

  try {
    const compressed = parts[0].startsWith('.');
    const bytes = Buffer.from(compressed ? parts[0].slice(1) : parts[0], 'base64url');
    const json = compressed ? inflateSync(bytes, { maxOutputLength: 1 << 20 }) : bytes;
    const session = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
    const userId = session._auth_user_id;
    if (userId === undefined) return undefined;
    return typeof userId === 'string' || typeof userId === 'number' ? String(userId) : null;
  } catch {
    return null;
  }
}

function checkIdentifiers(identifiers: string[]): string[] {
  if (!Array.isArray(identifiers)) {
    throw new ActionError('invalid_input', 'expected a list of usernames or e-mail addresses');
  }

  const unique = [...new Set(identifiers.map((item) => String(item).trim()).filter((item) => item !== ''))];
  if (unique.length === 0) {
    throw new ActionError(
      'invalid_input',
      'no usernames or e-mail addresses were given; enter at least one, separated by commas or new lines',
    );
  }
  if (unique.length > MAX_IDENTIFIERS) {
    throw new ActionError(
      'invalid_input',
      `${unique.length} accounts were given, but at most ${MAX_IDENTIFIERS} can be locked in one run; split the list`,
      { count: unique.length },
    );
  }

  const invalid = unique.filter((item) => item.length > MAX_IDENTIFIER_LENGTH || !IDENTIFIER.test(item));
  if (invalid.length > 0) {
    const shown = invalid.slice(0, 5).map((item) => JSON.stringify(item.slice(0, 60))).join(', ');
    throw new ActionError(
      'invalid_input',
      `invalid username or e-mail address: ${shown}; use letters, digits and @ . + - _ ' only, ` +
        `at most ${MAX_IDENTIFIER_LENGTH} characters each`,
      { invalid: invalid.slice(0, 20) },
    );
  }
  return unique;
}

/** Opens Django's database without changing its journal mode, runs `fn` and closes it. */
function withDjangoDatabase<T>(path: string, fn: (db: Database.Database) => T): T {
  let db: Database.Database;
  try {
    db = new Database(path, { fileMustExist: true, timeout: 5000 });
  } catch (error) {
    throw databaseError(path, error);
  }

  try {
    return fn(db);
  } catch (error) {
    if (error instanceof ActionError) throw error;
    throw databaseError(path, error);
  } finally {
    db.close();
  }
}

function requireTable(db: Database.Database, path: string, table: string): void {
  const found = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table);
  if (found === undefined) {
    throw new ActionError(
      'django_table_missing',
      `the Django database ${path} has no ${table} table, so nothing was changed; ` +
        'check DJANGO_DATABASE_PATH and that migrations have run',
      { path, table },
    );
  }
}

function databaseError(path: string, error: unknown): ActionError {
  const code = (error as { code?: string }).code ?? '';
  const message = (error as Error).message;

  if (code === 'SQLITE_BUSY') {
    return new ActionError(
      'django_database_busy',
      `the Django database ${path} stayed locked by another writer for 5 s, so nothing was changed; run the action again`,
      { path },
    );
  }
  if (code.startsWith('SQLITE_READONLY')) {
    return new ActionError(
      'django_database_readonly',
      `the Django database ${path} is read-only for this process, so nothing was changed; give the bot write access`,
      { path },
    );
  }
  if (code === 'SQLITE_CANTOPEN' || /does not exist|unable to open/i.test(message)) {
    return new ActionError(
      'django_database_not_found',
      `cannot open the Django database ${path}; check DJANGO_DATABASE_PATH`,
      { path },
    );
  }
  return new ActionError(
    'django_database_failed',
    `the Django database ${path} failed: ${message}; nothing was changed`,
    { path, sqliteCode: code },
  );
}

function checkFallbackHours(hours: number | undefined): number {
  const value = hours ?? DEFAULT_FALLBACK_HOURS;
  if (!Number.isFinite(value) || value <= 0 || value > MAX_FALLBACK_HOURS) {
    throw new ActionError(
      'invalid_fallback_hours',
      `invalid fallback period ${hours} h: use more than 0 and at most ${MAX_FALLBACK_HOURS} hours; nothing was changed`,
    );
  }
  return value;
}

function splitFallbacks(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((key) => key.trim())
    .filter((key) => key !== '');
}

/** Joins the list; an empty list deletes a key that did not exist and empties one that did. */
function formatFallbacks(keys: string[], previous: string | undefined): string | null {
  if (keys.length > 0) return keys.join(',');
  return previous === undefined ? null : '';
}

function describeOldKey(
  reason: ActionContext['reason'],
  oldFingerprint: string | undefined,
  removedFromFallbacks: boolean,
  fallbackHours: number,
): string {
  if (oldFingerprint === undefined) return 'there was no old key, so no fallback is kept';
  if (reason === 'periodic') return `old key ${oldFingerprint} kept as a fallback for ${fallbackHours} h`;
  const alsoRemoved = removedFromFallbacks ? ' and removed from the fallbacks' : '';
  return `leaked key ${oldFingerprint} not kept as a fallback${alsoRemoved}`;
}

function describeFingerprints(keys: string[]): string {
  return keys.length === 0 ? 'none' : keys.map(fingerprint).join(', ');
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}

function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function listOrNone(items: string[]): string {
  return items.length === 0 ? 'none' : items.join(', ');
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
