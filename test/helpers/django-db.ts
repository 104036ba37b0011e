// A throwaway Django 4.2 project made with `django-admin startproject` in a
// temp folder, migrated with Debian's /usr/bin/python3, so tests back up and
// restore a real Django SQLite database. Only Django needs to be installed.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const PYTHON = '/usr/bin/python3';

/** The variable the project's settings read the database path from. */
export const DATABASE_VARIABLE = 'DJANGO_DATABASE_PATH';

export interface DjangoProject {
  dir: string;
  managePy: string;
  databasePath: string;
  /** Runs manage.py with arguments and returns stdout; throws on a non-zero exit. */
  manage(args: string[], env?: Record<string, string>): string;
  remove(): void;
}

let template: string | undefined;

function buildTemplate(): string {
  const dir = mkdtempSync(join(tmpdir(), 'django-template-'));
  execFileSync(PYTHON, ['-m', 'django', 'startproject', 'site_under_test', dir], { stdio: 'pipe' });

  const settingsPath = join(dir, 'site_under_test', 'settings.py');
  const settings = readFileSync(settingsPath, 'utf8').replace(
    "'NAME': BASE_DIR / 'db.sqlite3',",
    `'NAME': os.environ.get('${DATABASE_VARIABLE}', str(BASE_DIR / 'db.sqlite3')),`,
  );
  writeFileSync(settingsPath, `import os\n${settings}`);

  execFileSync(PYTHON, ['manage.py', 'migrate', '--noinput'], { cwd: dir, stdio: 'pipe' });
  return dir;
}

/**
 * Copies a migrated Django project into a fresh temp folder. The first call
 * runs startproject and migrate; later calls copy that result.
 */
export function createDjangoProject(): DjangoProject {
  template ??= buildTemplate();
  const dir = mkdtempSync(join(tmpdir(), 'django-project-'));
  cpSync(template, dir, { recursive: true });
  const databasePath = join(dir, 'db.sqlite3');

  return {
    dir,
    managePy: join(dir, 'manage.py'),
    databasePath,
    manage(args, env = {}) {
      return execFileSync(PYTHON, ['manage.py', ...args], {
        cwd: dir,
        env: { ...process.env, [DATABASE_VARIABLE]: databasePath, ...env },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Creates users through Django's ORM: plain users, active superusers and inactive ones. */
export function addUsers(
  project: DjangoProject,
  users: { plain: number; superusers: number; inactiveSuperusers?: number },
): void {
  // Unusable passwords ("!") skip PBKDF2 hashing, which is slow by design.
  const create = 'User.objects.create(password="!", ';
  const script = [
    'from django.contrib.auth.models import User',
    `for i in range(${users.plain}): ${create}username=f"user{i}")`,
    `for i in range(${users.superusers}): ${create}username=f"admin{i}", is_staff=True, is_superuser=True)`,
    `for i in range(${users.inactiveSuperusers ?? 0}): ${create}username=f"old{i}", is_staff=True, is_superuser=True, is_active=False)`,
  ].join('\n');
  project.manage(['shell', '-c', script]);
}

/** Removes the cached template; call from a file's afterAll. */
export function removeDjangoTemplate(): void {
  if (template) rmSync(template, { recursive: true, force: true });
  template = undefined;
}
