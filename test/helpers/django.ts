// Starts the test Django site (test/django/project) on loopback for a suite:
// its own .env file and SQLite database in a temp folder, runserver under a
// small supervisor that restarts it on request so new settings are read.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { closeSync, openSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { generateDjangoSecretKey } from '../../src/actions/django.ts';
import { EnvFileStore } from '../../src/actions/secrets/env-file.ts';

/** Debian's interpreter, which has Django 4.2; the first python3 on PATH may not. */
export const DJANGO_PYTHON = '/usr/bin/python3';

export const DJANGO_PROJECT_DIR = fileURLToPath(new URL('../django/project', import.meta.url));

/** Passwords of the accounts that create_users.py makes: `<username>-password`. */
export const DJANGO_USERS = {
  alice: { email: 'alice@example.com', active: true },
  bob: { email: 'Bob.Builder@Example.com', active: true },
  carol: { email: 'carol@example.com', active: false },
  dave: { email: 'shared@example.com', active: true },
  erin: { email: 'SHARED@example.com', active: true },
} as const;

export interface DjangoSite {
  baseUrl: string;
  envFile: string;
  databasePath: string;
  /** A command that restarts the site and exits 0 once it serves requests again. */
  restartArgv: string[];
  /** The supervisor's and runserver's combined output. */
  logFile: string;
  /** Fingerprints of the keys the running process loaded, from /healthz/. */
  loadedKeys(): Promise<{ secretKey: string; fallbacks: string[] }>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;

/**
 * Migrated databases with the test accounts, one per project folder, shared
 * by the sites running in this test process and removed when the last stops.
 */
const templates = new Map<string, { folder: Promise<string>; sites: number }>();

/**
 * Starts a fresh copy of the test site: its own .env with a new key, a copy
 * of the migrated database, and runserver on a free loopback port. Resolves
 * once /healthz/ returns 200.
 */
export async function startDjango({ dir = DJANGO_PROJECT_DIR }: { dir?: string } = {}): Promise<DjangoSite> {
  const folder = await mkdtemp(join(tmpdir(), 'runbook-django-'));
  const envFile = join(folder, '.env');
  const databasePath = join(folder, 'db.sqlite3');
  const stateFile = join(folder, 'supervisor.json');
  const logFile = join(folder, 'server.log');

  const template = useTemplate(dir);
  try {
    await copyFile(join(await template, 'db.sqlite3'), databasePath);
  } catch (error) {
    await releaseTemplate(dir);
    throw error;
  }
  await copyFile(join(dir, 'sample.env'), envFile);
  await new EnvFileStore(envFile).write({ DJANGO_SECRET_KEY: generateDjangoSecretKey() });

  const port = await freePort();
  const logFd = openSync(logFile, 'a');
  const supervisor = spawn(DJANGO_PYTHON, ['supervise.py', stateFile, `127.0.0.1:${port}`], {
    cwd: dir,
    env: djangoEnv(envFile, databasePath),
    stdio: ['pipe', logFd, logFd],
  });
  closeSync(logFd);

  const site: DjangoSite = {
    baseUrl: `http://127.0.0.1:${port}`,
    envFile,
    databasePath,
    restartArgv: [DJANGO_PYTHON, join(dir, 'restart.py'), stateFile],
    logFile,
    loadedKeys: () => loadedKeys(`http://127.0.0.1:${port}`),
    stop: async () => {
      await stopProcess(supervisor);
      await rm(folder, { recursive: true, force: true });
      await releaseTemplate(dir);
    },
  };

  try {
    await waitForStart(supervisor, stateFile, logFile);
  } catch (error) {
    await site.stop();
    throw error;
  }
  return site;
}

function djangoEnv(envFile: string, databasePath: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    PYTHONDONTWRITEBYTECODE: '1',
    PYTHONUNBUFFERED: '1',
    DJANGO_ENV_FILE: envFile,
    DJANGO_DATABASE_PATH: databasePath,
  };
}

function useTemplate(dir: string): Promise<string> {
  let template = templates.get(dir);
  if (!template) {
    template = { folder: createTemplate(dir), sites: 0 };
    templates.set(dir, template);
  }
  template.sites++;
  return template.folder;
}

async function releaseTemplate(dir: string): Promise<void> {
  const template = templates.get(dir);
  if (!template || --template.sites > 0) return;

  templates.delete(dir);
  const folder = await template.folder.catch(() => undefined);
  if (folder) await rm(folder, { recursive: true, force: true });
}

async function createTemplate(dir: string): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'runbook-django-template-'));
  const envFile = join(folder, '.env');
  const databasePath = join(folder, 'db.sqlite3');
  await copyFile(join(dir, 'sample.env'), envFile);
  await new EnvFileStore(envFile).write({ DJANGO_SECRET_KEY: generateDjangoSecretKey() });

  const env = djangoEnv(envFile, databasePath);
  try {
    await runPython(dir, env, ['manage.py', 'migrate', '--verbosity', '0']);
    await runPython(dir, env, ['manage.py', 'shell', '--command', 'import create_users']);
  } catch (error) {
    await rm(folder, { recursive: true, force: true });
    throw error;
  }
  return folder;
}

function runPython(cwd: string, env: NodeJS.ProcessEnv, args: string[]): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(DJANGO_PYTHON, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`${DJANGO_PYTHON} ${args.join(' ')} exited with ${code}:\n${output}`));
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePromise(port));
    });
  });
}

async function waitForStart(supervisor: ChildProcess, stateFile: string, logFile: string) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (supervisor.exitCode !== null) break;

    const state = await readFile(stateFile, 'utf8').then(JSON.parse, () => undefined);
    if (state?.generation >= 1) return;
    if (state?.error) break;
    await new Promise((done) => setTimeout(done, 50));
  }

  const log = await readFile(logFile, 'utf8').catch(() => '');
  throw new Error(`the test Django site did not start; its output:\n${log}`);
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;

  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.stdin?.end();
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function loadedKeys(baseUrl: string): Promise<{ secretKey: string; fallbacks: string[] }> {
  const response = await fetch(`${baseUrl}/healthz/`);
  const body = (await response.json()) as {
    secret_key_fingerprint: string;
    fallback_fingerprints: string[];
  };
  return { secretKey: body.secret_key_fingerprint, fallbacks: body.fallback_fingerprints };
}

/** A browser session against the test site: keeps cookies between requests. */
export class DjangoBrowser {
  private readonly cookies = new Map<string, string>();

  constructor(private readonly baseUrl: string) {}

  async login(username: string, password = `${username}-password`): Promise<number> {
    const response = await this.request('/login/', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
    return response.status;
  }

  /** The logged-in username, or undefined when the site returns 401. */
  async whoami(): Promise<string | undefined> {
    const response = await this.request('/whoami/', {});
    if (response.status === 401) return undefined;
    if (response.status !== 200) throw new Error(`/whoami/ returned ${response.status}`);
    return ((await response.json()) as { user: string }).user;
  }

  get sessionKey(): string | undefined {
    return this.cookies.get('sessionid');
  }

  private async request(path: string, init: RequestInit): Promise<Response> {
    const cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    const headers = new Headers(init.headers);
    if (cookie) headers.set('cookie', cookie);

    const response = await fetch(`${this.baseUrl}${path}`, { ...init, headers, redirect: 'manual' });
    for (const line of response.headers.getSetCookie()) this.storeCookie(line);
    if (response.status !== 200) await response.body?.cancel();
    return response;
  }

  private storeCookie(line: string): void {
    const [pair, ...attributes] = line.split(';');
    const separator = pair.indexOf('=');
    const name = pair.slice(0, separator).trim();
    const value = pair.slice(separator + 1).trim();
    const expired = attributes.some((attribute) => /^\s*max-age\s*=\s*0\s*$/i.test(attribute));
    if (expired || value === '' || value === '""') this.cookies.delete(name);
    else this.cookies.set(name, value);
  }
}

/** Reads one variable of the test site's .env file. */
export function siteEnvValue(site: DjangoSite, name: string): Promise<string | undefined> {
  return new EnvFileStore(site.envFile).read(name);
}

/** Returns the bot's variables for the test site: its .env store, database, restart command and health URL. */
export function botEnvFor(site: DjangoSite): Record<string, string> {
  return {
    SECRET_STORE: 'env',
    DJANGO_ENV_FILE: site.envFile,
    DJANGO_DATABASE_PATH: site.databasePath,
    DJANGO_RESTART_COMMAND: JSON.stringify(site.restartArgv),
    DJANGO_HEALTH_URL: `${site.baseUrl}/healthz/`,
  };
}

