import { spawn } from 'node:child_process';
import { accessSync, constants, statSync, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import { scrubText } from '../bot/redact.ts';

export interface CommandOptions {
  /** Time after which the whole process group gets SIGTERM, then SIGKILL. */
  timeoutMs: number;
  cwd?: string;
  /**
   * The complete environment of the command. Without it the command gets the
   * bot's environment minus variables whose names look secret (see
   * SECRET_ENV_NAME), so a restart script cannot read the bot's tokens.
   */
  env?: NodeJS.ProcessEnv;
  logger: Logger;
  /** Time between SIGTERM and SIGKILL after a timeout; default 2000 ms. */
  killGraceMs?: number;
  /** Bytes of combined output kept, the last ones; default MAX_COMMAND_OUTPUT_BYTES. */
  maxOutputBytes?: number;
}

export interface CommandResult {
  /** Exit status, or null when a signal ended the process. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  durationMs: number;
  /** Combined stdout and stderr, the last maxOutputBytes, with secrets scrubbed. */
  output: string;
  /** True when earlier output was dropped to respect maxOutputBytes. */
  truncated: boolean;
}

export const MAX_COMMAND_OUTPUT_BYTES = 64 * 1024;

const DEFAULT_KILL_GRACE_MS = 2000;
/** How long to wait for the output pipes to close once the command has exited. */
const PIPE_CLOSE_WAIT_MS = 500;

/** Variable names left out of a command's inherited environment. */
export const SECRET_ENV_NAME = /TOKEN|SECRET|PASSWORD|PASSWD|DSN|CREDENTIAL|(^|_)KEY($|_)/i;

/**
 * Runs a program without a shell in its own process group. On timeout the
 * group gets SIGTERM, then SIGKILL after the grace period. Resolves for any
 * exit status; throws ActionError `command_invalid` for a bad argv and
 * `command_not_started` when the program cannot be started.
 */
export function runCommand(argv: string[], options: CommandOptions): Promise<CommandResult> {
  checkArgv(argv);
  if (!Number.isFinite(options.timeoutMs) || options.timeoutMs <= 0) {
    throw new ActionError(
      'command_invalid',
      `invalid command timeout ${options.timeoutMs} ms: use a positive number of milliseconds`,
    );
  }

  const logger = options.logger;
  const program = scrubText(argv[0]);
  const maxBytes = options.maxOutputBytes ?? MAX_COMMAND_OUTPUT_BYTES;
  const graceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const started = performance.now();

  logger.info({ program, argCount: argv.length - 1 }, 'command started');

  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: options.cwd,
      env: options.env ?? inheritedEnv(),
      detached: true,
      shell: false,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output = new OutputTail(maxBytes);
    let timedOut = false;
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;

    const killGroup = (signal: NodeJS.Signals) => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // ESRCH: the whole group has already exited.
      }
    };

    const timeoutTimer = setTimeout(() => {
      timedOut = true;
      logger.warn({ program, timeoutMs: options.timeoutMs }, 'command timed out');
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), graceMs);
      killTimer.unref();
    }, options.timeoutMs);

    child.stdout.on('data', (chunk: Buffer) => output.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk));

    child.once('error', (error: NodeJS.ErrnoException) => {
      if (settled) return;
      settled = true;
      clearTimeout(timeoutTimer);
      logger.warn({ program, errno: error.code }, 'command failed to start');
      reject(
        new ActionError(
          'command_not_started',
          `cannot start ${program}: ${startFailureReason(error)}; check the configured command`,
          { program, errno: error.code },
        ),
      );
    });

    child.once('exit', (exitCode, signal) => {
      clearTimeout(timeoutTimer);

      // A background process that inherited the pipes can keep them open long
      // after the command exited, so wait for them only briefly.
      const finish = () => {
        if (settled) return;
        settled = true;
        child.stdout.destroy();
        child.stderr.destroy();

        const result: CommandResult = {
          exitCode,
          signal,
          timedOut,
          durationMs: Math.round(performance.now() - started),
          ...output.text(),
        };
        logger.info(
          { program, exitCode, signal, timedOut, durationMs: result.durationMs },
          'command finished',
        );
        resolve(result);
      };
      const pipeTimer = setTimeout(finish, PIPE_CLOSE_WAIT_MS);
      child.once('close', () => {
        clearTimeout(pipeTimer);
        finish();
      });
    });
  });
}

/** Describes how a command ended, for messages: "exited with status 3". */
export function describeCommandResult(result: CommandResult, timeoutMs?: number): string {
  if (result.timedOut) {
    const limit = timeoutMs === undefined ? '' : ` after ${timeoutMs} ms`;
    return `timed out${limit} and was stopped`;
  }
  if (result.signal) return `was ended by ${result.signal}`;
  return `exited with status ${result.exitCode}`;
}

/**
 * Turns a configured command into argv: a JSON array of strings, or words
 * split on spaces with shell-style quotes ('literal', "with \" escapes") and
 * backslash escapes. Nothing is expanded, so shell operators and `$` are
 * rejected instead of being passed on literally.
 */
export function parseCommandLine(text: string): string[] {
  const trimmed = text.trim();
  if (trimmed === '') {
    throw invalidCommand(text, 'the command is empty; set a program and its arguments');
  }
  if (trimmed.startsWith('[')) return parseJsonArgv(trimmed);
  return splitWords(trimmed);
}

function parseJsonArgv(text: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw invalidCommand(text, `it starts with [ but is not valid JSON (${(error as Error).message})`);
  }

  const valid =
    Array.isArray(parsed) &&
    parsed.length > 0 &&
    parsed.every((item) => typeof item === 'string') &&
    parsed[0] !== '';
  if (!valid) {
    throw invalidCommand(text, 'a JSON command must be a non-empty array of strings');
  }
  return parsed as string[];
}

const SHELL_OPERATORS = new Set(['|', '&', ';', '<', '>', '(', ')', '`']);

function splitWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let index = 0;

  while (index < text.length) {
    const char = text[index];

    if (char === ' ' || char === '\t' || char === '\n' || char === '\r') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      index++;
    } else if (char === "'") {
      const close = text.indexOf("'", index + 1);
      if (close < 0) throw invalidCommand(text, `the single quote at position ${index + 1} is not closed`);
      word += text.slice(index + 1, close);
      inWord = true;
      index = close + 1;
    } else if (char === '"') {
      const { value, end } = readDoubleQuoted(text, index);
      word += value;
      inWord = true;
      index = end;
    } else if (char === '\\') {
      if (index + 1 >= text.length) throw invalidCommand(text, 'it ends with a backslash');
      word += text[index + 1];
      inWord = true;
      index += 2;
    } else if (SHELL_OPERATORS.has(char) || char === '$') {
      throw invalidCommand(
        text,
        `it contains ${char} at position ${index + 1}, but the command runs without a shell; ` +
          'quote the character, or run a shell explicitly: ["/bin/sh", "-c", "..."]',
      );
    } else {
      word += char;
      inWord = true;
      index++;
    }
  }

  if (inWord) words.push(word);
  return words;
}

function readDoubleQuoted(text: string, open: number): { value: string; end: number } {
  let value = '';
  let index = open + 1;
  while (index < text.length) {
    const char = text[index];
    if (char === '"') return { value, end: index + 1 };
    if (char === '\\' && index + 1 < text.length && '"\\$`'.includes(text[index + 1])) {
      value += text[index + 1];
      index += 2;
      continue;
    }
    if (char === '$' || char === '`') {
      throw invalidCommand(
        text,
        `it contains ${char} at position ${index + 1} inside double quotes, but nothing is expanded; ` +
          'escape it as \\' + char + ' or use single quotes',
      );
    }
    value += char;
    index++;
  }
  throw invalidCommand(text, `the double quote at position ${open + 1} is not closed`);
}

function invalidCommand(text: string, reason: string): ActionError {
  const shown = scrubText(text);
  return new ActionError('command_invalid', `invalid command ${JSON.stringify(shown)}: ${reason}`, {
    command: shown,
    reason,
  });
}

/**
 * Search path of spawn on Unix when the command's environment has no PATH,
 * from the Node.js 20 child_process documentation.
 */
const DEFAULT_SEARCH_PATH = '/usr/bin:/bin';

/**
 * Finds the file that spawn starts for `program` and returns its absolute
 * path. As on Unix, a name with a `/` is resolved against `cwd`, and a bare
 * name is searched in the folders of `searchPath`, where an empty or relative
 * folder is taken relative to `cwd`. Throws ActionError `command_not_found`
 * when no file exists, or `command_not_executable` when the only files found
 * are folders or lack execute permission for this process.
 *
 * NOTE: the file's own contents are not examined, so a script whose `#!`
 * interpreter is missing passes this check and fails only when it starts.
 */
export function locateProgram(program: string, options: { cwd: string; searchPath?: string }): string {
  if (program.includes('/')) {
    const path = resolve(options.cwd, program);
    const problem = programProblem(path);
    if (problem === undefined) return path;
    if (problem === 'not found') {
      throw new ActionError('command_not_found', `program ${scrubText(path)} not found; install it or correct the path`, {
        program: scrubText(program),
      });
    }
    throw notExecutable(path, problem);
  }

  const searchPath = options.searchPath ?? DEFAULT_SEARCH_PATH;
  let unusable: { path: string; problem: UnusableProgram } | undefined;
  for (const folder of searchPath.split(':')) {
    const path = resolve(options.cwd, folder, program);
    const problem = programProblem(path);
    if (problem === undefined) return path;
    // Like execvp, remember a file without permission but keep searching.
    if (problem !== 'not found') unusable ??= { path, problem };
  }

  if (unusable) throw notExecutable(unusable.path, unusable.problem);
  throw new ActionError(
    'command_not_found',
    `program ${scrubText(program)} not found in PATH (${searchPath}); install it or give its absolute path`,
    { program: scrubText(program) },
  );
}

/** Why a file found for a program cannot run: a folder, a device or socket, or no execute permission. */
type UnusableProgram = 'folder' | 'not a file' | { mode: number };

type ProgramProblem = 'not found' | UnusableProgram;

function programProblem(path: string): ProgramProblem | undefined {
  let stats: Stats | undefined;
  try {
    stats = statSync(path, { throwIfNoEntry: false });
  } catch {
    // ENOTDIR or EACCES on a folder of the path: exec cannot reach the file either.
    return 'not found';
  }
  if (stats === undefined) return 'not found';
  if (stats.isDirectory()) return 'folder';
  if (!stats.isFile()) return 'not a file';

  try {
    accessSync(path, constants.X_OK);
  } catch {
    return { mode: stats.mode & 0o7777 };
  }
  return undefined;
}

function notExecutable(path: string, problem: UnusableProgram): ActionError {
  const displayPath = scrubText(path);
  let reason: string;
  if (problem === 'folder') reason = 'is a folder; give the path of the program inside it';
  else if (problem === 'not a file') reason = 'is not a regular file; give the path of the program';
  else {
    const mode = problem.mode.toString(8).padStart(4, '0');
    reason =
      `is not executable by this process (mode ${mode}, uid ${process.getuid?.() ?? 'unknown'}); ` +
      `make it executable (chmod +x) or run it through its interpreter, such as ["/bin/sh", ${JSON.stringify(displayPath)}]`;
  }
  return new ActionError('command_not_executable', `program ${displayPath} ${reason}`, { program: displayPath });
}

function checkArgv(argv: string[]): void {
  const valid =
    Array.isArray(argv) &&
    argv.length > 0 &&
    argv.every((arg) => typeof arg === 'string' && !arg.includes('\0')) &&
    argv[0] !== '';
  if (!valid) {
    throw new ActionError(
      'command_invalid',
      'invalid command: expected a non-empty list of strings without NUL characters, starting with the program',
    );
  }
}

function inheritedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!SECRET_ENV_NAME.test(name)) env[name] = value;
  }
  return env;
}

function startFailureReason(error: NodeJS.ErrnoException): string {
  if (error.code === 'ENOENT') return 'no such program or working folder';
  if (error.code === 'EACCES') return 'permission denied (is it executable?)';
  return `the system returned ${error.code ?? error.message}`;
}

/** The last `maxBytes` of a stream of chunks. */
class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = 0;

  constructor(private readonly maxBytes: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0].length >= this.maxBytes) {
      const first = this.chunks.shift() as Buffer;
      this.size -= first.length;
      this.dropped += first.length;
    }
  }

  text(): { output: string; truncated: boolean } {
    let buffer = Buffer.concat(this.chunks);
    let dropped = this.dropped;
    if (buffer.length > this.maxBytes) {
      dropped += buffer.length - this.maxBytes;
      buffer = buffer.subarray(buffer.length - this.maxBytes);
    }
    if (dropped === 0) return { output: scrubText(buffer.toString('utf8')), truncated: false };

    // Drop the partial first line, which may hold the end of a secret that
    // the scrubber can no longer recognise.
    const newline = buffer.indexOf(0x0a);
    const kept = newline >= 0 ? buffer.subarray(newline + 1) : Buffer.alloc(0);
    dropped += buffer.length - kept.length;
    const notice = `[output truncated: the first ${dropped} bytes were dropped]\n`;
    return { output: notice + scrubText(kept.toString('utf8')), truncated: true };
  }
}
