import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
  writeSync,
  closeSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import {
  backupDatabase,
  backupEnvFile,
  decryptEnvBackup,
  parseEncryptionKey,
  pruneBackups,
  verifyBackup,
  backupFileName,
} from '../src/actions/backup.ts';
import { AdjustableClock, type Clock } from '../src/bot/clock.ts';
import { ActionError } from '../src/bot/errors.ts';
import { createLogger } from '../src/bot/logger.ts';
import { listBackups, markPruned, newestGoodBackup, recordBackup } from '../src/store/backups.ts';
import { openDatabase, type Db } from '../src/store/db.ts';
import { PYTHON, createDjangoProject, removeDjangoTemplate, type DjangoProject } from './helpers/django-db.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const T0 = Date.UTC(2026, 2, 29, 2, 0, 0);

let work: string;
let project: DjangoProject;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'backup-test-'));
  project = createDjangoProject();
});

afterAll(() => {
  project.remove();
  removeDjangoTemplate();
  rmSync(work, { recursive: true, force: true });
});

function freshDir(name: string): string {
  const dir = join(work, `${name}-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir);
  return dir;
}

function fixedClock(ms: number): Clock {
  return { now: () => ms };
}

function captureLogs(): { logger: ReturnType<typeof createLogger>; text: () => string } {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => lines.push(line) });
  return { logger, text: () => lines.join('') };
}

async function caught(promise: Promise<unknown> | (() => unknown)): Promise<ActionError> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    if (error instanceof ActionError) return error;
    throw error;
  }
  throw new Error('expected an ActionError, but the call succeeded');
}

function flipBytes(path: string, offset: number, bytes: number[]): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from(bytes), 0, bytes.length, offset);
  closeSync(fd);
}

// A Python process that writes to the Django database the way Django does
// (sqlite3 module, rollback journal), in transactions that each add 20 rows
// and raise a running total by 20. A consistent copy has rows == total.
const WRITER = `
import sqlite3, sys, os, time
path, stop = sys.argv[1], sys.argv[2]
db = sqlite3.connect(path, timeout=30, isolation_level=None)
commits = []
while not os.path.exists(stop):
    db.execute('BEGIN IMMEDIATE')
    for _ in range(20):
        db.execute('INSERT INTO probe_rows (payload) VALUES (?)', (os.urandom(400).hex(),))
    db.execute('UPDATE probe_total SET n = n + 20')
    db.execute('COMMIT')
    commits.append(time.time())
    if len(commits) == 1:
        print('ready', flush=True)
    time.sleep(0.002)
print(' '.join(str(t) for t in commits), flush=True)
`;

function prepareProbeTables(databasePath: string): void {
  const db = new Database(databasePath);
  db.exec(`
    CREATE TABLE probe_rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);
    CREATE TABLE probe_total (n INTEGER NOT NULL);
    INSERT INTO probe_total VALUES (0);
  `);
  // About 16 MiB of rows, so the copy takes several 1,000-page steps.
  const insert = db.prepare('INSERT INTO probe_rows (payload) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < 8000; i++) insert.run(randomBytes(1000).toString('hex'));
  })();
  db.prepare('UPDATE probe_total SET n = 8000').run();
  db.close();
}

function startWriter(databasePath: string, stopFile: string): Promise<{ child: ChildProcess; done: Promise<number[]> }> {
  const child = spawn(PYTHON, ['-c', WRITER, databasePath, stopFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<number[]>((resolve, reject) => {
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new Error(`writer exited ${code}: ${stderr}`));
        return;
      }
      const last = stdout.trim().split('\n').at(-1) ?? '';
      resolve(last.split(' ').map((value) => Number(value) * 1000));
    });
  });
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.startsWith('ready')) resolve({ child, done });
    });
    child.on('error', reject);
    done.catch(reject);
  });
}

describe('backupDatabase', () => {
  it('copy stays consistent under concurrent writes', async () => {
    const copyProject = createDjangoProject();
    prepareProbeTables(copyProject.databasePath);
    const backupDir = freshDir('concurrent');
    const stopFile = join(work, `stop-${randomBytes(4).toString('hex')}`);
    const writer = await startWriter(copyProject.databasePath, stopFile);

    const startedAt = Date.now();
    let backup: Awaited<ReturnType<typeof backupDatabase>>;
    try {
      backup = await backupDatabase({ databasePath: copyProject.databasePath, backupDir, clock: fixedClock(T0) });
    } finally {
      writeFileSync(stopFile, '');
    }
    const finishedAt = Date.now();
    const commits = await writer.done;

    const copy = new Database(backup.path, { readonly: true });
    const rows = (copy.prepare('SELECT COUNT(*) AS n FROM probe_rows').get() as { n: number }).n;
    const total = (copy.prepare('SELECT n FROM probe_total').get() as { n: number }).n;
    const integrity = copy.pragma('integrity_check', { simple: true });
    copy.close();
    const source = new Database(copyProject.databasePath, { readonly: true });
    const journalMode = source.pragma('journal_mode', { simple: true });
    source.close();

    expect(commits.filter((at) => at > startedAt && at < finishedAt).length).toBeGreaterThan(0);
    expect(backup.restarts).toBeGreaterThan(0);
    expect(rows).toBe(total);
    expect(total).toBeGreaterThan(8000);
    expect(integrity).toBe('ok');
    expect(journalMode).toBe('delete');
    expect(existsSync(`${copyProject.databasePath}-wal`)).toBe(false);
    copyProject.remove();
  });

  it('names the file in UTC and checks it', async () => {
    const backupDir = freshDir('name');
    const { logger, text } = captureLogs();

    const backup = await backupDatabase({
      databasePath: project.databasePath,
      backupDir,
      clock: fixedClock(T0),
      logger,
    });
    logger.flush();
    const verification = await verifyBackup(backup.path, backup.sha256);

    expect(backup.path).toBe(join(backupDir, 'db-2026-03-29-020000.sqlite3'));
    expect(backup.sizeBytes).toBe(statSync(backup.path).size);
    expect(verification.ok).toBe(true);
    expect(readdirSync(backupDir)).toEqual(['db-2026-03-29-020000.sqlite3']);
    expect(text()).toContain('"msg":"database backup written"');
  });

  it('keeps an existing backup of the same second', async () => {
    const backupDir = freshDir('same-second');
    const first = await backupDatabase({ databasePath: project.databasePath, backupDir, clock: fixedClock(T0) });

    const error = await caught(
      backupDatabase({ databasePath: project.databasePath, backupDir, clock: fixedClock(T0) }),
    );

    expect(error.code).toBe('backup_exists');
    expect((await verifyBackup(first.path, first.sha256)).ok).toBe(true);
    expect(readdirSync(backupDir)).toEqual([backupFileName('database', T0)]);
  });

  it('rejects missing backup folder', async () => {
    const backupDir = join(work, 'does-not-exist');

    const error = await caught(
      backupDatabase({ databasePath: project.databasePath, backupDir, clock: fixedClock(T0) }),
    );

    expect(error.code).toBe('backup_dir_missing');
    expect(error.message).toContain(backupDir);
    expect(existsSync(backupDir)).toBe(false);
  });

  it('rejects missing database path', async () => {
    const backupDir = freshDir('no-db');
    const databasePath = join(work, 'missing.sqlite3');

    const error = await caught(backupDatabase({ databasePath, backupDir, clock: fixedClock(T0) }));

    expect(error.code).toBe('database_missing');
    expect(error.message).toContain(databasePath);
    expect(readdirSync(backupDir)).toEqual([]);
    expect(existsSync(databasePath)).toBe(false);
  });

  it('rejects a file that is no database', async () => {
    const backupDir = freshDir('not-db');
    const databasePath = join(work, 'notes.sqlite3');
    writeFileSync(databasePath, 'plain text, not SQLite'.repeat(100));

    const error = await caught(backupDatabase({ databasePath, backupDir, clock: fixedClock(T0) }));

    expect(error.code).toBe('database_unreadable');
    expect(error.message).toContain('not a SQLite database');
    expect(readdirSync(backupDir)).toEqual([]);
  });
});

// Root ignores permission bits, so read-only and full folders are real
// tmpfs mounts. Where mounting is not allowed these tests are skipped.
function canMount(): boolean {
  const probe = mkdtempSync(join(tmpdir(), 'mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'pipe' });
    execFileSync('umount', [probe], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

describe.skipIf(!canMount())('backup folder on a mount', () => {
  const mounts: string[] = [];

  function mountTmpfs(options: string): string {
    const dir = freshDir('mount');
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' });
    mounts.push(dir);
    return dir;
  }

  afterEach(() => {
    for (const dir of mounts.splice(0)) execFileSync('umount', [dir], { stdio: 'pipe' });
  });

  it('rejects read-only backup folder', async () => {
    const backupDir = mountTmpfs('size=4m');
    const existing = join(backupDir, backupFileName('database', T0 - DAY_MS));
    writeFileSync(existing, 'previous backup');
    execFileSync('mount', ['-o', 'remount,ro', backupDir], { stdio: 'pipe' });

    const error = await caught(
      backupDatabase({ databasePath: project.databasePath, backupDir, clock: fixedClock(T0) }),
    );

    expect(error.code).toBe('backup_dir_read_only');
    expect(error.message).toContain(backupDir);
    expect(readFileSync(existing, 'utf8')).toBe('previous backup');
  });

  it('rejects full backup folder', async () => {
    const backupDir = mountTmpfs('size=64k');
    const existing = join(backupDir, backupFileName('database', T0 - DAY_MS));
    writeFileSync(existing, 'previous backup');

    const error = await caught(
      backupDatabase({ databasePath: project.databasePath, backupDir, clock: fixedClock(T0) }),
    );

    expect(error.code).toBe('backup_dir_full');
    expect(error.message).toContain(backupDir);
    expect(readdirSync(backupDir)).toEqual([backupFileName('database', T0 - DAY_MS)]);
    expect(readFileSync(existing, 'utf8')).toBe('previous backup');
  });

  it('env backup rejects full folder', async () => {
    const backupDir = mountTmpfs('size=4k');
    writeFileSync(join(backupDir, 'filler'), Buffer.alloc(4096));
    const envFile = join(work, 'full.env');
    writeFileSync(envFile, 'DJANGO_SECRET_KEY=full-folder-secret\n');

    const error = await caught(
      backupEnvFile({ envFile, backupDir, encryptionKey: randomBytes(32), clock: fixedClock(T0) }),
    );

    expect(error.code).toBe('backup_dir_full');
    expect(readdirSync(backupDir)).toEqual(['filler']);
  });
});

describe('verifyBackup', () => {
  let backupPath: string;
  let sha256: string;

  beforeAll(async () => {
    const backup = await backupDatabase({
      databasePath: project.databasePath,
      backupDir: freshDir('verify'),
      clock: fixedClock(T0),
    });
    backupPath = backup.path;
    sha256 = backup.sha256;
  });

  function corruptCopy(offset: number, bytes: number[]): string {
    const path = join(freshDir('corrupt'), backupFileName('database', T0));
    writeFileSync(path, readFileSync(backupPath));
    flipBytes(path, offset, bytes);
    return path;
  }

  it('detects flipped data bytes by checksum', async () => {
    const path = corruptCopy(65536 + 100, [1, 2, 3, 4, 5, 6, 7, 8]);

    const result = await verifyBackup(path, sha256);

    expect(result.ok).toBe(false);
    expect(result.reason).toContain('checksum mismatch');
  });

  it('detects damaged b-tree page', async () => {
    const path = corruptCopy(4096 + 8, [0xff, 0xff, 0xff, 0xff]);

    const result = await verifyBackup(path);

    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/page 2|malformed/);
  });

  it('detects damaged file header', async () => {
    const path = corruptCopy(0, [0x41, 0x41, 0x41, 0x41]);

    const result = await verifyBackup(path);

    expect(result.ok).toBe(false);
    expect(result.reason).toContain('not a SQLite database');
  });

  it('reports missing backup file', async () => {
    const result = await verifyBackup(join(work, backupFileName('database', T0)));

    expect(result.ok).toBe(false);
    expect(result.reason).toBe('file not found');
  });
});

describe('backupEnvFile', () => {
  const secretKey = `django-${randomBytes(24).toString('hex')}`;
  const dsn = `https://${randomBytes(16).toString('hex')}@sentry.example.invalid/42`;
  const plaintext = `DJANGO_SECRET_KEY=${secretKey}\nSENTRY_DSN=${dsn}\nDEBUG=false\n`;
  const key = randomBytes(32);

  function writeEnv(): string {
    const envFile = join(freshDir('env-source'), '.env');
    writeFileSync(envFile, plaintext);
    return envFile;
  }

  function assertNoPlaintext(dir: string): void {
    for (const name of readdirSync(dir)) {
      const content = readFileSync(join(dir, name));
      expect(content.includes(secretKey)).toBe(false);
      expect(content.includes(dsn)).toBe(false);
      expect(content.includes('DJANGO_SECRET_KEY')).toBe(false);
      expect(content.includes(key)).toBe(false);
    }
  }

  it('env backup holds no plaintext', async () => {
    const backupDir = freshDir('env');
    const { logger, text } = captureLogs();

    const backup = await backupEnvFile({
      envFile: writeEnv(),
      backupDir,
      encryptionKey: key.toString('base64'),
      clock: fixedClock(T0),
      logger,
    });
    logger.flush();

    expect(readdirSync(backupDir)).toEqual(['env-2026-03-29-020000.env.enc']);
    assertNoPlaintext(backupDir);
    expect(text().includes(secretKey)).toBe(false);
    expect(backup.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('decrypts back to the original', async () => {
    const backup = await backupEnvFile({
      envFile: writeEnv(),
      backupDir: freshDir('env-roundtrip'),
      encryptionKey: key.toString('hex'),
      clock: fixedClock(T0),
    });

    expect(decryptEnvBackup(backup.path, key).toString('utf8')).toBe(plaintext);
  });

  it('uses a fresh IV every time', async () => {
    const envFile = writeEnv();
    const first = await backupEnvFile({ envFile, backupDir: freshDir('iv1'), encryptionKey: key, clock: fixedClock(T0) });
    const second = await backupEnvFile({ envFile, backupDir: freshDir('iv2'), encryptionKey: key, clock: fixedClock(T0) });

    expect(first.sha256).not.toBe(second.sha256);
  });

  it('detects a modified env backup', async () => {
    const backup = await backupEnvFile({
      envFile: writeEnv(),
      backupDir: freshDir('env-tamper'),
      encryptionKey: key,
      clock: fixedClock(T0),
    });
    flipBytes(backup.path, 30, [0x00]);

    const error = await caught(() => decryptEnvBackup(backup.path, key));
    const verification = await verifyBackup(backup.path, backup.sha256);

    expect(error.code).toBe('env_backup_damaged');
    expect(error.message.includes(secretKey)).toBe(false);
    expect(verification.ok).toBe(false);
  });

  it('names the wrong key by id', async () => {
    const backup = await backupEnvFile({
      envFile: writeEnv(),
      backupDir: freshDir('env-wrong-key'),
      encryptionKey: key,
      clock: fixedClock(T0),
    });

    const error = await caught(() => decryptEnvBackup(backup.path, randomBytes(32)));

    expect(error.code).toBe('env_backup_wrong_key');
    expect(error.message).toContain(backup.keyId);
  });

  it('rejects missing env file', async () => {
    const backupDir = freshDir('env-missing');
    const envFile = join(work, 'no.env');

    const error = await caught(
      backupEnvFile({ envFile, backupDir, encryptionKey: key, clock: fixedClock(T0) }),
    );

    expect(error.code).toBe('env_file_unreadable');
    expect(error.message).toContain(envFile);
    expect(readdirSync(backupDir)).toEqual([]);
  });
});

describe('parseEncryptionKey', () => {
  const key = randomBytes(32);

  it('accepts base64, base64url and hex', () => {
    expect(parseEncryptionKey(key.toString('base64')).equals(key)).toBe(true);
    expect(parseEncryptionKey(key.toString('base64url')).equals(key)).toBe(true);
    expect(parseEncryptionKey(key.toString('hex')).equals(key)).toBe(true);
  });

  it.each([
    ['16-byte base64', randomBytes(16).toString('base64')],
    ['63 hex digits', key.toString('hex').slice(1)],
    ['a passphrase', 'correct horse battery staple'],
    ['empty', ''],
  ])('rejects %s with the variable name', (_label, value) => {
    let error: unknown;
    try {
      parseEncryptionKey(value);
    } catch (thrown) {
      error = thrown;
    }

    expect(error).toBeInstanceOf(ActionError);
    expect((error as ActionError).message).toContain('BACKUP_ENCRYPTION_KEY');
    if (value !== '') expect((error as ActionError).message.includes(value)).toBe(false);
  });
});

describe('pruneBackups', () => {
  let db: Db;

  beforeAll(() => {
    db = openDatabase(join(work, `bot-${randomBytes(4).toString('hex')}.sqlite3`));
  });

  afterAll(() => db.close());

  async function backupAt(clock: AdjustableClock, backupDir: string): Promise<number> {
    const backup = await backupDatabase({ databasePath: project.databasePath, backupDir, clock });
    return recordBackup(db, { ...backup, status: 'good' });
  }

  it('retention keeps newest good backup', async () => {
    const backupDir = freshDir('prune');
    const clock = new AdjustableClock(T0 - Date.now());
    await backupAt(clock, backupDir);
    clock.advance(10 * DAY_MS);
    await backupAt(clock, backupDir);
    clock.advance(10 * DAY_MS);
    const newestId = await backupAt(clock, backupDir);
    const foreign = ['notes.txt', 'db-latest.sqlite3', 'db-2026-01-01-000000.sqlite3.bak'];
    for (const name of foreign) writeFileSync(join(backupDir, name), 'not ours');
    clock.advance(40 * DAY_MS);

    const records = listBackups(db, { kind: 'database' }).filter((row) => row.path.startsWith(backupDir));
    const report = pruneBackups({ backupDir, retentionDays: 30, now: clock.now(), records });
    markPruned(db, report.prunedRecordIds);
    const newest = records.find((row) => row.id === newestId)!;

    expect(report.removed).toHaveLength(2);
    expect(readdirSync(backupDir).sort()).toEqual([...foreign, backupFileName('database', newest.createdAt)].sort());
    expect(report.keptNewest).toEqual([newest.path]);
    expect(newestGoodBackup(db, 'database')?.id).toBe(newestId);
    expect(listBackups(db, { status: 'pruned' })).toHaveLength(2);
  });

  it('removes only backups past retention', async () => {
    const backupDir = freshDir('prune-age');
    const names = [0, 20, 31, 45].map((days) => backupFileName('database', T0 - days * DAY_MS));
    for (const name of names) writeFileSync(join(backupDir, name), 'x');

    const report = pruneBackups({ backupDir, retentionDays: 30, now: T0, records: [] });

    expect(report.removed.map((item) => item.path).sort()).toEqual(
      [join(backupDir, names[2]), join(backupDir, names[3])].sort(),
    );
    expect(readdirSync(backupDir).sort()).toEqual([names[0], names[1]].sort());
  });

  it('keeps older good one after failures', async () => {
    const backupDir = freshDir('prune-failed');
    const goodPath = join(backupDir, backupFileName('database', T0 - 40 * DAY_MS));
    writeFileSync(goodPath, 'good');
    const records = [
      { id: 1, kind: 'database' as const, path: goodPath, createdAt: T0 - 40 * DAY_MS, status: 'good' as const },
      {
        id: 2,
        kind: 'database' as const,
        path: join(backupDir, backupFileName('database', T0 - DAY_MS)),
        createdAt: T0 - DAY_MS,
        status: 'failed' as const,
      },
    ];

    const report = pruneBackups({ backupDir, retentionDays: 30, now: T0, records });

    expect(report.removed).toEqual([]);
    expect(existsSync(goodPath)).toBe(true);
  });

  it('removes stale temporary files', () => {
    const backupDir = freshDir('prune-temp');
    const temp = `.${backupFileName('database', T0)}.tmp-0123456789ab`;
    writeFileSync(join(backupDir, temp), 'partial');

    const report = pruneBackups({ backupDir, retentionDays: 30, now: Date.now() + 2 * DAY_MS, records: [] });

    expect(report.removedTemp).toEqual([join(backupDir, temp)]);
    expect(readdirSync(backupDir)).toEqual([]);
  });

  it('rejects zero retention days', async () => {
    const backupDir = freshDir('prune-invalid');
    writeFileSync(join(backupDir, backupFileName('database', T0 - 90 * DAY_MS)), 'x');

    const error = await caught(() => pruneBackups({ backupDir, retentionDays: 0, now: T0, records: [] }));

    expect(error.code).toBe('invalid_retention');
    expect(readdirSync(backupDir)).toHaveLength(1);
  });
});
