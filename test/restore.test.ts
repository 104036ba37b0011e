import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { backupDatabase } from '../src/actions/backup.ts';
import {
  replaceDatabase,
  runMigrations,
  runRestoreTest,
  smokeTest,
  startApp,
  stopApp,
  takeSafetyBackup,
  verifyChosenBackup,
} from '../src/actions/restore.ts';
import type { Clock } from '../src/bot/clock.ts';
import { ActionError } from '../src/bot/errors.ts';
import { createLogger } from '../src/bot/logger.ts';
import {
  DATABASE_VARIABLE,
  PYTHON,
  addUsers,
  createDjangoProject,
  removeDjangoTemplate,
  type DjangoProject,
} from './helpers/django-db.ts';

const T0 = Date.UTC(2026, 3, 1, 9, 0, 0);
const logger = createLogger('silent', { write: () => undefined });

let work: string;
let clockMs = T0;
const clock: Clock = { now: () => clockMs };

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'restore-test-'));
});

afterAll(() => {
  removeDjangoTemplate();
  rmSync(work, { recursive: true, force: true });
});

function freshDir(name: string): string {
  const dir = join(work, `${name}-${randomBytes(4).toString('hex')}`);
  mkdirSync(dir);
  return dir;
}

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function userCount(path: string): number {
  const db = new Database(path, { readonly: true });
  const { n } = db.prepare('SELECT COUNT(*) AS n FROM auth_user').get() as { n: number };
  db.close();
  return n;
}

async function caught(promise: Promise<unknown>): Promise<ActionError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ActionError) return error;
    throw error;
  }
  throw new Error('expected an ActionError, but the call succeeded');
}

/** Creates a Django project with 3 users, backs it up, then adds 2 more users to the live database. */
async function projectWithBackup(): Promise<{ project: DjangoProject; backupPath: string; backupSha: string }> {
  const project = createDjangoProject();
  addUsers(project, { plain: 2, superusers: 1 });
  clockMs += 1000;
  const backup = await backupDatabase({ databasePath: project.databasePath, backupDir: freshDir('backups'), clock });
  addUsers(project, { plain: 0, superusers: 0, inactiveSuperusers: 2 });
  return { project, backupPath: backup.path, backupSha: backup.sha256 };
}

describe('replaceDatabase', () => {
  it('restore replaces the database atomically', async () => {
    const { project, backupPath, backupSha } = await projectWithBackup();
    const padding = new Database(project.databasePath);
    padding.exec('CREATE TABLE padding (blob BLOB)');
    const insert = padding.prepare('INSERT INTO padding VALUES (?)');
    for (let i = 0; i < 2500; i++) insert.run(randomBytes(4000));
    padding.close();
    const oldSha = sha256(project.databasePath);
    const stopFile = join(work, `stop-${randomBytes(4).toString('hex')}`);
    // Hashes the database file over and over while it is replaced; an
    // in-place copy would show hashes of half-written files.
    const reader = spawn(
      PYTHON,
      [
        '-c',
        [
          'import hashlib, os, sys',
          'seen = set()',
          'print("ready", flush=True)',
          'while not os.path.exists(sys.argv[2]):',
          '    seen.add(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())',
          'print(" ".join(sorted(seen)), flush=True)',
        ].join('\n'),
        project.databasePath,
        stopFile,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let output = '';
    await new Promise<void>((resolve) =>
      reader.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.startsWith('ready')) resolve();
      }),
    );

    let outcome: Awaited<ReturnType<typeof replaceDatabase>>;
    try {
      outcome = await replaceDatabase({ backupPath, databasePath: project.databasePath });
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      writeFileSync(stopFile, '');
    }
    await new Promise((resolve) => reader.on('close', resolve));
    const seen = output.trim().split('\n').at(-1)!.split(' ');

    expect(outcome.sha256).toBe(backupSha);
    expect(sha256(project.databasePath)).toBe(backupSha);
    expect(seen.every((hash) => hash === oldSha || hash === backupSha)).toBe(true);
    expect(seen).toContain(backupSha);
    expect(userCount(project.databasePath)).toBe(3);
    project.remove();
  });

  it('removes stale side files and keeps mode', async () => {
    const { project, backupPath } = await projectWithBackup();
    chmodSync(project.databasePath, 0o640);
    writeFileSync(`${project.databasePath}-wal`, 'stale wal of the old database');
    writeFileSync(`${project.databasePath}-shm`, 'stale shm');

    const outcome = await replaceDatabase({ backupPath, databasePath: project.databasePath });

    expect(readdirSync(project.dir).filter((name) => name.startsWith('db.sqlite3') || name.startsWith('.db'))).toEqual([
      'db.sqlite3',
    ]);
    expect(outcome.removedSideFiles).toHaveLength(2);
    expect(statSync(project.databasePath).mode & 0o777).toBe(0o640);
    expect(userCount(project.databasePath)).toBe(3);
    project.remove();
  });

  it('failed rename keeps the old database', async () => {
    const { project, backupPath } = await projectWithBackup();
    const oldSha = sha256(project.databasePath);
    writeFileSync(`${project.databasePath}-journal`, 'hot journal of the old database');
    let renames = 0;

    const error = await caught(
      replaceDatabase({
        backupPath,
        databasePath: project.databasePath,
        fileSystem: {
          rename: (from, to) => {
            renames += 1;
            if (to === project.databasePath) throw Object.assign(new Error('i/o error'), { code: 'EIO' });
            renameSync(from, to);
          },
        },
      }),
    );

    expect(error.details.inPlace).toBe('old');
    expect(error.message).toContain('the old database is still in place');
    expect(sha256(project.databasePath)).toBe(oldSha);
    expect(readFileSync(`${project.databasePath}-journal`, 'utf8')).toBe('hot journal of the old database');
    expect(readdirSync(project.dir).filter((name) => name.startsWith('.db.sqlite3'))).toEqual([]);
    expect(renames).toBeGreaterThan(1);
    project.remove();
  });

  it('failed folder sync reports new database', async () => {
    const { project, backupPath, backupSha } = await projectWithBackup();

    const error = await caught(
      replaceDatabase({
        backupPath,
        databasePath: project.databasePath,
        fileSystem: {
          fsyncDir: () => {
            throw Object.assign(new Error('i/o error'), { code: 'EIO' });
          },
        },
      }),
    );

    expect(error.details.inPlace).toBe('new');
    expect(error.message).toContain('restored database is in place');
    expect(sha256(project.databasePath)).toBe(backupSha);
    project.remove();
  });

  it('corrupt backup keeps the old database', async () => {
    const { project, backupPath } = await projectWithBackup();
    const oldSha = sha256(project.databasePath);
    const damaged = Buffer.from(readFileSync(backupPath));
    damaged.fill(0xff, 4096 + 8, 4096 + 12);
    writeFileSync(backupPath, damaged);

    const error = await caught(replaceDatabase({ backupPath, databasePath: project.databasePath }));

    expect(error.code).toBe('restore_backup_invalid');
    expect(error.details.inPlace).toBe('old');
    expect(sha256(project.databasePath)).toBe(oldSha);
    project.remove();
  });

  it('missing backup changes nothing', async () => {
    const { project } = await projectWithBackup();
    const oldSha = sha256(project.databasePath);
    const backupPath = join(work, 'db-2026-01-01-000000.sqlite3');

    const error = await caught(replaceDatabase({ backupPath, databasePath: project.databasePath }));

    expect(error.code).toBe('backup_missing');
    expect(error.message).toContain(backupPath);
    expect(sha256(project.databasePath)).toBe(oldSha);
    project.remove();
  });
});

describe('restore steps', () => {
  it('verifyChosenBackup rejects foreign file', async () => {
    const { project, backupPath } = await projectWithBackup();

    const error = await caught(
      verifyChosenBackup({ backupPath: project.databasePath, backupDir: join(backupPath, '..') }),
    );

    expect(error.code).toBe('backup_invalid');
    expect(error.message).toContain(project.databasePath);
    project.remove();
  });

  it('verifyChosenBackup accepts good backup', async () => {
    const { project, backupPath, backupSha } = await projectWithBackup();

    const outcome = await verifyChosenBackup({ backupPath, expectedSha256: backupSha, backupDir: join(backupPath, '..') });

    expect(outcome.verification.ok).toBe(true);
    expect(outcome.summary).toContain('passed');
    project.remove();
  });

  it('takeSafetyBackup copies current database', async () => {
    const { project } = await projectWithBackup();
    clockMs += 1000;

    const outcome = await takeSafetyBackup({ databasePath: project.databasePath, backupDir: freshDir('safety'), clock });

    expect(userCount(outcome.backup.path)).toBe(5);
    project.remove();
  });

  it('stopApp reports a failing command', async () => {
    const error = await caught(
      stopApp([PYTHON, '-c', 'import sys; print("unit not found"); sys.exit(5)'], { logger }),
    );

    expect(error.code).toBe('command_failed');
    expect(error.message).toContain('exited with status 5');
    expect(error.message).toContain('unit not found');
  });

  it('startApp passes on exit zero', async () => {
    const outcome = await startApp([PYTHON, '-c', 'print("started")'], { logger });

    expect(outcome.exitCode).toBe(0);
  });

  it('runMigrations counts applied migrations', async () => {
    const project = createDjangoProject();
    const fresh = join(freshDir('migrate'), 'empty.sqlite3');

    const outcome = await runMigrations([PYTHON, 'manage.py', 'migrate', '--noinput'], {
      logger,
      cwd: project.dir,
      env: { [DATABASE_VARIABLE]: fresh },
    });

    expect(outcome.summary).toMatch(/^\d+ migrations applied$/);
    expect(userCount(fresh)).toBe(0);
    project.remove();
  });

  describe('smokeTest', () => {
    let server: Server;
    let base: string;
    let status = 200;

    beforeAll(async () => {
      server = createServer((_request, response) => {
        response.writeHead(status).end('ok');
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/healthz`;
    });

    afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

    it('passes on HTTP 200', async () => {
      status = 200;

      const outcome = await smokeTest(base, { timeoutMs: 2000 });

      expect(outcome.summary).toContain('HTTP 200');
    });

    it('fails on HTTP 500', async () => {
      status = 500;

      const error = await caught(smokeTest(base, { timeoutMs: 1200 }));

      expect(error.code).toBe('smoke_test_failed');
      expect(error.message).toContain('HTTP 500');
    });
  });
});

describe('runRestoreTest', () => {
  it('restore test rejects production path', async () => {
    const { project, backupPath } = await projectWithBackup();
    const before = sha256(project.databasePath);

    const error = await caught(
      runRestoreTest({
        backupPath,
        stagingPath: project.databasePath,
        productionPath: project.databasePath,
        clock,
        logger,
      }),
    );

    expect(error.code).toBe('restore_test_unsafe_target');
    expect(error.message).toContain('production database');
    expect(sha256(project.databasePath)).toBe(before);
    project.remove();
  });

  it('rejects production through symlink', async () => {
    const { project, backupPath } = await projectWithBackup();
    const link = join(freshDir('link'), 'staging.sqlite3');
    symlinkSync(project.databasePath, link);

    const error = await caught(
      runRestoreTest({ backupPath, stagingPath: link, productionPath: project.databasePath, clock, logger }),
    );

    expect(error.code).toBe('restore_test_unsafe_target');
    project.remove();
  });

  it('rejects production through hard link', async () => {
    const { project, backupPath } = await projectWithBackup();
    const link = join(project.dir, 'staging.sqlite3');
    linkSync(project.databasePath, link);

    const error = await caught(
      runRestoreTest({ backupPath, stagingPath: link, productionPath: project.databasePath, clock, logger }),
    );

    expect(error.code).toBe('restore_test_unsafe_target');
    project.remove();
  });

  it('reports counts, migrations and smoke', async () => {
    const { project, backupPath, backupSha } = await projectWithBackup();
    const productionSha = sha256(project.databasePath);
    const stagingPath = join(freshDir('staging'), 'staging.sqlite3');

    const outcome = await runRestoreTest({
      backupPath,
      stagingPath,
      productionPath: project.databasePath,
      expectedSha256: backupSha,
      countTable: 'auth_user',
      migrateArgv: [PYTHON, 'manage.py', 'migrate', '--noinput'],
      smokeArgv: [PYTHON, 'manage.py', 'check'],
      cwd: project.dir,
      env: { [DATABASE_VARIABLE]: '{stagingPath}' },
      clock,
      logger,
    });
    const { report } = outcome;

    expect(report.problems).toEqual([]);
    expect(report.passed).toBe(true);
    expect(report.integrity).toBe('ok');
    expect(report.users).toBe(3);
    expect(report.activeSuperusers).toBe(1);
    expect(report.table?.rows).toBe(3);
    expect(report.table?.newestIds).toEqual([3, 2, 1]);
    expect(report.migrate?.passed).toBe(true);
    expect(report.smoke?.passed).toBe(true);
    expect(sha256(project.databasePath)).toBe(productionSha);
    expect(outcome.facts).toContainEqual(['Active superusers', '1']);
    project.remove();
  });

  it('notices a command writing production', async () => {
    const { project, backupPath } = await projectWithBackup();
    const stagingPath = join(freshDir('staging'), 'staging.sqlite3');
    const writeProduction = `import sqlite3; c = sqlite3.connect(${JSON.stringify(project.databasePath)}); c.execute("CREATE TABLE oops (x)"); c.commit()`;

    const outcome = await runRestoreTest({
      backupPath,
      stagingPath,
      productionPath: project.databasePath,
      smokeArgv: [PYTHON, '-c', writeProduction],
      clock,
      logger,
    });

    expect(outcome.report.passed).toBe(false);
    expect(outcome.report.problems.join(' ')).toContain('production database');
    project.remove();
  });

  it('fails when migrations fail', async () => {
    const { project, backupPath } = await projectWithBackup();
    const stagingPath = join(freshDir('staging'), 'staging.sqlite3');

    const outcome = await runRestoreTest({
      backupPath,
      stagingPath,
      productionPath: project.databasePath,
      migrateArgv: [PYTHON, '-c', 'import sys; sys.exit(2)'],
      smokeArgv: [PYTHON, '-c', 'print("must not run")'],
      clock,
      logger,
    });

    expect(outcome.report.passed).toBe(false);
    expect(outcome.report.migrate?.exitCode).toBe(2);
    expect(outcome.report.smoke).toBeUndefined();
    expect(outcome.summary).toContain('Restore test failed');
    project.remove();
  });

  it('rejects invalid table name', async () => {
    const { project, backupPath } = await projectWithBackup();
    const stagingPath = join(freshDir('staging'), 'staging.sqlite3');

    const error = await caught(
      runRestoreTest({
        backupPath,
        stagingPath,
        productionPath: project.databasePath,
        countTable: 'auth_user; DROP TABLE auth_user',
        clock,
        logger,
      }),
    );

    expect(error.code).toBe('invalid_input');
    expect(readdirSync(join(stagingPath, '..'))).toEqual([]);
    project.remove();
  });
});
