import { chmodSync, linkSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ConfigError, loadConfig } from '../src/bot/config.ts';
import { tempDir } from './helpers/engine.ts';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('configuration', () => {
  it('no Slack credentials selects the sandbox', () => {
    expect(loadConfig({}).mode).toBe('sandbox');
  });

  it('app token and bot token select Socket Mode', () => {
    expect(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1' }).mode).toBe('socket');
  });

  it('signing secret and bot token select HTTP mode', () => {
    expect(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 'abc' }).mode).toBe('http');
  });

  it('sandbox listens on loopback only', () => {
    expect(loadConfig({}).host).toBe('127.0.0.1');
  });

  it('every problem is reported at once', () => {
    const problems = problemsOf({ SLACK_SIGNING_SECRET: 'abc', PORT: 'eighty', LOG_LEVEL: 'loud' });
    expect(problems.some((problem) => problem.startsWith('PORT:'))).toBe(true);
    expect(problems.some((problem) => problem.startsWith('LOG_LEVEL:'))).toBe(true);
    expect(problems.some((problem) => problem.startsWith('SLACK_BOT_TOKEN: missing'))).toBe(true);
  });

  it('a problem shows the value that was given', () => {
    expect(problemsOf({ PORT: '99999' })[0]).toContain('"99999"');
  });

  it('a secret value is never shown in a problem', () => {
    const problems = problemsOf({ SLACK_BOT_TOKEN: 'not-a-token-value' });
    expect(problems.join('\n')).not.toContain('not-a-token-value');
  });

  it('bot token without a mode variable is rejected', () => {
    expect(problemsOf({ SLACK_BOT_TOKEN: 'xoxb-1' })[0]).toContain('SLACK_APP_TOKEN or SLACK_SIGNING_SECRET');
  });

  it('malformed responder id is rejected', () => {
    expect(problemsOf({ RESPONDERS: 'U123ABC,alex' })[0]).toContain('"alex"');
  });

  it('SLACK_API_URL must be http or https', () => {
    expect(problemsOf({ SLACK_API_URL: 'ftp://example.invalid/api/' })[0]).toMatch(/^SLACK_API_URL:/);
  });

  it('channel given by name is rejected', () => {
    expect(problemsOf({ OPS_CHANNEL: '#ops' })[0]).toMatch(/^OPS_CHANNEL: must be a channel id/);
  });

  it('alert action that is not JSON is rejected', () => {
    expect(problemsOf({ SENTRY_ALERT_ACTION_JSON: '{not json' })[0]).toMatch(/^SENTRY_ALERT_ACTION_JSON: must be a JSON object/);
  });

  it('vault store without its address is rejected', () => {
    expect(problemsOf({ SECRET_STORE: 'vault' })[0]).toContain('VAULT_ADDR and VAULT_TOKEN');
  });

  it('PORT defaults to 3000', () => {
    expect(loadConfig({}).port).toBe(3000);
  });
});

describe('configuration checked at start-up', () => {
  const dir = tempDir('config-');
  const script = join(dir.path, 'restart.sh');
  writeFileSync(script, '#!/bin/sh\nexit 0\n');
  chmodSync(script, 0o755);
  const plainFile = join(dir.path, 'notes.txt');
  writeFileSync(plainFile, 'not a program\n');
  chmodSync(plainFile, 0o644);
  const envFile = join(dir.path, '.env');
  writeFileSync(envFile, 'DJANGO_SECRET_KEY=x\n');
  const project = join(dir.path, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'manage.sh'), '#!/bin/sh\nexit 0\n');
  chmodSync(join(project, 'manage.sh'), 0o755);
  const database = join(dir.path, 'db.sqlite3');
  writeFileSync(database, '');

  afterAll(() => dir.remove());

  it('restart program that does not exist', () => {
    const missing = join(dir.path, 'no-such-restart');
    const problems = problemsOf({ DJANGO_RESTART_COMMAND: `${missing} --now` });
    expect(problems).toEqual([`DJANGO_RESTART_COMMAND: program ${missing} not found; install it or correct the path`]);
  });

  it('restart program that is not executable', () => {
    const [problem] = problemsOf({ DJANGO_RESTART_COMMAND: plainFile });
    expect(problem).toMatch(/^DJANGO_RESTART_COMMAND: program \S+notes\.txt is not executable by this process \(mode 0644/);
    expect(problem).toContain('chmod +x');
  });

  it('restart program that is a folder', () => {
    const [problem] = problemsOf({ DJANGO_RESTART_COMMAND: JSON.stringify([project, 'restart']) });
    expect(problem).toBe(`DJANGO_RESTART_COMMAND: program ${project} is a folder; give the path of the program inside it`);
  });

  it('restart program missing from PATH', () => {
    const [problem] = problemsOf({ DJANGO_RESTART_COMMAND: 'runbook-bot-no-such-program restart' });
    expect(problem).toMatch(/^DJANGO_RESTART_COMMAND: program runbook-bot-no-such-program not found in PATH \(/);
  });

  it('restart command with a shell operator', () => {
    const [problem] = problemsOf({ DJANGO_RESTART_COMMAND: 'systemctl restart app && echo done' });
    expect(problem).toMatch(/^DJANGO_RESTART_COMMAND: the command cannot be split into words \(it contains &/);
  });

  it('valid restart commands are accepted', () => {
    expect(problemsOf({ DJANGO_RESTART_COMMAND: `${script} --now` })).toEqual([]);
    expect(problemsOf({ DJANGO_RESTART_COMMAND: JSON.stringify([process.execPath, '-e', '0']) })).toEqual([]);
    expect(problemsOf({ DJANGO_RESTART_COMMAND: 'sh -c true' })).toEqual([]);
  });

  it('project command resolves in the project folder', () => {
    expect(problemsOf({ DJANGO_PROJECT_DIR: project, DJANGO_MIGRATE_COMMAND: './manage.sh migrate' })).toEqual([]);
    const [problem] = problemsOf({ DJANGO_PROJECT_DIR: project, DJANGO_STOP_COMMAND: './stop.sh' });
    expect(problem).toBe(`DJANGO_STOP_COMMAND: program ${join(project, 'stop.sh')} not found; install it or correct the path`);
  });

  it('every command variable is checked', () => {
    const names = [
      'DJANGO_RESTART_COMMAND',
      'DJANGO_STOP_COMMAND',
      'DJANGO_START_COMMAND',
      'DJANGO_MIGRATE_COMMAND',
      'RESTORE_TEST_SMOKE_COMMAND',
      'AUDIT_SECURITY_CHECK_COMMAND',
      'AUDIT_DEPLOY_CHECK_COMMAND',
      'AUDIT_PIP_COMMAND',
    ];
    const env = Object.fromEntries(names.map((name) => [name, plainFile]));
    const problems = problemsOf(env);
    for (const name of names) {
      expect(problems.some((problem) => problem.startsWith(`${name}: program ${plainFile} is not executable`)), name).toBe(true);
    }
  });

  it('Vault path tricks are rejected', () => {
    const tricks = ['..', '../sys/seal', 'django/../../sys/raw', 'django/./prod', '%2e%2e/sys', 'django?version=1', 'django#x', 'a//b', 'a\\b', 'dj ango', '/'];
    for (const trick of tricks) {
      const [problem] = problemsOf({ VAULT_PATH: trick });
      expect(problem, trick).toMatch(/^VAULT_PATH: .*; set it such as django\/production \(got /);
    }
  });

  it('Vault dot segment names the rule', () => {
    const [problem] = problemsOf({ VAULT_PATH: 'django/../../sys/raw' });
    expect(problem).toBe(
      'VAULT_PATH: must not contain . or .. segments, which would point the request outside the secret path; ' +
        'set it such as django/production (got "django/../../sys/raw")',
    );
  });

  it('Vault mount tricks are rejected', () => {
    expect(problemsOf({ VAULT_MOUNT: '../sys' })[0]).toMatch(/^VAULT_MOUNT: must not contain \. or \.\. segments/);
  });

  it('plain Vault paths are accepted', () => {
    for (const path of ['django', 'django/production', 'team-a/django_1.4', '/django/', 'secret/']) {
      expect(problemsOf({ VAULT_PATH: path, VAULT_MOUNT: path }), path).toEqual([]);
    }
  });

  it('plain http to a remote Vault is rejected', () => {
    const [problem] = problemsOf({ VAULT_ADDR: 'http://vault.internal:8200' });
    expect(problem).toMatch(/^VAULT_ADDR: must use https, because every request carries VAULT_TOKEN/);
  });

  it('loopback http and https Vault are accepted', () => {
    for (const addr of ['http://127.0.0.1:8200', 'http://localhost:8200', 'http://[::1]:8200', 'https://vault.internal:8200']) {
      expect(problemsOf({ VAULT_ADDR: addr }), addr).toEqual([]);
    }
  });

  it('URL password is rejected and hidden', () => {
    const [problem] = problemsOf({ VAULT_ADDR: 'https://admin:hunter2-password@vault.internal' });
    expect(problem).toMatch(/^VAULT_ADDR: must not contain a user name or password/);
    expect(problem).not.toContain('hunter2-password');
  });

  it('Slack and Sentry URLs need their paths', () => {
    expect(problemsOf({ SLACK_API_URL: 'https://slack.com/' })[0]).toMatch(/^SLACK_API_URL: must end in \/api\//);
    expect(problemsOf({ SENTRY_API_URL: 'https://sentry.io/' })[0]).toMatch(/^SENTRY_API_URL: must end in \/api\/0\//);
    expect(problemsOf({ SENTRY_API_URL: 'https://sentry.io/api/0' })).toEqual([]);
  });

  it('plain http to remote Slack is rejected', () => {
    expect(problemsOf({ SLACK_API_URL: 'http://slack.example.com/api/' })[0]).toMatch(/^SLACK_API_URL: must use https/);
  });

  it('missing .env file is rejected', () => {
    const missing = join(dir.path, 'missing.env');
    expect(problemsOf({ DJANGO_ENV_FILE: missing })).toEqual([
      `DJANGO_ENV_FILE: file not found; the bot never creates it, so create it or set the path of the Django app's .env (got ${JSON.stringify(missing)})`,
    ]);
    expect(problemsOf({ DJANGO_ENV_FILE: dir.path })[0]).toMatch(/^DJANGO_ENV_FILE: is a folder, not a file/);
    expect(problemsOf({ DJANGO_ENV_FILE: envFile })).toEqual([]);
  });

  it('missing folders are rejected', () => {
    expect(problemsOf({ BACKUP_DIR: join(dir.path, 'backups') })[0]).toMatch(/^BACKUP_DIR: folder not found; the bot never creates it/);
    expect(problemsOf({ BACKUP_DIR: envFile })[0]).toMatch(/^BACKUP_DIR: is not a folder/);
    expect(problemsOf({ DJANGO_PROJECT_DIR: join(dir.path, 'nowhere') })[0]).toMatch(/^DJANGO_PROJECT_DIR: folder not found/);
    expect(problemsOf({ BACKUP_DIR: dir.path, DJANGO_PROJECT_DIR: project })).toEqual([]);
  });

  it('staging path on production is rejected', () => {
    const hardLink = join(dir.path, 'same-db.sqlite3');
    linkSync(database, hardLink);
    for (const staging of [database, join(dir.path, '.', 'db.sqlite3'), hardLink]) {
      const [problem] = problemsOf({ DJANGO_DATABASE_PATH: database, RESTORE_TEST_STAGING_PATH: staging });
      expect(problem, staging).toMatch(/^RESTORE_TEST_STAGING_PATH: is the production database DJANGO_DATABASE_PATH/);
    }
    expect(problemsOf({ DJANGO_DATABASE_PATH: database, RESTORE_TEST_STAGING_PATH: join(dir.path, 'staging.sqlite3') })).toEqual([]);
  });

  it('malformed audit and Sentry values are rejected', () => {
    expect(problemsOf({ AUDIT_TLS_HOST: 'example.com:70000' })[0]).toMatch(/^AUDIT_TLS_HOST: must be a host name/);
    expect(problemsOf({ AUDIT_TLS_HOST: 'https://example.com' })[0]).toMatch(/^AUDIT_TLS_HOST: must be a host name/);
    expect(problemsOf({ AUDIT_REQUIRED_ENV: 'DJANGO_SECRET_KEY, bad-name' })[0]).toMatch(/^AUDIT_REQUIRED_ENV: "bad-name" is not a variable name/);
    expect(problemsOf({ RESTORE_TEST_TABLE: 'blog_post; DROP TABLE x' })[0]).toMatch(/^RESTORE_TEST_TABLE: must be a table name/);
    expect(problemsOf({ SENTRY_ORG: '../other-org' })[0]).toMatch(/^SENTRY_ORG: must be a slug/);
  });

  it('well-formed audit values are accepted', () => {
    const env = { AUDIT_TLS_HOST: 'example.com:443', AUDIT_REQUIRED_ENV: 'DJANGO_SECRET_KEY,SENTRY_DSN', RESTORE_TEST_TABLE: 'blog_post' };
    expect(problemsOf(env)).toEqual([]);
  });

  it('token user name is masked', () => {
    const [problem] = problemsOf({ VAULT_ADDR: 'https://hvs.SECRET@vault.example' });
    expect(problem).toMatch(/^VAULT_ADDR: must not contain a user name or password/);
    expect(problem).toContain('set it such as https://vault.example.com:8200');
    expect(problem).toContain('(got "https://***@vault.example")');
    expect(problem).not.toContain('hvs.SECRET');
  });

  it('token in a query string is masked', () => {
    const problems = problemsOf({ VAULT_ADDR: 'https://vault.example:8200/?token=hvs.QUERYSECRET' }).join('\n');
    expect(problems).not.toContain('QUERYSECRET');
  });

  it('command password is not echoed', () => {
    const problems = problemsOf({ DJANGO_RESTART_COMMAND: "mysqladmin '-pCOMMANDSECRET" }).join('\n');
    expect(problems).not.toContain('COMMANDSECRET');
  });

  it('unclosed quote says how to fix', () => {
    const [problem] = problemsOf({ DJANGO_RESTART_COMMAND: "mysqladmin '-pCOMMANDSECRET" });
    expect(problem).toMatch(/^DJANGO_RESTART_COMMAND: the command cannot be split into words .*; fix its quotes or give a JSON array of words$/);
  });

  it('environment assignment is not echoed', () => {
    const [problem] = problemsOf({ DJANGO_RESTART_COMMAND: 'PGPASSWORD=ASSIGNSECRET systemctl restart app' });
    expect(problem).toBe("DJANGO_RESTART_COMMAND: the command starts with PGPASSWORD=…, but commands run without a shell; set PGPASSWORD in the bot's environment, or start the command with /usr/bin/env");
  });

  it('unparsable URL password is masked', () => {
    const [problem] = problemsOf({ VAULT_ADDR: 'https://u:SECRETPASS@vault example' });
    expect(problem).toMatch(/^VAULT_ADDR: must be an http or https URL/);
    expect(problem).toContain('set it such as https://vault.example.com:8200');
    expect(problem).toContain('(got "https://***@vault example")');
    expect(problem).not.toContain('SECRETPASS');
  });

  it('URL credentials in a command are hidden', () => {
    const [problem] = problemsOf({ DJANGO_RESTART_COMMAND: 'curl https://deploy:SECRETPASS@deploy.example/restart && true' });
    expect(problem).toMatch(/^DJANGO_RESTART_COMMAND: the command cannot be split into words /);
    expect(problem).not.toContain('SECRETPASS');
  });

  it('Slack URL with query string', () => {
    const [problem] = problemsOf({ SLACK_API_URL: 'https://slack.com/api/?team=T1' });
    expect(problem).toMatch(/^SLACK_API_URL: must not contain a query string/);
    expect(problem).toContain('set it such as https://slack.com/api/');
    expect(problem).toContain('(got "https://slack.com/api/?…")');
  });

  it('Slack URL with fragment', () => {
    const [problem] = problemsOf({ SLACK_API_URL: 'https://slack.com/api/#top' });
    expect(problem).toMatch(/^SLACK_API_URL: must not contain a query string \(\?\) or fragment/);
    expect(problem).toContain('set it such as https://slack.com/api/');
    expect(problem).toContain('(got "https://slack.com/api/#…")');
  });

  it('public URL with user name', () => {
    const [problem] = problemsOf({ PUBLIC_BASE_URL: 'https://bot-user@bot.example' });
    expect(problem).toMatch(/^PUBLIC_BASE_URL: must not contain a user name or password/);
    expect(problem).toContain('set it such as https://runbook-bot.example.com');
    expect(problem).toContain('(got "https://***@bot.example")');
  });

  it('public URL with password', () => {
    const [problem] = problemsOf({ PUBLIC_BASE_URL: 'https://admin:SECRETPASS@bot.example' });
    expect(problem).toMatch(/^PUBLIC_BASE_URL: must not contain a user name or password/);
    expect(problem).toContain('set it such as https://runbook-bot.example.com');
    expect(problem).not.toContain('SECRETPASS');
  });

  it('Slack URL without final slash', () => {
    const config = loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1', SLACK_API_URL: 'https://slack.com/api' });
    expect(config.slack.apiUrl).toBe('https://slack.com/api/');
  });

  it('loopback localhost with final dot', () => {
    expect(problemsOf({ VAULT_ADDR: 'http://localhost.:8200' })).toEqual([]);
  });

  it('loopback IPv4-mapped IPv6 address', () => {
    expect(problemsOf({ VAULT_ADDR: 'http://[::ffff:127.0.0.1]:8200' })).toEqual([]);
  });

  it('mapped address outside loopback', () => {
    const [problem] = problemsOf({ VAULT_ADDR: 'http://[::ffff:10.0.0.1]:8200' });
    expect(problem).toMatch(/^VAULT_ADDR: must use https/);
    expect(problem).toContain('set it such as https://vault.example.com:8200');
  });

  it('PORT with spaces is trimmed', () => {
    expect(loadConfig({ PORT: ' 3000 ' }).port).toBe(3000);
  });

  it('start-up problems are reported together', () => {
    const problems = problemsOf({
      DJANGO_RESTART_COMMAND: plainFile,
      VAULT_PATH: '../sys',
      DJANGO_ENV_FILE: join(dir.path, 'missing.env'),
      PORT: 'eighty',
    });
    expect(problems.map((problem) => problem.split(':')[0]).sort()).toEqual(['DJANGO_ENV_FILE', 'DJANGO_RESTART_COMMAND', 'PORT', 'VAULT_PATH']);
  });
});
