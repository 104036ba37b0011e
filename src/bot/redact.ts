/**
 * The one list of what must never leave the bot: the field names that pino
 * redacts and Sentry scrubs, and a scrubber for free text such as command
 * output and error messages.
 */
export const SECRET_FIELD_NAMES = [
  'token',
  'botToken',
  'appToken',
  'signingSecret',
  'secret',
  'password',
  'authorization',
  'Authorization',
  'routing_key',
  'routingKey',
  'dsn',
  'secretKey',
  'value',
  'body',
  'rawBody',
  'cookie',
  'x-vault-token',
  'X-Vault-Token',
] as const;

/** pino `redact.paths`: each secret field at the top level and one level down. */
export const LOG_REDACT_PATHS = SECRET_FIELD_NAMES.flatMap((name) => {
  const key = /^[A-Za-z_$][\w$]*$/.test(name) ? name : `["${name}"]`;
  const dotted = key.startsWith('[') ? key : `.${key}`;
  return [key, `*${dotted}`];
});

const TOKEN_PATTERNS: RegExp[] = [
  /xox[abposr]-[A-Za-z0-9-]+/g, // Slack bot, user and legacy tokens
  /xapp-[A-Za-z0-9-]+/g, // Slack app-level tokens
  /https?:\/\/[0-9a-f]{16,}(?::[0-9a-f]+)?@[^\s"']+/gi, // Sentry DSNs with their keys
  /hvs\.[A-Za-z0-9_-]{20,}/g, // Vault service tokens
];

/** Secret values known at run time (generated keys, configured tokens). */
const knownSecrets = new Set<string>();

/** Registers a value that scrubbers must remove wherever it appears. */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 8) knownSecrets.add(value);
}

/** Replaces every registered secret and every token-shaped string with a marker. */
export function scrubText(text: string): string {
  let scrubbed = text;
  for (const secret of knownSecrets) {
    if (scrubbed.includes(secret)) scrubbed = scrubbed.split(secret).join('[REDACTED]');
  }
  for (const pattern of TOKEN_PATTERNS) scrubbed = scrubbed.replace(pattern, '[REDACTED]');
  return scrubbed;
}

/** Deep copy of `value` with secret fields removed and strings scrubbed. */
export function scrubValue<T>(value: T, depth = 0): T {
  if (depth > 8) return '[TRUNCATED]' as T;
  if (typeof value === 'string') return scrubText(value) as T;
  if (Array.isArray(value)) return value.map((item) => scrubValue(item, depth + 1)) as T;
  if (value && typeof value === 'object') {
    const copy: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      copy[key] = isSecretField(key) ? '[REDACTED]' : scrubValue(item, depth + 1);
    }
    return copy as T;
  }
  return value;
}

const secretFieldSet = new Set(SECRET_FIELD_NAMES.map((name) => name.toLowerCase()));

export function isSecretField(name: string): boolean {
  return secretFieldSet.has(name.toLowerCase());
}
