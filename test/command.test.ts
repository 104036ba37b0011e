import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import {
  describeCommandResult,
  MAX_COMMAND_OUTPUT_BYTES,
  parseCommandLine,
  runCommand,
} from '../src/actions/command.ts';
import { generateDjangoSecretKey } from '../src/actions/django.ts';
import { ActionError } from '../src/bot/errors.ts';
import { createLogger } from '../src/bot/logger.ts';
import { registerSecret } from '../src/bot/redact.ts';

const NODE = process.execPath;
const folder = mkdtempSync(join(tmpdir(), 'command-test-'));

afterAll(() => rmSync(folder, { recursive: true, force: true }));

function captureLogs() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => lines.push(line) });
  return { logger, text: () => lines.join('') };
}

function parseError(text: string): ActionError {
  try {
    parseCommandLine(text);
  } catch (error) {
    return error as ActionError;
  }
  throw new Error(`parseCommandLine accepted ${text}`);
}

/** True while the process runs; a zombie waiting to be reaped counts as ended. */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function runningAfterWait(pids: number[]): Promise<number[]> {
  for (let attempt = 0; attempt < 40 && pids.some(isRunning); attempt++) {
    await new Promise((done) => setTimeout(done, 50));
  }
  return pids.filter(isRunning);
}

describe('parseCommandLine', () => {
  it('splits plain words', () => {
    expect(parseCommandLine('  systemctl   restart gunicorn ')).toEqual(['systemctl', 'restart', 'gunicorn']);
  });

  it('handles quotes and escapes', () => {
    const argv = parseCommandLine(`sh -c 'echo "a b"' "x \\"y\\" \\$z" a\\ b ''`);

    expect(argv).toEqual(['sh', '-c', 'echo "a b"', 'x "y" $z', 'a b', '']);
  });

  it('accepts a JSON array', () => {
    expect(parseCommandLine('["/usr/bin/python3", "manage.py", "x y"]')).toEqual([
      '/usr/bin/python3',
      'manage.py',
      'x y',
    ]);
  });

  it('rejects unbalanced single quote', () => {
    const error = parseError("systemctl restart 'gunicorn");

    expect(error.code).toBe('command_invalid');
    expect(error.message).toContain('single quote at position 19 is not closed');
  });

  it('rejects unbalanced double quote', () => {
    expect(parseError('echo "abc').message).toContain('double quote at position 6 is not closed');
  });

  it('rejects trailing backslash', () => {
    expect(parseError('echo abc\\').message).toContain('ends with a backslash');
  });

  it('rejects shell operators', () => {
    const error = parseError('systemctl restart gunicorn && echo done');

    expect(error.message).toContain('contains & at position 28');
    expect(error.message).toContain('["/bin/sh", "-c", "..."]');
  });

  it('rejects variable expansion', () => {
    expect(parseError('systemctl restart $SERVICE').message).toContain('contains $');
    expect(parseError('echo "$HOME"').message).toContain('inside double quotes');
  });

  it('rejects bad JSON commands', () => {
    expect(parseError('["a", 1]').message).toContain('non-empty array of strings');
    expect(parseError('[]').message).toContain('non-empty array of strings');
    expect(parseError('["a"').message).toContain('not valid JSON');
  });

  it('rejects empty command', () => {
    expect(parseError('   ').message).toContain('the command is empty');
  });
});

describe('runCommand', () => {
  it('reports exit status and output', async () => {
    const { logger } = captureLogs();
    const script = "process.stdout.write('to stdout\\n'); process.stderr.write('to stderr\\n'); process.exit(3)";

    const result = await runCommand([NODE, '-e', script], { timeoutMs: 10_000, logger });

    expect(result.exitCode).toBe(3);
    expect(result.signal).toBeNull();
    expect(result.timedOut).toBe(false);
    expect(result.output).toContain('to stdout');
    expect(result.output).toContain('to stderr');
    expect(describeCommandResult(result)).toBe('exited with status 3');
  });

  it('runs without a shell', async () => {
    const { logger } = captureLogs();

    const result = await runCommand(['/bin/echo', '$HOME && echo injected'], { timeoutMs: 5000, logger });

    expect(result.output).toBe('$HOME && echo injected\n');
    expect(result.exitCode).toBe(0);
  });

  it('timeout kills process group', async () => {
    const { logger } = captureLogs();
    const pidFile = join(folder, 'pids');
    const script = `sleep 30 & echo $! > ${pidFile}; sleep 30 & echo $! >> ${pidFile}; wait`;

    const result = await runCommand(['/bin/sh', '-c', script], { timeoutMs: 500, logger });

    const pids = readFileSync(pidFile, 'utf8').trim().split('\n').map(Number);
    expect(result.timedOut).toBe(true);
    expect(result.signal).toBe('SIGTERM');
    expect(result.durationMs).toBeLessThan(5000);
    expect(pids).toHaveLength(2);
    expect(await runningAfterWait(pids)).toEqual([]);
    expect(describeCommandResult(result, 500)).toBe('timed out after 500 ms and was stopped');
  });

  it('SIGTERM ignored leads to SIGKILL', async () => {
    const { logger } = captureLogs();
    const script = "process.on('SIGTERM', () => {}); console.log('ready'); setInterval(() => {}, 1000)";

    const result = await runCommand([NODE, '-e', script], { timeoutMs: 500, killGraceMs: 300, logger });

    expect(result.timedOut).toBe(true);
    expect(result.signal).toBe('SIGKILL');
    expect(result.output).toContain('ready');
  });

  it('output is capped', async () => {
    const { logger } = captureLogs();
    const script = "for (let i = 0; i < 4000; i++) console.log('line ' + i + ' ' + 'x'.repeat(60)); console.log('last line')";

    const result = await runCommand([NODE, '-e', script], { timeoutMs: 10_000, logger });

    expect(result.truncated).toBe(true);
    expect(Buffer.byteLength(result.output)).toBeLessThanOrEqual(MAX_COMMAND_OUTPUT_BYTES + 100);
    expect(result.output).toMatch(/^\[output truncated: the first \d+ bytes were dropped\]\nline \d+ x/);
    expect(result.output.trimEnd().endsWith('last line')).toBe(true);
  });

  it('output is scrubbed', async () => {
    const secret = generateDjangoSecretKey();
    registerSecret(secret);
    const logs = captureLogs();

    const result = await runCommand(['/bin/echo', `key=${secret}`], { timeoutMs: 5000, logger: logs.logger });

    expect(result.output).toBe('key=[REDACTED]\n');
    expect(logs.text()).not.toContain(secret);
  });

  it('secret variables are not inherited', async () => {
    const { logger } = captureLogs();
    process.env.RUNBOOK_TEST_API_TOKEN = 'inherited-token-value-123';
    process.env.RUNBOOK_TEST_PLAIN = 'plain-value';
    const script = 'console.log(JSON.stringify(process.env))';

    const result = await runCommand([NODE, '-e', script], { timeoutMs: 5000, logger });
    delete process.env.RUNBOOK_TEST_API_TOKEN;
    delete process.env.RUNBOOK_TEST_PLAIN;

    const env = JSON.parse(result.output);
    expect(env.RUNBOOK_TEST_API_TOKEN).toBeUndefined();
    expect(env.RUNBOOK_TEST_PLAIN).toBe('plain-value');
    expect(env.PATH).toBe(process.env.PATH);
  });

  it('background child does not block', async () => {
    const { logger } = captureLogs();

    const result = await runCommand(['/bin/sh', '-c', 'sleep 3 & echo started'], { timeoutMs: 10_000, logger });

    expect(result.exitCode).toBe(0);
    expect(result.output).toBe('started\n');
    expect(result.durationMs).toBeLessThan(2000);
  });

  it('missing program is reported', async () => {
    const { logger } = captureLogs();

    const error = await runCommand(['/nonexistent/restart-app'], { timeoutMs: 5000, logger }).catch(
      (caught: unknown) => caught as ActionError,
    );

    expect(error).toBeInstanceOf(ActionError);
    expect((error as ActionError).code).toBe('command_not_started');
    expect((error as ActionError).message).toContain('cannot start /nonexistent/restart-app: no such program');
  });

  it('invalid argv and timeout rejected', () => {
    const { logger } = captureLogs();

    expect(() => runCommand([], { timeoutMs: 5000, logger })).toThrow(/non-empty list of strings/);
    expect(() => runCommand(['/bin/true'], { timeoutMs: 0, logger })).toThrow(/invalid command timeout 0 ms/);
  });

  it('logs hold no arguments', async () => {
    const secret = generateDjangoSecretKey();
    const logs = captureLogs();

    await runCommand(['/bin/true', secret], { timeoutMs: 5000, logger: logs.logger });

    expect(logs.text()).toContain('command finished');
    expect(logs.text()).not.toContain(secret);
  });
});
