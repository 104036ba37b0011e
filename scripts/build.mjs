// Compiles src/ to JavaScript in dist/, which `npm start`, the Dockerfile and
// the benchmark run. Plain JavaScript starts without tsx's loader, whose
// extra thread held about 30 MB of the bot's memory.
//
//   node scripts/build.mjs           rebuild when the inputs differ from the ones last built
//   node scripts/build.mjs --force   rebuild always
//   node scripts/build.mjs --out=DIR build into DIR instead of dist/ (tests)
//
// Type errors do not stop the build (`npm run typecheck` reports them); the
// build only strips the types. Run it from the repository root: every path
// below is relative to the working folder.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const OUT = (process.argv.find((arg) => arg.startsWith('--out='))?.slice('--out='.length) || 'dist').replace(/\/+$/, '');
const STAMP = '.built';
const INPUTS = ['src', 'bench/bare-bolt.ts', 'tsconfig.json', 'tsconfig.build.json', 'package-lock.json'];
/** Files the code reads next to itself at run time. */
const ASSETS = ['src/runbooks/builtin', 'src/sandbox/public'];
const TSC = 'node_modules/typescript/bin/tsc';
/** Renames tried before giving up when other builds keep replacing the output at the same moment. */
const MAX_SWAP_ATTEMPTS = 10;

/** Files under `path` (a file or a folder), in a fixed order, relative to the working folder. */
function listFiles(path) {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((entry) => listFiles(join(path, entry)));
}

/**
 * Hashes the path and bytes of every input file, and this script, which
 * decides what the output contains. A content hash, unlike modification times,
 * also detects a file copied in with an older time (cp -p, rsync -t, tar).
 */
function hashInputs() {
  const hash = createHash('sha256');
  const add = (name, bytes) => {
    hash.update(`${name}\0${bytes.length}\0`);
    hash.update(bytes);
  };

  for (const file of INPUTS.flatMap(listFiles)) add(file, readFileSync(file));
  add('scripts/build.mjs', readFileSync(fileURLToPath(import.meta.url)));
  return hash.digest('hex');
}

/** Reads the input hash from the stamp of `folder`; returns undefined when it has no readable stamp. */
function readStampHash(folder) {
  try {
    const stamp = JSON.parse(readFileSync(join(folder, STAMP), 'utf8'));
    return typeof stamp.inputsSha256 === 'string' ? stamp.inputsSha256 : undefined;
  } catch {
    return undefined;
  }
}

/** True unless no process has this id. EPERM means one exists but belongs to another user. */
function isRunning(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/**
 * Removes the staging and set-aside folders (`dist.<pid>`, `dist.<pid>.old`)
 * of builds whose process no longer exists, such as one killed with SIGKILL.
 * Each folder is first renamed to a name of this process, so two builds never
 * remove the same folder at once.
 */
function removeAbandonedFolders() {
  const parent = dirname(OUT);
  if (!existsSync(parent)) return;

  const prefix = `${basename(OUT)}.`;
  for (const entry of readdirSync(parent)) {
    const match = entry.startsWith(prefix) ? /^(\d+)(\.old|\.abandoned)?$/.exec(entry.slice(prefix.length)) : null;
    if (!match) continue;

    // This process has created nothing yet, so a folder named with its id was left by an earlier process.
    // NOTE: a build in another PID namespace (a container sharing this folder) looks abandoned here.
    const pid = Number(match[1]);
    if (pid !== process.pid && isRunning(pid)) continue;

    const claimed = `${OUT}.${process.pid}.abandoned`;
    try {
      renameSync(join(parent, entry), claimed);
    } catch (error) {
      if (error.code === 'ENOENT') continue; // another build claimed it first
      throw error;
    }
    rmSync(claimed, { recursive: true, force: true });
  }
}

/**
 * Runs tsc into `outDir` and resolves with its exit code, or its signal when
 * it was killed. `onSpawn` receives the child process, so a signal handler
 * can forward SIGTERM and SIGINT to it.
 */
function compile(outDir, onSpawn) {
  return new Promise((resolve, reject) => {
    const tsc = spawn(process.execPath, [TSC, '-p', 'tsconfig.build.json', '--outDir', outDir], { stdio: 'inherit' });
    onSpawn(tsc);
    tsc.once('error', reject);
    tsc.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** True when the output in `folder` was built from `inputs` or from the inputs as they are now. */
function isUpToDate(folder, inputs) {
  const built = readStampHash(folder);
  if (built === undefined) return false;
  return built === inputs || built === hashInputs();
}

/**
 * Moves `staging` in as the output folder. Another build may finish at the
 * same moment, so the output is only ever renamed (set aside, then replaced),
 * never merged or removed in place, and a rename that loses the race is
 * retried. When the output in place is already up to date, `staging` is
 * removed instead. A bot starting between the two renames finds no output.
 */
function moveIntoPlace(staging, inputs) {
  const aside = `${OUT}.${process.pid}.old`;
  for (let attempt = 1; attempt <= MAX_SWAP_ATTEMPTS; attempt += 1) {
    if (isUpToDate(OUT, inputs)) {
      rmSync(staging, { recursive: true, force: true });
      console.log(`build: ${OUT}/ is already up to date from another build`);
      return;
    }

    try {
      renameSync(OUT, aside);
    } catch (error) {
      if (error.code !== 'ENOENT') throw error;
    }
    try {
      renameSync(staging, OUT);
      return;
    } catch (error) {
      // Another build moved its output in after this one set the old output aside.
      if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
    } finally {
      rmSync(aside, { recursive: true, force: true });
    }
  }
  rmSync(staging, { recursive: true, force: true });
  throw new Error(`build: other builds kept replacing ${OUT}/ during ${MAX_SWAP_ATTEMPTS} attempts; run the build again`);
}

/** Ends this process the way `signal` would have, after the build cleaned up. */
function exitBySignal(signal) {
  process.kill(process.pid, signal);
  process.exit(128 + constants.signals[signal]);
}

removeAbandonedFolders();
const inputs = hashInputs();
if (!process.argv.includes('--force') && readStampHash(OUT) === inputs) process.exit(0);

console.log(`build: compiling src/ to ${OUT}/`);
// Build beside the output folder and move it in at the end, so a bot running
// from the output folder never loads a partial build.
const staging = `${OUT}.${process.pid}`;
rmSync(staging, { recursive: true, force: true });

// Stopping the build stops tsc too, instead of leaving it running as an orphan. The listeners stay
// until the end, so a signal that arrives during the copy and the swap (synchronous, milliseconds)
// cannot leave the output half moved: the build then finishes and exits 0.
let stopSignal;
let tsc;
const stop = (signal) => {
  stopSignal = signal;
  tsc?.kill(signal);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
const stopHandlingSignals = () => {
  process.off('SIGTERM', stop);
  process.off('SIGINT', stop);
};

const result = await compile(staging, (child) => {
  tsc = child;
});
if (stopSignal !== undefined || result.code !== 0) {
  rmSync(staging, { recursive: true, force: true });
  stopHandlingSignals();
  if (stopSignal !== undefined) exitBySignal(stopSignal);
  console.error(`build: tsc failed (${result.signal ?? `exit code ${result.code}`}); ${OUT}/ is unchanged`);
  process.exit(result.code || 1);
}

for (const asset of ASSETS) cpSync(asset, join(staging, asset), { recursive: true });
// The stamp records the inputs hashed before tsc started, so an edit made while tsc ran rebuilds next time.
writeFileSync(join(staging, STAMP), `${JSON.stringify({ inputsSha256: inputs, builtAt: new Date().toISOString() })}\n`);
moveIntoPlace(staging, inputs);
stopHandlingSignals();
