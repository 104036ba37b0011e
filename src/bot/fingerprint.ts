import { createHash } from 'node:crypto';

/** The first 8 hex digits of the SHA-256 of a secret: safe to show and log. */
export function fingerprint(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex').slice(0, 8);
}
