import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync, fsyncSync } from 'node:fs';
import { join } from 'node:path';

import type { Clock } from '../bot/clock.ts';
import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import {
  backupDirError,
  backupFileName,
  checkBackupDir,
  publishWithoutReplacing,
  removeQuietly,
  tempPathFor,
} from './backup-files.ts';

// File layout, version 1 (all of the header is authenticated as GCM AAD):
//   magic "RBEV" (4) | version 0x01 (1) | key id (4) | IV (12) | ciphertext | GCM tag (16)
// The key id is the first 4 bytes of SHA-256(key), so a restore can tell
// "wrong key" apart from "damaged file" without revealing the key.
const MAGIC = Buffer.from('RBEV', 'ascii');
const VERSION = 1;
const KEY_ID_BYTES = 4;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = MAGIC.length + 1 + KEY_ID_BYTES + IV_BYTES;

export const ENCRYPTION_KEY_VARIABLE = 'BACKUP_ENCRYPTION_KEY';

/**
 * Decodes an AES-256 key given as 64 hex digits or as base64 (standard or
 * URL-safe alphabet) of exactly 32 bytes. The error names the variable and
 * the length it got, never the value.
 */
export function parseEncryptionKey(raw: string, variable = ENCRYPTION_KEY_VARIABLE): Buffer {
  const value = raw.trim();
  if (/^[0-9a-fA-F]{64}$/.test(value)) return Buffer.from(value, 'hex');

  if (/^[A-Za-z0-9+/]{43}=?$/.test(value) || /^[A-Za-z0-9_-]{43}=?$/.test(value)) {
    const key = Buffer.from(value, value.includes('-') || value.includes('_') ? 'base64url' : 'base64');
    if (key.length === 32) return key;
  }

  throw new ActionError(
    'invalid_encryption_key',
    `${variable} is invalid: expected 32 bytes as base64 (44 characters) or as 64 hex digits, ` +
      `got ${value.length} characters; generate one with: openssl rand -base64 32`,
    { variable, length: value.length },
  );
}

function toKey(key: string | Buffer): Buffer {
  if (typeof key === 'string') return parseEncryptionKey(key);
  if (key.length !== 32) {
    throw new ActionError(
      'invalid_encryption_key',
      `${ENCRYPTION_KEY_VARIABLE} is invalid: the key has ${key.length} bytes, AES-256 needs 32`,
      { variable: ENCRYPTION_KEY_VARIABLE, length: key.length },
    );
  }
  return key;
}

/** Short id of a key for messages: 8 hex digits of its SHA-256, safe to show. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, KEY_ID_BYTES * 2);
}

export interface EnvBackup {
  kind: 'env';
  path: string;
  createdAt: number;
  sizeBytes: number;
  sha256: string;
  /** Id of the encryption key (see keyId), to pick the key at restore time. */
  keyId: string;
}

/** Encrypts `plaintext` into the version-1 layout with a fresh random IV. */
export function encryptEnv(plaintext: Buffer, key: Buffer): Buffer {
  const iv = randomBytes(IV_BYTES);
  const header = Buffer.concat([
    MAGIC,
    Buffer.from([VERSION]),
    Buffer.from(keyId(key), 'hex'),
    iv,
  ]);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(header);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, ciphertext, cipher.getAuthTag()]);
}

/**
 * Backs up the `.env` file encrypted with AES-256-GCM into
 * `BACKUP_DIR/env-YYYY-MM-DD-HHMMSS.env.enc` (UTC). The plaintext stays in
 * memory: only ciphertext is written to the backup folder, also under the
 * temporary name.
 */
export async function backupEnvFile(options: {
  envFile: string;
  backupDir: string;
  encryptionKey: string | Buffer;
  clock: Clock;
  logger?: Logger;
}): Promise<EnvBackup> {
  const key = toKey(options.encryptionKey);
  const createdAt = options.clock.now();

  let plaintext: Buffer;
  try {
    plaintext = readFileSync(options.envFile);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ActionError(
      'env_file_unreadable',
      `env file ${options.envFile} cannot be read (${code}); check ENV_FILE and its permissions`,
      { envFile: options.envFile, errno: code },
    );
  }

  let encrypted: Buffer;
  try {
    encrypted = encryptEnv(plaintext, key);
  } finally {
    plaintext.fill(0);
  }
  checkBackupDir(options.backupDir, encrypted.length);

  const finalPath = join(options.backupDir, backupFileName('env', createdAt));
  const tempPath = tempPathFor(finalPath);
  try {
    writeNewFile(tempPath, encrypted);
  } catch (error) {
    removeQuietly(tempPath);
    throw backupDirError(options.backupDir, error);
  }
  try {
    publishWithoutReplacing(tempPath, finalPath);
  } catch (error) {
    removeQuietly(tempPath);
    throw error instanceof ActionError ? error : backupDirError(options.backupDir, error);
  }

  const backup: EnvBackup = {
    kind: 'env',
    path: finalPath,
    createdAt,
    sizeBytes: encrypted.length,
    sha256: createHash('sha256').update(encrypted).digest('hex'),
    keyId: keyId(key),
  };
  options.logger?.info(
    { path: backup.path, sizeBytes: backup.sizeBytes, keyId: backup.keyId },
    'env backup written',
  );
  return backup;
}

function writeNewFile(path: string, data: Buffer): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    let offset = 0;
    while (offset < data.length) offset += writeSync(fd, data, offset);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Checks the layout of an encrypted env backup without the key; returns a reason or undefined. */
export function envBackupLayoutProblem(data: Buffer): string | undefined {
  if (data.length < HEADER_BYTES + TAG_BYTES) {
    return `file is ${data.length} bytes, shorter than the ${HEADER_BYTES + TAG_BYTES}-byte minimum of an encrypted env backup`;
  }
  if (!data.subarray(0, MAGIC.length).equals(MAGIC)) {
    return 'file does not start with the RBEV header of an encrypted env backup';
  }
  if (data[MAGIC.length] !== VERSION) {
    return `env backup format version ${data[MAGIC.length]} is not supported (this build reads version ${VERSION})`;
  }
  return undefined;
}

/**
 * Decrypts an env backup and returns the plaintext; callers should
 * `fill(0)` the buffer when done. Throws ActionError for a missing file, a
 * wrong key or a file that was modified.
 */
export function decryptEnvBackup(path: string, encryptionKey: string | Buffer): Buffer {
  const key = toKey(encryptionKey);

  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new ActionError('env_backup_unreadable', `env backup ${path} cannot be read (${code})`, {
      path,
      errno: code,
    });
  }

  const problem = envBackupLayoutProblem(data);
  if (problem) {
    throw new ActionError('env_backup_invalid', `env backup ${path} is invalid: ${problem}`, { path });
  }

  const header = data.subarray(0, HEADER_BYTES);
  const fileKeyId = header.subarray(MAGIC.length + 1, MAGIC.length + 1 + KEY_ID_BYTES).toString('hex');
  if (fileKeyId !== keyId(key)) {
    throw new ActionError(
      'env_backup_wrong_key',
      `env backup ${path} was encrypted with key ${fileKeyId}, but ${ENCRYPTION_KEY_VARIABLE} is key ${keyId(key)}; ` +
        'set the key that was in use when the backup was made',
      { path, fileKeyId, configuredKeyId: keyId(key) },
    );
  }

  const iv = header.subarray(HEADER_BYTES - IV_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAAD(header);
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  const plaintext = decipher.update(data.subarray(HEADER_BYTES, data.length - TAG_BYTES));
  try {
    const result = Buffer.concat([plaintext, decipher.final()]);
    plaintext.fill(0);
    return result;
  } catch {
    // GCM releases unauthenticated plaintext from update(); wipe it.
    plaintext.fill(0);
    throw new ActionError(
      'env_backup_damaged',
      `env backup ${path} failed authentication: the file was modified or damaged; choose another backup`,
      { path },
    );
  }
}
