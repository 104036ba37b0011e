// Compiles src/ to JavaScript in dist/, which `npm start`, the Dockerfile and
// the benchmark run. Plain JavaScript starts without tsx's loader, whose
// extra thread held about 30 MB of the bot's memory.
//
//   node scripts/build.mjs           rebuild when a source file is newer than the build
//   node scripts/build.mjs --force   rebuild always
//   node scripts/build.mjs --out=DIR build into DIR instead of dist/ (tests)
//
// Type errors do not stop the build (`npm run typecheck` reports them); the
// build only strips the types.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const OUT = process.argv.find((arg) => arg.startsWith('--out='))?.slice('--out='.length) || 'dist';
const STAMP = join(OUT, '.built');
const INPUTS = ['src', 'bench/bare-bolt.ts', 'tsconfig.json', 'tsconfig.build.json', 'package-lock.json'];
/** Files the code reads next to itself at run time. */
const ASSETS = ['src/runbooks/builtin', 'src/sandbox/public'];

function newestMtime(path) {
  const stats = statSync(path);
  if (!stats.isDirectory()) return stats.mtimeMs;
  let newest = stats.mtimeMs;
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

function upToDate() {
  if (!existsSync(STAMP)) return false;
  const built = statSync(STAMP).mtimeMs;
  return INPUTS.every((input) => newestMtime(input) <= built);
}

if (!process.argv.includes('--force') && upToDate()) process.exit(0);

console.log(`build: compiling src/ to ${OUT}/`);
// Build beside the output folder and move it in at the end, so a bot running
// from the output folder never loads a partial build.
const staging = `${OUT.replace(/\/+$/, '')}.${process.pid}`;
rmSync(staging, { recursive: true, force: true });
execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json', '--outDir', staging], { stdio: 'inherit' });
for (const asset of ASSETS) cpSync(asset, join(staging, asset), { recursive: true });
writeFileSync(join(staging, '.built'), `${new Date().toISOString()}\n`);
rmSync(OUT, { recursive: true, force: true });
renameSync(staging, OUT);
