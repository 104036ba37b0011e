import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { generateDjangoSecretKey } from '../src/actions/django.ts';
import { EnvFileStore, formatEnvValue } from '../src/actions/secrets/env-file.ts';
import { ActionError } from '../src/bot/errors.ts';
import { createLogger } from '../src/bot/logger.ts';
import { DJANGO_PROJECT_DIR, DJANGO_PYTHON } from './helpers/django.ts';

let folder: string;
let envPath: string;

beforeEach(() => {
  folder = mkdtempSync(join(tmpdir(), 'env-store-'));
  envPath = join(folder, '.env');
});

afterEach(() => {
  chmodSync(folder, 0o755);
  rmSync(folder, { recursive: true, force: true });
});

function captureLogs() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => lines.push(line) });
  return { logger, text: () => lines.join('') };
}

/** Parses a file with the Django test site's parser, the one its settings use. */
function readWithDjangoParser(path: string): Record<string, string> {
  const script =
    'import json, sys\n' +
    `sys.path.insert(0, ${JSON.stringify(DJANGO_PROJECT_DIR)})\n` +
    'from testsite.envfile import read_env_file\n' +
    'print(json.dumps(read_env_file(sys.argv[1])))\n';
  const env = { ...process.env, PYTHONDONTWRITEBYTECODE: '1' };
  return JSON.parse(execFileSync(DJANGO_PYTHON, ['-c', script, path], { encoding: 'utf8', env }));
}

async function expectActionError(promise: Promise<unknown>): Promise<ActionError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ActionError);
  return error as ActionError;
}

function strayFiles(): string[] {
  return readdirSync(folder).filter((name) => name.endsWith('.tmp'));
}

const TRICKY_VALUES: Record<string, string> = {
  GENERATED: generateDjangoSecretKey(),
  SYMBOLS: 'a$b#c%d&e(f)g*h=i!j@k^l-m_n+o',
  SPACES: '  leading and trailing  ',
  SINGLE_QUOTE: "it's",
  DOUBLE_QUOTE: 'say "hi"',
  BACKSLASH: 'C:\\path\\n\\$HOME',
  DOLLAR_VARIABLE: '${HOME}$USER',
  HASH_AFTER_SPACE: 'value # not a comment',
  NEWLINE: 'line one\nline two',
  TAB: 'a\tb',
  QUOTES_AND_NEWLINE: "'\"\n\\",
  EMPTY: '',
  UNICODE: 'clé-ß-日本',
  COMMA_LIST: 'k1,k2,k3',
};

describe('EnvFileStore', () => {
  it('round trip keeps tricky values', async () => {
    writeFileSync(envPath, '# settings\n');
    const store = new EnvFileStore(envPath);

    await store.write(TRICKY_VALUES);

    for (const [key, value] of Object.entries(TRICKY_VALUES)) {
      expect(await store.read(key), key).toBe(value);
    }
  });

  it('Django parser reads written values', async () => {
    writeFileSync(envPath, '# settings\n');
    await new EnvFileStore(envPath).write(TRICKY_VALUES);

    const parsed = readWithDjangoParser(envPath);

    for (const [key, value] of Object.entries(TRICKY_VALUES)) {
      expect(parsed[key], key).toBe(value);
    }
  });

  it('Django parser agrees on hand-written forms', async () => {
    const text = [
      '\uFEFF# comment',
      '',
      'PLAIN=abc',
      'export EXPORTED=yes',
      '  INDENTED = spaced value   # trailing comment',
      'HASH_INSIDE=abc#def',
      'EMPTY_COMMENT= # only a comment',
      "SINGLE='literal \\n $HOME' # note",
      'DOUBLE="escaped \\n \\t \\" \\\\ \\$ \\q"',
      'DUPLICATE=first',
      'DUPLICATE=second',
      'WINDOWS=crlf\r',
      '',
    ].join('\n');
    writeFileSync(envPath, text);
    const store = new EnvFileStore(envPath);

    const parsed = readWithDjangoParser(envPath);

    for (const key of Object.keys(parsed)) {
      expect(await store.read(key), key).toBe(parsed[key]);
    }
    expect(Object.keys(parsed).sort()).toEqual(
      ['DOUBLE', 'DUPLICATE', 'EMPTY_COMMENT', 'EXPORTED', 'HASH_INSIDE', 'INDENTED', 'PLAIN', 'SINGLE', 'WINDOWS'],
    );
    expect(parsed.INDENTED).toBe('spaced value');
    expect(parsed.DOUBLE).toBe('escaped \n \t " \\ $ \\q');
    expect(parsed.SINGLE).toBe('literal \\n $HOME');
    expect(parsed.EMPTY_COMMENT).toBe('');
    expect(parsed.DUPLICATE).toBe('second');
  });

  it('write keeps other lines', async () => {
    const original = [
      '# Django settings',
      '',
      'export DJANGO_SECRET_KEY=old   # rotated quarterly',
      'SENTRY_DSN="https://example.invalid/1"',
      '   # indented comment',
      'DEBUG=0',
    ].join('\n');
    writeFileSync(envPath, original);
    const store = new EnvFileStore(envPath);

    await store.write({ DJANGO_SECRET_KEY: 'n3w$key#(x)', NEW_SETTING: 'added' });

    const lines = readFileSync(envPath, 'utf8').split('\n');
    expect(lines[0]).toBe('# Django settings');
    expect(lines[1]).toBe('');
    expect(lines[2]).toBe("export DJANGO_SECRET_KEY='n3w$key#(x)'   # rotated quarterly");
    expect(lines[3]).toBe('SENTRY_DSN="https://example.invalid/1"');
    expect(lines[4]).toBe('   # indented comment');
    expect(lines[5]).toBe('DEBUG=0');
    expect(lines[6]).toBe('NEW_SETTING=added');
    expect(lines).toHaveLength(8);
  });

  it('write keeps CRLF line endings', async () => {
    writeFileSync(envPath, 'A=1\r\nB=2\r\n');

    await new EnvFileStore(envPath).write({ A: 'one', C: 'three' });

    expect(readFileSync(envPath, 'utf8')).toBe('A=one\r\nB=2\r\nC=three\r\n');
  });

  it('null deletes only that key', async () => {
    writeFileSync(envPath, 'A=1\n# keep\nB=2\nA=3\n');
    const store = new EnvFileStore(envPath);

    await store.write({ A: null, MISSING: null });

    expect(readFileSync(envPath, 'utf8')).toBe('# keep\nB=2\n');
  });

  it('duplicate keys collapse to one', async () => {
    writeFileSync(envPath, 'A=1\nB=2\nA=3\n');

    await new EnvFileStore(envPath).write({ A: 'new' });

    expect(readFileSync(envPath, 'utf8')).toBe('A=new\nB=2\n');
  });

  it('write keeps mode and previous copy', async () => {
    writeFileSync(envPath, 'A=1\n');
    chmodSync(envPath, 0o640);

    await new EnvFileStore(envPath).write({ A: '2' });

    expect(statSync(envPath).mode & 0o7777).toBe(0o640);
    expect(statSync(`${envPath}.previous`).mode & 0o7777).toBe(0o600);
    expect(readFileSync(`${envPath}.previous`, 'utf8')).toBe('A=1\n');
    expect(readFileSync(envPath, 'utf8')).toBe('A=2\n');
    expect(strayFiles()).toEqual([]);
  });

  it('previous copy is private and replaced', async () => {
    writeFileSync(envPath, 'A=1\n');
    chmodSync(envPath, 0o644);
    writeFileSync(`${envPath}.previous`, 'A=older\n');
    chmodSync(`${envPath}.previous`, 0o666);
    const store = new EnvFileStore(envPath);

    await store.write({ A: '2' });
    expect(statSync(`${envPath}.previous`).mode & 0o7777).toBe(0o600);
    expect(readFileSync(`${envPath}.previous`, 'utf8')).toBe('A=1\n');

    await store.write({ A: '3' });
    expect(statSync(`${envPath}.previous`).mode & 0o7777).toBe(0o600);
    expect(readFileSync(`${envPath}.previous`, 'utf8')).toBe('A=2\n');
    expect(statSync(envPath).mode & 0o7777).toBe(0o644);
    expect(readFileSync(envPath, 'utf8')).toBe('A=3\n');
    expect(readdirSync(folder).sort()).toEqual(['.env', '.env.previous']);
  });

  it('unchanged values leave file alone', async () => {
    writeFileSync(envPath, 'A=1\n');

    await new EnvFileStore(envPath).write({ A: '1' });

    expect(readdirSync(folder)).toEqual(['.env']);
  });

  it('read-only file changes nothing', async () => {
    const key = generateDjangoSecretKey();
    writeFileSync(envPath, 'DJANGO_SECRET_KEY=old\n');
    chmodSync(envPath, 0o444);
    const logs = captureLogs();

    const error = await expectActionError(
      new EnvFileStore(envPath, logs.logger).write({ DJANGO_SECRET_KEY: key }),
    );

    expect(error.code).toBe('secret_store_unwritable');
    expect(error.message).toContain(envPath);
    expect(error.message).toContain('read-only (mode 0444)');
    expect(error.message).not.toContain(key);
    expect(readFileSync(envPath, 'utf8')).toBe('DJANGO_SECRET_KEY=old\n');
    expect(statSync(envPath).mode & 0o7777).toBe(0o444);
    expect(readdirSync(folder)).toEqual(['.env']);
    expect(logs.text()).not.toContain(key);
  });

  it('read-only folder changes nothing', async () => {
    const key = generateDjangoSecretKey();
    writeFileSync(envPath, 'DJANGO_SECRET_KEY=old\n');
    chmodSync(folder, 0o555);

    const error = await expectActionError(new EnvFileStore(envPath).write({ DJANGO_SECRET_KEY: key }));

    expect(error.code).toBe('secret_store_unwritable');
    expect(error.message).toContain(`the folder ${folder}`);
    expect(error.message).toContain('read-only (mode 0555)');
    expect(error.message).not.toContain(key);
    expect(readFileSync(envPath, 'utf8')).toBe('DJANGO_SECRET_KEY=old\n');
    expect(readdirSync(folder)).toEqual(['.env']);
  });

  it('missing file reports not found', async () => {
    const store = new EnvFileStore(envPath);

    const readError = await expectActionError(store.read('A'));
    const writeError = await expectActionError(store.write({ A: '1' }));

    expect(readError.code).toBe('secret_store_not_found');
    expect(writeError.code).toBe('secret_store_not_found');
    expect(writeError.message).toContain('DJANGO_ENV_FILE');
    expect(readdirSync(folder)).toEqual([]);
  });

  it('malformed file is rejected', async () => {
    const original = "A=1\nB='unterminated\n";
    writeFileSync(envPath, original);

    const error = await expectActionError(new EnvFileStore(envPath).write({ A: '2' }));

    expect(error.code).toBe('secret_store_unreadable');
    expect(error.message).toContain('line 2');
    expect(readFileSync(envPath, 'utf8')).toBe(original);
  });

  it('text after closing quote rejected', async () => {
    writeFileSync(envPath, "A='x'y\n");

    const error = await expectActionError(new EnvFileStore(envPath).read('A'));

    expect(error.message).toContain('line 1: unexpected text after the closing quote');
  });

  it('invalid names and NUL rejected', async () => {
    writeFileSync(envPath, 'A=1\n');
    const store = new EnvFileStore(envPath);

    const badName = await expectActionError(store.write({ 'BAD NAME': 'x' }));
    const nul = await expectActionError(store.write({ A: 'x\0y' }));

    expect(badName.code).toBe('secret_store_invalid');
    expect(nul.code).toBe('secret_store_invalid');
    expect(nul.message).not.toContain('x\0y');
    expect(readFileSync(envPath, 'utf8')).toBe('A=1\n');
  });

  it('symbolic link target is replaced', async () => {
    const target = join(folder, 'real.env');
    writeFileSync(target, 'A=1\n');
    symlinkSync(target, envPath);

    await new EnvFileStore(envPath).write({ A: '2' });

    expect(readFileSync(target, 'utf8')).toBe('A=2\n');
    expect(statSync(envPath, { throwIfNoEntry: true }).isFile()).toBe(true);
    expect(readFileSync(`${target}.previous`, 'utf8')).toBe('A=1\n');
  });

  it('parallel writes are serialised', async () => {
    writeFileSync(envPath, 'A=0\n');
    const store = new EnvFileStore(envPath);
    const otherStore = new EnvFileStore(envPath);

    await Promise.all([store.write({ A: '1' }), otherStore.write({ B: '2' }), store.write({ C: '3' })]);

    expect(readFileSync(envPath, 'utf8')).toBe('A=1\nB=2\nC=3\n');
    expect(strayFiles()).toEqual([]);
  });

  it('write logs key names only', async () => {
    const key = generateDjangoSecretKey();
    writeFileSync(envPath, 'A=1\n');
    const logs = captureLogs();

    await new EnvFileStore(envPath, logs.logger).write({ DJANGO_SECRET_KEY: key });

    expect(logs.text()).toContain('DJANGO_SECRET_KEY');
    expect(logs.text()).not.toContain(key);
  });
});

describe('formatEnvValue', () => {
  it('quotes only when needed', () => {
    expect(formatEnvValue('plain-value_1.2')).toBe('plain-value_1.2');
    expect(formatEnvValue('a$b')).toBe("'a$b'");
    expect(formatEnvValue('')).toBe("''");
    expect(formatEnvValue("it's")).toBe('"it\'s"');
    expect(formatEnvValue('a\nb')).toBe('"a\\nb"');
  });
});
