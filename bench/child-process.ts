import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A process the bench started with `node` (with `--import tsx` for TypeScript), so its pid is the program's own. */
export interface BenchChild {
  name: string;
  process: ChildProcess;
  port: number;
  /** The last lines the child wrote, for error messages. */
  tail: string[];
  stop(): Promise<void>;
}

export interface StartChildOptions {
  name: string;
  /** Script path relative to the repository root: compiled `.js` runs as is, `.ts` through tsx. */
  script: string;
  env: Record<string, string>;
  /** Matches the stdout line that announces the listening port in a `"port":N` field. */
  readyMessage: string;
  /** Node options placed before the script, such as `--cpu-prof`. */
  nodeArgs?: string[];
  timeoutMs?: number;
}

const TAIL_LINES = 40;

/**
 * Starts a program as a child process and resolves once it writes a
 * JSON line with `"msg":"<readyMessage>"` and a port. The bench keeps reading
 * the child's output and keeps only the last lines, so a full pipe does not
 * block the child while the bench runs.
 */
export async function startChild(options: StartChildOptions): Promise<BenchChild> {
  const loader = options.script.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), ...loader, options.script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  const keep = (line: string) => {
    tail.push(line);
    if (tail.length > TAIL_LINES) tail.shift();
  };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const timeoutMs = options.timeoutMs ?? 30_000;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${options.name} did not start within ${timeoutMs} ms; last output:\n${tail.join('\n')}`));
    }, timeoutMs);
    let buffer = '';
    let ready = false;
    child.stdout!.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        keep(line);
        if (ready || !line.includes(`"msg":"${options.readyMessage}"`)) continue;
        const match = /"port":(\d+)/.exec(line);
        if (!match) continue;
        ready = true;
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => keep(chunk.toString('utf8').trimEnd()));
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${options.name} exited with ${child.exitCode ?? child.signalCode} before it started:\n${tail.join('\n')}`));
    });
  });

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const forced = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(forced);
  };
  return { name: options.name, process: child, port, tail, stop };
}

/** Reads a process's resident set size (VmRSS) and its peak (VmHWM) from /proc, in bytes. */
export function readMemory(pid: number): { rssBytes: number; peakRssBytes: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!match) throw new Error(`/proc/${pid}/status has no ${name} line`);
    return Number(match[1]) * 1024;
  };
  return { rssBytes: field('VmRSS'), peakRssBytes: field('VmHWM') };
}
