import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

import Database from 'better-sqlite3';

import { MIGRATIONS } from './migrations.ts';

export type Db = Database.Database;

/**
 * Opens the bot's SQLite database in WAL mode and applies
 * pending migrations. The parent folder is created when missing.
 */
export function openDatabase(path: string): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: 5000 });
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode: a committed transaction survives the process being
  // killed at any moment; only a power loss may lose the last commits.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  migrate(db);
  cacheStatements(db);
  return db;
}

/**
 * Reuses compiled statements: the store modules call `db.prepare(sql)` with
 * constant SQL on every use, and compiling it again each time was a third of
 * the cost of declaring an incident.
 */
function cacheStatements(db: Db): void {
  const compile = db.prepare.bind(db);
  const cache = new Map<string, Database.Statement>();
  db.prepare = ((sql: string) => {
    let statement = cache.get(sql);
    if (!statement) {
      statement = compile(sql);
      cache.set(sql, statement);
    }
    return statement;
  }) as Db['prepare'];
}

export function migrate(db: Db): void {
  // The version is read inside the write transaction, so two processes that
  // open a new database at once cannot both apply the same migration.
  db.transaction(() => {
    const current = db.pragma('user_version', { simple: true }) as number;
    if (current > MIGRATIONS.length) {
      throw new Error(
        `database schema version ${current} is newer than this build knows (${MIGRATIONS.length}); ` +
          'run a newer runbook-bot or point DATABASE_PATH at another file',
      );
    }
    for (let version = current; version < MIGRATIONS.length; version++) {
      db.exec(MIGRATIONS[version]);
      db.pragma(`user_version = ${version + 1}`);
    }
  }).immediate();
}

/** Runs `fn` in an immediate transaction: it takes the write lock at BEGIN. */
export function inTransaction<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).immediate();
}
