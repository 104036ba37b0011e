import { parseCommandLine } from './command.ts';

export type Env = Readonly<Record<string, string | undefined>>;

/** Returns the trimmed value of a variable, or undefined when it is unset or blank. */
export function present(value: string | undefined): string | undefined {
  return value && value.trim() !== '' ? value.trim() : undefined;
}

/** Parses a command variable into argv, or names the variable to set (with the parse problem, when it is invalid). */
export function commandFrom(env: Env, name: string): { argv?: string[]; missing: string[] } {
  const text = present(env[name]);
  if (!text) return { missing: [name] };
  try {
    return { argv: parseCommandLine(text), missing: [] };
  } catch (error) {
    return { missing: [`${name} (${(error as Error).message})`] };
  }
}
