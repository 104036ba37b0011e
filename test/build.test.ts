// `npm start` runs the compiled bot from dist/. This builds into a folder of
// its own and starts that build in sandbox mode, so a file the build leaves
// out (a runbook, the sandbox page) fails here and not on a user's first start.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { killChildBot, startChildBot, type ChildBot } from './helpers/child-bot.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Returns a free loopback port. The sandbox needs a fixed PORT because it serves its own Web API. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const build = (out: string, ...flags: string[]) =>
  execFileSync(process.execPath, ['scripts/build.mjs', `--out=${out}`, ...flags], { cwd: ROOT, encoding: 'utf8' });

describe('compiled build', () => {
  let parent: string;
  let out: string;
  let bot: ChildBot;
  let firstOutput: string;
  let port: number;

  beforeAll(async () => {
    // Inside the repository, so the compiled files find node_modules. Created here rather than in
    // the describe body, so a run that filters these tests out leaves no folder behind.
    mkdirSync(join(ROOT, 'var'), { recursive: true });
    parent = mkdtempSync(join(ROOT, 'var', 'build-test-'));
    out = relative(ROOT, join(parent, 'dist'));
    const data = mkdtempSync(join(parent, 'data-'));
    firstOutput = build(out);
    port = await freePort();
    bot = await startChildBot({ PORT: String(port), DATABASE_PATH: join(data, 'bot.sqlite3') }, 20_000, join(out, 'src/bot/main.js'));
  }, 60_000);

  afterAll(async () => {
    if (bot) await killChildBot(bot, 'SIGTERM');
    if (parent) rmSync(parent, { recursive: true, force: true });
  });

  it('compiles when no build exists', () => {
    expect(firstOutput).toContain('build: compiling src/');
  });

  it('skips a build that is up to date', () => {
    const stamp = statSync(join(ROOT, out, '.built')).mtimeMs;
    build(out);
    expect(statSync(join(ROOT, out, '.built')).mtimeMs).toBe(stamp);
  });

  it('leaves no staging folder behind', () => {
    expect(readdirSync(parent).filter((name) => name.startsWith('dist.'))).toEqual([]);
  });

  it('serves the sandbox page', async () => {
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(await page.text()).toContain('<script');
  });

  it('declares from the built-in runbooks', async () => {
    const response = await fetch(`http://127.0.0.1:${port}/sandbox/command`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'U0SBXALEX', channel: 'C0SBXINCIDENTS', text: '/incident secret-key Key pasted in a gist' }),
    });
    expect(response.status).toBe(200);
  });

  it('posts the incident message', async () => {
    const deadline = Date.now() + 10_000;
    let titles: string[] = [];
    while (Date.now() < deadline) {
      const state = (await (await fetch(`http://127.0.0.1:${port}/sandbox/state`)).json()) as { messages?: Array<{ text?: string }> };
      titles = (state.messages ?? []).map((message) => message.text ?? '');
      if (titles.some((text) => text.includes('(#1)'))) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(titles.some((text) => text.includes('(#1)'))).toBe(true);
  });
});

const BUILD_SCRIPT = join(ROOT, 'scripts/build.mjs');
const REAL_TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

/**
 * Stand-in for node_modules/typescript/bin/tsc in a test project: it runs the
 * real compiler, then, when BUILD_TEST_GATE names a folder, writes
 * compiled.<pid> there and waits for a file named release. A test acts at that
 * point, after tsc has read the sources and before the build moves its output in.
 */
const TSC_STAND_IN = `'use strict';
const { execFileSync } = require('node:child_process');
const { existsSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');

execFileSync(process.execPath, [${JSON.stringify(REAL_TSC)}, ...process.argv.slice(2)], { stdio: 'inherit' });
const gate = process.env.BUILD_TEST_GATE;
if (gate) {
  writeFileSync(join(gate, 'compiled.' + process.pid), '');
  const deadline = Date.now() + 30000;
  const timer = setInterval(() => {
    if (existsSync(join(gate, 'release'))) clearInterval(timer);
    else if (Date.now() > deadline) process.exit(1);
  }, 5);
}
`;

/** Number of asset files. With a few hundred, removing an output takes long enough for concurrent builds to overlap. */
const ASSET_FILES = 200;

interface Project {
  root: string;
  gate: string;
  remove(): void;
}

/** Writes a small project that scripts/build.mjs builds, in a folder under var/ (so it stays inside the repository). */
function createProject(): Project {
  mkdirSync(join(ROOT, 'var'), { recursive: true });
  const root = mkdtempSync(join(ROOT, 'var', 'build-test-'));
  const files: Record<string, string> = {
    'src/main.ts': 'export const version = 1;\n',
    'src/runbooks/builtin/example.yaml': 'id: example\n',
    'bench/bare-bolt.ts': 'export {};\n',
    'package-lock.json': '{}\n',
    'tsconfig.json': JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', skipLibCheck: true, types: [] },
    }),
    'tsconfig.build.json': JSON.stringify({
      extends: './tsconfig.json',
      compilerOptions: { noEmit: false, noCheck: true, outDir: 'dist', rootDir: '.' },
      include: ['src', 'bench/bare-bolt.ts'],
    }),
    'node_modules/typescript/package.json': '{ "name": "typescript", "type": "commonjs" }\n',
    'node_modules/typescript/bin/tsc': TSC_STAND_IN,
  };
  for (let index = 0; index < ASSET_FILES; index += 1) files[`src/sandbox/public/page-${index}.html`] = `<p>${index}</p>\n`;

  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const gate = join(root, 'gate');
  mkdirSync(gate);
  return { root, gate, remove: () => rmSync(root, { recursive: true, force: true }) };
}

interface BuildRun {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>;
}

/** Starts scripts/build.mjs in `project`; `gated` makes its tsc wait at the project's gate. */
function startBuild(project: Project, options: { gated?: boolean; flags?: string[] } = {}): BuildRun {
  const env = { ...process.env, ...(options.gated ? { BUILD_TEST_GATE: project.gate } : {}) };
  const child = spawn(process.execPath, [BUILD_SCRIPT, ...(options.flags ?? [])], { cwd: project.root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, output })),
  );
  return { child, exited };
}

/** Process ids of the tsc stand-ins waiting at the project's gate. */
function compiledPids(project: Project): number[] {
  return readdirSync(project.gate)
    .filter((name) => name.startsWith('compiled.'))
    .map((name) => Number(name.slice('compiled.'.length)));
}

function releaseGate(project: Project): void {
  writeFileSync(join(project.gate, 'release'), '');
}

async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Staging and set-aside folders (dist.<pid>...) left in the project. */
function leftoverFolders(project: Project): string[] {
  return readdirSync(project.root).filter((name) => name.startsWith('dist.'));
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const compiledMain = (project: Project) => readFileSync(join(project.root, 'dist/src/main.js'), 'utf8');

describe('build of a changing project', () => {
  const projects: Project[] = [];
  const project = () => {
    const created = createProject();
    projects.push(created);
    return created;
  };

  afterAll(() => {
    // A stand-in that outlived its build (the failure the SIGTERM test looks for) exits once released.
    for (const created of projects) {
      releaseGate(created);
      created.remove();
    }
  });

  it('edit during build is rebuilt', async () => {
    const edited = project();
    const first = startBuild(edited, { gated: true });
    await waitFor(() => compiledPids(edited).length === 1);
    writeFileSync(join(edited.root, 'src/main.ts'), 'export const version = 2;\n');
    releaseGate(edited);
    expect((await first.exited).code).toBe(0);

    const second = await startBuild(edited).exited;
    expect(second.code).toBe(0);
    expect(compiledMain(edited)).toContain('version = 2');
  });

  it('edit with older mtime is rebuilt', async () => {
    const copied = project();
    expect((await startBuild(copied).exited).code).toBe(0);

    // What cp -p, rsync -t and tar do: new bytes, with a modification time from before the last build.
    const source = join(copied.root, 'src/main.ts');
    const earlier = new Date('2001-01-01T00:00:00Z');
    writeFileSync(source, 'export const version = 3;\n');
    utimesSync(source, earlier, earlier);

    const second = await startBuild(copied).exited;
    expect(second.code).toBe(0);
    expect(compiledMain(copied)).toContain('version = 3');
  });

  it('concurrent builds all succeed', async () => {
    const shared = project();
    expect((await startBuild(shared).exited).code).toBe(0);

    const builds = Array.from({ length: 4 }, () => startBuild(shared, { gated: true, flags: ['--force'] }));
    await waitFor(() => compiledPids(shared).length === builds.length);
    releaseGate(shared);
    const results = await Promise.all(builds.map((build) => build.exited));

    for (const [index, result] of results.entries()) expect(result.code, `build ${index + 1}:\n${result.output}`).toBe(0);
    expect(leftoverFolders(shared)).toEqual([]);
    expect(compiledMain(shared)).toContain('version = 1');
  });

  it('SIGTERM stops the compiler', async () => {
    const stopped = project();
    const build = startBuild(stopped, { gated: true });
    await waitFor(() => compiledPids(stopped).length === 1);
    const [tscPid] = compiledPids(stopped);

    build.child.kill('SIGTERM');
    const result = await build.exited;
    expect(result.signal).toBe('SIGTERM');
    expect(isRunning(tscPid)).toBe(false);
    expect(leftoverFolders(stopped)).toEqual([]);
  });

  it('abandoned staging folders are removed', async () => {
    const abandoned = project();
    const exited = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => exited.once('exit', resolve));
    const deadPid = exited.pid!;
    mkdirSync(join(abandoned.root, `dist.${deadPid}`, 'src'), { recursive: true });
    mkdirSync(join(abandoned.root, `dist.${deadPid}.old`));
    // A folder named with a running process's id (this test's) belongs to a build in progress and must stay.
    mkdirSync(join(abandoned.root, `dist.${process.pid}`));

    expect((await startBuild(abandoned).exited).code).toBe(0);
    expect(existsSync(join(abandoned.root, `dist.${deadPid}`))).toBe(false);
    expect(existsSync(join(abandoned.root, `dist.${deadPid}.old`))).toBe(false);
    expect(existsSync(join(abandoned.root, `dist.${process.pid}`))).toBe(true);
  });
});
