import { UserError } from '../bot/errors.ts';
import type { Db } from './db.ts';

export type RotationSource = 'bot' | 'outside';

export interface NewRotation {
  secretName: string;
  /** Milliseconds since the Unix epoch. */
  rotatedAt: number;
  /** `bot` when the bot rotated the secret, `outside` when a person reported a rotation done elsewhere. */
  source: RotationSource;
  incidentId?: number;
  /** Slack user id of the responder, or `scheduler` for scheduled work. */
  actor: string;
  /** Fingerprint of the new value (first 8 hex digits of its SHA-256), never the value. */
  fingerprint?: string;
}

export interface RotationRow {
  id: number;
  secretName: string;
  rotatedAt: number;
  source: RotationSource;
  incidentId: number | null;
  actor: string;
  fingerprint: string | null;
}

interface RotationRecord {
  id: number;
  secret_name: string;
  rotated_at: number;
  source: RotationSource;
  incident_id: number | null;
  actor: string;
  fingerprint: string | null;
}

const SECRET_NAME = /^[A-Z][A-Z0-9_]*$/;
const FINGERPRINT = /^[0-9a-f]{8}$/;

function toRotation(record: RotationRecord): RotationRow {
  return {
    id: record.id,
    secretName: record.secret_name,
    rotatedAt: record.rotated_at,
    source: record.source,
    incidentId: record.incident_id,
    actor: record.actor,
    fingerprint: record.fingerprint,
  };
}

function validateRotation(rotation: NewRotation): void {
  if (!SECRET_NAME.test(rotation.secretName)) {
    throw new UserError(
      'invalid_input',
      `secret name "${rotation.secretName}" is invalid; use the variable name, for example DJANGO_SECRET_KEY`,
    );
  }
  if (!Number.isSafeInteger(rotation.rotatedAt) || rotation.rotatedAt <= 0) {
    throw new UserError(
      'invalid_input',
      `rotation time ${rotation.rotatedAt} is invalid; pass milliseconds since the Unix epoch`,
    );
  }
  if (rotation.source !== 'bot' && rotation.source !== 'outside') {
    throw new UserError(
      'invalid_input',
      `rotation source "${String(rotation.source)}" is invalid; use bot or outside`,
    );
  }
  if (rotation.actor.trim() === '') {
    throw new UserError('invalid_input', 'rotation actor is empty; pass the Slack user id or "scheduler"');
  }
  // A full secret passed by mistake must not reach SQLite, so only the
  // 8-digit fingerprint shape is accepted.
  if (rotation.fingerprint !== undefined && !FINGERPRINT.test(rotation.fingerprint)) {
    throw new UserError(
      'invalid_input',
      'rotation fingerprint must be 8 lowercase hex digits; pass fingerprint(newValue), never the value',
    );
  }
}

/** Appends one rotation to the history and returns its id. */
export function recordRotation(db: Db, rotation: NewRotation): number {
  validateRotation(rotation);

  const result = db
    .prepare(
      `INSERT INTO rotations (secret_name, rotated_at, source, incident_id, actor, fingerprint)
       VALUES (?, ?, ?, ?, ?, ?)`,
    )
    .run(
      rotation.secretName,
      rotation.rotatedAt,
      rotation.source,
      rotation.incidentId ?? null,
      rotation.actor,
      rotation.fingerprint ?? null,
    );
  return Number(result.lastInsertRowid);
}

/** Finds the newest rotation of a secret; undefined when none is recorded. */
export function lastRotation(db: Db, secretName: string): RotationRow | undefined {
  const record = db
    .prepare(
      'SELECT * FROM rotations WHERE secret_name = ? ORDER BY rotated_at DESC, id DESC LIMIT 1',
    )
    .get(secretName) as RotationRecord | undefined;
  return record ? toRotation(record) : undefined;
}

/** Rotations of a secret, newest first, at most `limit` rows. */
export function rotationHistory(db: Db, secretName: string, limit: number): RotationRow[] {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new UserError('invalid_input', `history limit ${limit} is invalid; pass a positive integer`);
  }

  const records = db
    .prepare(
      'SELECT * FROM rotations WHERE secret_name = ? ORDER BY rotated_at DESC, id DESC LIMIT ?',
    )
    .all(secretName, limit) as RotationRecord[];
  return records.map(toRotation);
}
