import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ChildBot {
  process: ChildProcess;
  port: number;
  output: string[];
  /** Resolves when the process has exited. */
  exited: Promise<number | null>;
}

/**
 * Starts the bot as a child process and resolves once it logged "bot
 * started" and /healthz returns 200. `script` is `src/bot/main.ts` (run with
 * node --import tsx, so the pid is the bot's own) or a compiled main.js.
 */
export async function startChildBot(env: Record<string, string>, timeoutMs = 20_000, script = 'src/bot/main.ts'): Promise<ChildBot> {
  const loader = script.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...loader, script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bot did not start within ${timeoutMs} ms:\n${output.join('\n')}`)), timeoutMs);
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        output.push(line);
        const match = /"msg":"bot started"/.test(line) ? /"port":(\d+)/.exec(line) : null;
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`bot exited with ${code} before starting:\n${output.join('\n')}`));
    });
  });
  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  if (health.status !== 200) throw new Error(`healthz answered ${health.status}`);
  return { process: child, port, output, exited };
}

export async function killChildBot(bot: ChildBot, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (bot.process.exitCode !== null || bot.process.signalCode !== null) return;
  bot.process.kill(signal);
  await bot.exited;
}

export async function advanceChildClock(bot: ChildBot, ms: number): Promise<void> {
  const response = await fetch(`http://127.0.0.1:${bot.port}/admin/clock`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ advanceMs: ms }),
  });
  if (response.status !== 200) throw new Error(`clock advance answered ${response.status}`);
}

export async function waitFor<T>(probe: () => T | undefined | false, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
