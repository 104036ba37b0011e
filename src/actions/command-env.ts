import { SECRET_ENV_NAME } from './command.ts';

/**
 * Environment for a command: the bot's own, without variables whose names
 * look secret (SECRET_ENV_NAME), plus `extra`, which may set any name.
 */
export function commandEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!SECRET_ENV_NAME.test(name)) env[name] = value;
  }
  return { ...env, ...extra };
}
