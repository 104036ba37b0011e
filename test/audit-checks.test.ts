import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  checkDeploy,
  checkRequiredEnv,
  checkTlsCertificate,
  latestRestoreTest,
  parseCheckOutput,
  pipOutdated,
  runSecurityCheckScript,
} from '../src/actions/audit-checks.ts';
import { createLogger } from '../src/bot/logger.ts';
import { openDatabase, type Db } from '../src/store/db.ts';
import { saveRestoreTest } from '../src/store/restore-tests.ts';
import { PYTHON, createDjangoProject, removeDjangoTemplate, type DjangoProject } from './helpers/django-db.ts';

const DAY_MS = 24 * 60 * 60 * 1000;
const logger = createLogger('silent', { write: () => undefined });

let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'audit-test-'));
});

afterAll(() => {
  removeDjangoTemplate();
  rmSync(work, { recursive: true, force: true });
});

describe('runSecurityCheckScript', () => {
  function script(body: string): string[] {
    const path = join(work, `security_check_${randomBytes(4).toString('hex')}.py`);
    writeFileSync(path, body);
    return [PYTHON, path, '--json'];
  }

  it('summarises passing checks', async () => {
    const argv = script(
      [
        'import json, sys',
        'print("reading settings", file=sys.stderr)',
        'print(json.dumps({"checks": [{"name": "debug_off", "status": "pass"}, {"name": "hsts", "status": "ok"}]}, indent=2))',
      ].join('\n'),
    );

    const result = await runSecurityCheckScript(argv, { logger });

    expect(result.status).toBe('pass');
    expect(result.summary).toContain('2 checks, 2 passed');
  });

  it('lists failed checks first', async () => {
    const argv = script(
      [
        'import json',
        'print(json.dumps([',
        '  {"id": "csp", "severity": "medium", "message": "CSP in report-only mode"},',
        '  {"id": "debug", "passed": False, "message": "DEBUG is on"},',
        '  {"id": "hosts", "passed": True}]))',
      ].join('\n'),
    );

    const result = await runSecurityCheckScript(argv, { logger });

    expect(result.status).toBe('fail');
    expect(result.lines).toEqual(['FAIL debug: DEBUG is on', 'WARN csp: CSP in report-only mode']);
  });

  it('fails on output without JSON', async () => {
    const argv = script('print("All good, probably")');

    const result = await runSecurityCheckScript(argv, { logger });

    expect(result.status).toBe('fail');
    expect(result.summary).toContain('without JSON output');
  });

  it('fails for missing program', async () => {
    const result = await runSecurityCheckScript([join(work, 'no-such-program')], { logger });

    expect(result.status).toBe('fail');
    expect(result.summary).toContain('no-such-program');
  });

  it('skips when not configured', async () => {
    const result = await runSecurityCheckScript(undefined, { logger });

    expect(result.status).toBe('skipped');
  });
});

describe('checkDeploy', () => {
  let project: DjangoProject;

  beforeAll(() => {
    project = createDjangoProject();
    const settingsDir = join(project.dir, 'site_under_test');
    writeFileSync(
      join(settingsDir, 'settings_secure.py'),
      [
        'from .settings import *',
        'DEBUG = False',
        'ALLOWED_HOSTS = ["app.example.test"]',
        `SECRET_KEY = "${randomBytes(40).toString('hex')}"`,
        'SECURE_HSTS_SECONDS = 31536000',
        'SECURE_HSTS_INCLUDE_SUBDOMAINS = True',
        'SECURE_HSTS_PRELOAD = True',
        'SECURE_SSL_REDIRECT = True',
        'SESSION_COOKIE_SECURE = True',
        'CSRF_COOKIE_SECURE = True',
      ].join('\n'),
    );
    writeFileSync(
      join(settingsDir, 'settings_broken.py'),
      ['from .settings_secure import *', 'CSRF_FAILURE_VIEW = "no_such_module.view"'].join('\n'),
    );
  });

  afterAll(() => project.remove());

  const argv = (settings: string) => [
    PYTHON,
    'manage.py',
    'check',
    '--deploy',
    '--fail-level',
    'WARNING',
    `--settings=site_under_test.${settings}`,
  ];

  it('lists deploy warnings by id', async () => {
    const result = await checkDeploy(argv('settings'), { logger, cwd: project.dir });

    expect(result.status).toBe('warn');
    expect(result.lines.map((line) => line.split(' ')[0])).toEqual([
      'security.W004',
      'security.W008',
      'security.W009',
      'security.W012',
      'security.W016',
      'security.W018',
      'security.W020',
    ]);
    expect(result.summary).toBe('check --deploy found 7 warnings');
  });

  it('passes with secure settings', async () => {
    const result = await checkDeploy(argv('settings_secure'), { logger, cwd: project.dir });

    expect(result.status).toBe('pass');
    expect(result.lines).toEqual([]);
  });

  it('fails on deploy errors', async () => {
    const result = await checkDeploy(argv('settings_broken'), { logger, cwd: project.dir });

    expect(result.status).toBe('fail');
    expect(result.lines.some((line) => line.startsWith('security.E102 (error)'))).toBe(true);
  });

  it('fails when settings do not import', async () => {
    const result = await checkDeploy(argv('settings_missing'), { logger, cwd: project.dir });

    expect(result.status).toBe('fail');
    expect(result.lines.join('\n')).toContain('settings_missing');
  });

  it('parses hints and silenced footer', () => {
    const output = [
      'SystemCheckError: System check identified some issues:',
      '',
      'ERRORS:',
      'auth.User: (auth.E003) \'username\' must be unique.',
      '\tHINT: Add unique=True.',
      '',
      'WARNINGS:',
      '?: (security.W004) You have not set SECURE_HSTS_SECONDS.',
      '',
      'System check identified 2 issues (1 silenced).',
    ].join('\n');

    expect(parseCheckOutput(output)).toEqual([
      { level: 'error', object: 'auth.User', id: 'auth.E003', message: "'username' must be unique." },
      { level: 'warning', object: '?', id: 'security.W004', message: 'You have not set SECURE_HSTS_SECONDS.' },
    ]);
  });
});

describe('checkRequiredEnv', () => {
  it('lists missing names without values', () => {
    const secret = `s3cret-${randomBytes(8).toString('hex')}`;
    const env = { DJANGO_SECRET_KEY: secret, SENTRY_DSN: '  ', ALLOWED_HOSTS: 'app.example.test' };

    const result = checkRequiredEnv(['DJANGO_SECRET_KEY', 'SENTRY_DSN', 'DATABASE_URL', 'ALLOWED_HOSTS'], env);

    expect(result.status).toBe('fail');
    expect(result.lines).toEqual(['DATABASE_URL: missing', 'SENTRY_DSN: set but empty']);
    expect(JSON.stringify(result).includes(secret)).toBe(false);
  });

  it('passes when all are set', () => {
    const result = checkRequiredEnv(['A', 'B'], { A: '1', B: '2' });

    expect(result.status).toBe('pass');
    expect(result.lines).toEqual(['A: set', 'B: set']);
  });
});

describe('checkTlsCertificate', () => {
  let certs: string;
  const servers: TlsServer[] = [];

  function openssl(args: string[]): void {
    execFileSync('/usr/bin/openssl', args, { cwd: certs, stdio: 'pipe' });
  }

  function leaf(name: string, days: number, san = 'IP:127.0.0.1,DNS:localhost'): { key: string; cert: string } {
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`,
      '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    writeFileSync(join(certs, `${name}.ext`), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\n`);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
      '-out', `${name}.pem`, '-days', String(days), '-extfile', `${name}.ext`]);
    return { key: readFileSync(join(certs, `${name}.key`), 'utf8'), cert: readFileSync(join(certs, `${name}.pem`), 'utf8') };
  }

  async function serve(pair: { key: string; cert: string }): Promise<number> {
    const server = createTlsServer(pair, (socket) => socket.end());
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return (server.address() as AddressInfo).port;
  }

  let ca: string;

  beforeAll(() => {
    certs = join(work, 'certs');
    mkdirSync(certs);
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key',
      '-out', 'ca.pem', '-days', '3650', '-subj', '/CN=Audit Test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
    ca = readFileSync(join(certs, 'ca.pem'), 'utf8');
  });

  afterAll(async () => {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  });

  it('passes with 90 days left', async () => {
    const port = await serve(leaf('long', 90));

    const result = await checkTlsCertificate('127.0.0.1', port, Date.now(), { ca });

    expect(result.status).toBe('pass');
    expect(result.lines).toContain('days left: 89');
  });

  it('warns under 30 days left', async () => {
    const port = await serve(leaf('short', 10));

    const result = await checkTlsCertificate('127.0.0.1', port, Date.now(), { ca });

    expect(result.status).toBe('warn');
    expect(result.summary).toContain('expires in 9 days');
  });

  it('fails for expired certificate', async () => {
    const port = await serve(leaf('expiring', 2));

    const result = await checkTlsCertificate('127.0.0.1', port, Date.now() + 5 * DAY_MS, { ca });

    expect(result.status).toBe('fail');
    expect(result.summary).toContain('expired');
  });

  it('fails for untrusted certificate', async () => {
    const port = await serve(leaf('untrusted', 90));

    const result = await checkTlsCertificate('127.0.0.1', port, Date.now());

    expect(result.status).toBe('fail');
    expect(result.summary).toContain('not trusted');
  });

  it('fails for wrong host name', async () => {
    const port = await serve(leaf('other-host', 90, 'DNS:other.example.test'));

    const result = await checkTlsCertificate('127.0.0.1', port, Date.now(), { ca, servername: 'localhost' });

    expect(result.status).toBe('fail');
    expect(result.summary).toContain('not trusted');
  });

  it('fails when nothing listens', async () => {
    const server = createHttpServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    await new Promise((resolve) => server.close(resolve));

    const result = await checkTlsCertificate('127.0.0.1', port, Date.now(), { ca });

    expect(result.status).toBe('fail');
    expect(result.summary).toContain('ECONNREFUSED');
  });
});

describe('pipOutdated', () => {
  let index: HttpServer;
  let indexUrl: string;
  let site: string;
  const requests: string[] = [];
  // A package index double for PEP 503's simple API: one HTML page of file
  // links per project at /simple/<normalized-name>/, 404 for unknown names.
  const projects: Record<string, string[]> = {
    foo: ['foo-1.0.tar.gz', 'foo-2.1.tar.gz'],
    bar: ['bar-3.0.tar.gz'],
  };

  beforeAll(async () => {
    index = createHttpServer((request, response) => {
      requests.push(`${request.method} ${request.url}`);
      const match = /^\/simple\/([a-z0-9-]+)\/$/.exec(request.url ?? '');
      const files = match && request.method === 'GET' ? projects[match[1]] : undefined;
      if (!files) {
        response.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const links = files.map((file) => `<a href="/files/${file}#sha256=${'0'.repeat(64)}">${file}</a>`).join('\n');
      response
        .writeHead(200, { 'content-type': 'text/html' })
        .end(`<!DOCTYPE html><html><body>\n${links}\n</body></html>`);
    });
    await new Promise<void>((resolve) => index.listen(0, '127.0.0.1', resolve));
    indexUrl = `http://127.0.0.1:${(index.address() as AddressInfo).port}/simple/`;

    site = join(work, 'site-packages');
    for (const [name, version] of [['foo', '1.0'], ['bar', '3.0']]) {
      const info = join(site, `${name}-${version}.dist-info`);
      mkdirSync(info, { recursive: true });
      writeFileSync(join(info, 'METADATA'), `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n`);
      writeFileSync(join(info, 'RECORD'), '');
    }
  });

  afterAll(() => new Promise<void>((resolve) => index.close(() => resolve())));

  const argv = () => [
    PYTHON, '-m', 'pip', 'list', '--outdated', '--format=json', '--isolated', '--disable-pip-version-check',
    '--no-cache-dir', '--retries', '0', '--path', site, '--index-url', indexUrl,
  ];

  it('warns about outdated packages', async () => {
    const result = await pipOutdated(argv(), { logger });

    expect(result.status).toBe('warn');
    expect(result.lines).toEqual(['foo 1.0 → 2.1']);
    expect(requests).toContain('GET /simple/foo/');
  });

  it('fails on a non-JSON command', async () => {
    const result = await pipOutdated([PYTHON, '-m', 'pip', 'list', '--isolated', '--path', site], { logger });

    expect(result.status).toBe('fail');
    expect(result.summary).toContain('--format=json');
  });

  it('fails when pip exits non-zero', async () => {
    const result = await pipOutdated([PYTHON, '-m', 'pip', 'list', '--no-such-option'], { logger });

    expect(result.status).toBe('fail');
    expect(result.summary).toContain('exited with status');
  });
});

describe('latestRestoreTest', () => {
  let db: Db;
  const now = Date.UTC(2026, 4, 1, 9, 0, 0);

  beforeAll(() => {
    db = openDatabase(join(work, 'audit-bot.sqlite3'));
  });

  afterAll(() => db.close());

  it('warns when none recorded', () => {
    expect(latestRestoreTest(db, now).status).toBe('warn');
  });

  it('passes for a recent pass', () => {
    saveRestoreTest(db, { at: now - 3 * DAY_MS, passed: true, report: { users: 12, durationMs: 4200, problems: [] } });

    const result = latestRestoreTest(db, now);

    expect(result.status).toBe('pass');
    expect(result.lines).toContain('users in the copy: 12');
  });

  it('warns for an old pass', () => {
    expect(latestRestoreTest(db, now + 60 * DAY_MS).status).toBe('warn');
  });

  it('fails for a failed test', () => {
    saveRestoreTest(db, {
      at: now - DAY_MS,
      passed: false,
      report: { problems: ['migrations exited with status 1'] },
    });

    const result = latestRestoreTest(db, now);

    expect(result.status).toBe('fail');
    expect(result.lines).toContain('problem: migrations exited with status 1');
  });
});
