// Installs what `npm start` and `npm test` need on a fresh clone, and does
// nothing when it is already there, so both commands work as the first thing
// typed. With --system it also installs the Debian packages the tests use
// (Chromium, Django 4.2 from bookworm-backports) when running as root.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, statSync } from 'node:fs';

const lockFile = 'package-lock.json';
const installedMarker = 'node_modules/.package-lock.json';

function npmInstallNeeded() {
  // npm ci empties the folder a symlinked node_modules points at, which
  // may be another checkout's: leave a linked folder alone.
  if (existsSync('node_modules') && lstatSync('node_modules').isSymbolicLink()) {
    console.log('ensure-deps: node_modules is a symbolic link; not reinstalling through it');
    return false;
  }
  if (!existsSync(installedMarker)) return true;
  return statSync(lockFile).mtimeMs > statSync(installedMarker).mtimeMs + 1000;
}

if (npmInstallNeeded()) {
  console.log('ensure-deps: installing npm packages (npm ci)');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { stdio: 'inherit' });
}

if (process.argv.includes('--system')) {
  const result = spawnSync('bash', ['scripts/setup-system.sh'], { stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

// Fail early with the reason when the lock file and node_modules disagree.
JSON.parse(readFileSync(installedMarker, 'utf8'));
