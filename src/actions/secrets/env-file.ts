import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { access, open, readFile, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

import { ActionError } from '../../bot/errors.ts';
import type { Logger } from '../../bot/logger.ts';
import { checkSecretName, secretStoreError, type SecretStore } from './store.ts';

/*
 * The .env format that this store reads and writes, and that the Django
 * settings in test/django/project parse the same way:
 *
 * - One entry a line: `KEY=value`, optionally prefixed by `export `. Blank
 *   lines and lines starting with `#` are comments. Any other line is an error.
 * - `'single quoted'`: every character up to the next `'` is literal.
 * - `"double quoted"`: backslash escapes \n \r \t \" \\ \$; any other
 *   backslash is kept as it is.
 * - Unquoted: up to the end of the line or up to a `#` that follows a space
 *   or tab, with trailing spaces removed.
 * - After a closing quote only spaces, tabs and a `# comment` may follow.
 * - When a key appears twice, the last entry wins.
 */

interface EnvEntry {
  key: string;
  value: string;
  /** Line text before the value: indentation, `export `, key and `=`. */
  head: string;
  /** Line text after the value: spaces and an inline comment. */
  tail: string;
}

interface EnvLine {
  /** The line as written, without its line ending. */
  text: string;
  /** `\r\n` or `\n`; empty for a last line without a newline. */
  ending: string;
  entry?: EnvEntry;
}

interface EnvDocument {
  bom: string;
  lines: EnvLine[];
}

class EnvSyntaxError extends Error {
  constructor(
    readonly lineNumber: number,
    reason: string,
  ) {
    super(`line ${lineNumber}: ${reason}`);
  }
}

const ENTRY_HEAD = /^([ \t]*(?:export[ \t]+)?)([A-Za-z_][A-Za-z0-9_]*)([ \t]*=)([ \t]*)/;
const AFTER_QUOTE = /^[ \t]*(#[^]*)?$/;
const UNQUOTED_SAFE = /^[A-Za-z0-9_./:@+,-]+$/;
const DOUBLE_QUOTE_ESCAPES: Record<string, string> = {
  n: '\n',
  r: '\r',
  t: '\t',
  '"': '"',
  '\\': '\\',
  $: '$',
};

/** Parses a .env file; throws EnvSyntaxError naming the first bad line. */
export function parseEnvText(text: string): EnvDocument {
  const bom = text.startsWith('\uFEFF') ? '\uFEFF' : '';
  const body = text.slice(bom.length);
  const lines: EnvLine[] = [];

  const pieces = body.split('\n');
  pieces.forEach((piece, index) => {
    const isLast = index === pieces.length - 1;
    if (isLast && piece === '') return;

    const hasCarriageReturn = piece.endsWith('\r');
    const lineText = hasCarriageReturn ? piece.slice(0, -1) : piece;
    let ending = hasCarriageReturn ? '\r\n' : '\n';
    if (isLast) ending = '';
    lines.push({ text: lineText, ending, entry: parseLine(lineText, index + 1) });
  });

  return { bom, lines };
}

function parseLine(text: string, lineNumber: number): EnvEntry | undefined {
  const trimmed = text.replace(/^[ \t]+/, '');
  if (trimmed === '' || trimmed.startsWith('#')) return undefined;

  const head = ENTRY_HEAD.exec(text);
  if (!head) {
    throw new EnvSyntaxError(lineNumber, 'expected KEY=value, a comment or a blank line');
  }

  const key = head[2];
  const spaceBeforeValue = head[4] !== '';
  const rest = text.slice(head[0].length);
  const { value, tail } = parseValue(rest, spaceBeforeValue, lineNumber);
  return { key, value, head: head[0], tail };
}

function parseValue(
  rest: string,
  spaceBeforeValue: boolean,
  lineNumber: number,
): { value: string; tail: string } {
  if (rest.startsWith("'")) {
    const close = rest.indexOf("'", 1);
    if (close < 0) throw new EnvSyntaxError(lineNumber, "single quote ' is not closed");
    return checkTail(rest.slice(1, close), rest.slice(close + 1), lineNumber);
  }

  if (rest.startsWith('"')) {
    let value = '';
    for (let index = 1; index < rest.length; index++) {
      const char = rest[index];
      if (char === '"') return checkTail(value, rest.slice(index + 1), lineNumber);
      if (char === '\\' && index + 1 < rest.length) {
        const next = rest[index + 1];
        value += DOUBLE_QUOTE_ESCAPES[next] ?? `\\${next}`;
        index++;
        continue;
      }
      value += char;
    }
    throw new EnvSyntaxError(lineNumber, 'double quote " is not closed');
  }

  const commentAt = spaceBeforeValue && rest.startsWith('#') ? 0 : rest.search(/[ \t]#/);
  const raw = commentAt < 0 ? rest : rest.slice(0, commentAt);
  const value = raw.replace(/[ \t]+$/, '');
  return { value, tail: rest.slice(value.length) };
}

function checkTail(value: string, tail: string, lineNumber: number): { value: string; tail: string } {
  if (!AFTER_QUOTE.test(tail)) {
    throw new EnvSyntaxError(lineNumber, 'unexpected text after the closing quote');
  }
  return { value, tail };
}

/** Writes a value so that parseEnvText (and the Django settings) read it back unchanged. */
export function formatEnvValue(value: string): string {
  if (UNQUOTED_SAFE.test(value)) return value;
  if (!/['\r\n]/.test(value)) return `'${value}'`;

  let escaped = '';
  for (const char of value) {
    if (char === '\n') escaped += '\\n';
    else if (char === '\r') escaped += '\\r';
    else if (char === '\t') escaped += '\\t';
    else if (char === '"' || char === '\\' || char === '$') escaped += `\\${char}`;
    else escaped += char;
  }
  return `"${escaped}"`;
}

/** Applies `changes` to a parsed file: the first entry of a key is replaced, later ones removed. */
function applyChanges(document: EnvDocument, changes: Record<string, string | null>): string {
  const seen = new Set<string>();
  const lines: EnvLine[] = [];

  for (const line of document.lines) {
    const key = line.entry?.key;
    if (key === undefined || !(key in changes)) {
      lines.push(line);
      continue;
    }

    const value = changes[key];
    if (value === null || seen.has(key)) continue;
    seen.add(key);
    lines.push({ text: replaceValue(line.entry as EnvEntry, value), ending: line.ending });
  }

  const newline = document.lines.some((line) => line.ending === '\r\n') ? '\r\n' : '\n';
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || seen.has(key)) continue;
    const last = lines[lines.length - 1];
    if (last && last.ending === '') last.ending = newline;
    lines.push({ text: `${key}=${formatEnvValue(value)}`, ending: newline });
  }

  return document.bom + lines.map((line) => line.text + line.ending).join('');
}

/** Rewrites an entry's line with a new value, keeping its `export`, spacing and inline comment. */
function replaceValue(entry: EnvEntry, value: string): string {
  let tail = entry.tail;
  if (/^[ \t]*$/.test(tail)) tail = '';
  else if (!/^[ \t]/.test(tail)) tail = ` ${tail}`;
  return `${entry.head}${formatEnvValue(value)}${tail}`;
}

function findValue(document: EnvDocument, key: string): string | undefined {
  let value: string | undefined;
  for (const line of document.lines) {
    if (line.entry?.key === key) value = line.entry.value;
  }
  return value;
}

/** Mode of `<file>.previous`: owner read and write only, because it contains the replaced key. */
const PREVIOUS_FILE_MODE = 0o600;

/** Permission bits and owner given to a file that replaceFile writes. */
interface FileAttributes {
  mode: number;
  uid: number;
  gid: number;
}

/** The last pending write of each file path, so writes to one file never interleave. */
const writeQueues = new Map<string, Promise<unknown>>();

/**
 * A secret store backed by a `.env` file. A write replaces the file
 * atomically (temporary file in the same folder, fsync, rename), keeps every
 * other line and the file's mode, and first saves the old content as
 * `<file>.previous`. A symbolic link is followed and its target replaced.
 *
 * The previous copy still contains the key that a rotation replaced, which
 * may be a leaked one, so it always gets mode 0600 whatever the mode of the
 * `.env` is. Each write replaces it, so only one previous generation exists.
 */
export class EnvFileStore implements SecretStore {
  readonly name: string;

  constructor(
    readonly path: string,
    private readonly logger?: Logger,
  ) {
    this.name = `env file ${path}`;
  }

  async read(key: string): Promise<string | undefined> {
    checkSecretName(key);
    const { document } = await this.load();
    return findValue(document, key);
  }

  /** Writes run one at a time per path, across all stores of this process. */
  write(changes: Record<string, string | null>): Promise<void> {
    const previous = writeQueues.get(this.path) ?? Promise.resolve();
    const run = previous.then(() => this.writeNow(changes));
    const settled = run.catch(() => undefined);
    writeQueues.set(this.path, settled);
    void settled.then(() => {
      if (writeQueues.get(this.path) === settled) writeQueues.delete(this.path);
    });
    return run;
  }

  private async writeNow(changes: Record<string, string | null>): Promise<void> {
    for (const [key, value] of Object.entries(changes)) {
      checkSecretName(key);
      if (value !== null) checkValue(key, value);
    }

    const { target, text, document, stats } = await this.load();
    await this.checkWritable(target, stats);

    const updated = applyChanges(document, changes);
    if (updated === text) return;

    const owner = { uid: stats.uid, gid: stats.gid };
    await this.replaceFile(`${target}.previous`, text, { ...owner, mode: PREVIOUS_FILE_MODE });
    await this.replaceFile(target, updated, { ...owner, mode: stats.mode & 0o7777 }, text);
    this.logger?.info(
      { store: 'env', path: this.path, keys: Object.keys(changes) },
      'secret store written',
    );
  }

  private async load(): Promise<{
    target: string;
    text: string;
    document: EnvDocument;
    stats: Stats;
  }> {
    let target: string;
    let text: string;
    let stats: Stats;
    try {
      target = await realpath(this.path);
      stats = await stat(target);
      text = await readFile(target, 'utf8');
    } catch (error) {
      throw this.fileError(error, 'read');
    }

    try {
      return { target, text, document: parseEnvText(text), stats };
    } catch (error) {
      if (!(error instanceof EnvSyntaxError)) throw error;
      throw secretStoreError(
        'secret_store_unreadable',
        `${this.name} is not a valid .env file (${error.message}); fix that line, then run the action again`,
        { path: this.path, line: error.lineNumber },
      );
    }
  }

  /** Rejects read-only files and folders up front, including for root, who bypasses modes. */
  private async checkWritable(target: string, stats: Stats): Promise<void> {
    const folder = dirname(target);
    const mode = (stats.mode & 0o7777).toString(8).padStart(4, '0');
    if ((stats.mode & 0o222) === 0) {
      throw secretStoreError(
        'secret_store_unwritable',
        `${this.name} is read-only (mode ${mode}), so nothing was changed; ` +
          'make it writable (chmod u+w) and run the action again',
        { path: this.path },
      );
    }

    const folderStats = await stat(folder);
    if ((folderStats.mode & 0o222) === 0) {
      const folderMode = (folderStats.mode & 0o7777).toString(8).padStart(4, '0');
      throw secretStoreError(
        'secret_store_unwritable',
        `the folder ${folder} of ${this.name} is read-only (mode ${folderMode}), so the file ` +
          'cannot be replaced and nothing was changed; make the folder writable and run the action again',
        { path: this.path },
      );
    }

    try {
      await access(target, constants.W_OK);
      await access(folder, constants.W_OK);
    } catch (error) {
      throw this.fileError(error, 'write');
    }
  }

  /**
   * Replaces `path` with `content` through a temporary file in the same
   * folder, with exactly `file.mode` and, when running as root, the owner in
   * `file`. With `expected`, the current content must still equal it just
   * before the rename, which detects a writer that changed the file meanwhile.
   */
  private async replaceFile(
    path: string,
    content: string,
    file: FileAttributes,
    expected?: string,
  ): Promise<void> {
    const temporary = join(
      dirname(path),
      `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
    );

    try {
      const handle = await open(temporary, 'wx', file.mode);
      try {
        // open() applies the umask, so set the mode explicitly.
        await handle.chmod(file.mode);
        if (process.getuid?.() === 0) await handle.chown(file.uid, file.gid);
        await handle.writeFile(content, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }

      if (expected !== undefined && (await readFile(path, 'utf8')) !== expected) {
        throw secretStoreError(
          'secret_store_conflict',
          `${this.name} was changed by another writer while this write ran, so nothing was ` +
            'changed; run the action again',
          { path: this.path },
        );
      }

      await rename(temporary, path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      if (error instanceof ActionError) throw error;
      throw this.fileError(error, 'write');
    }

    await syncFolder(dirname(path));
  }

  private fileError(error: unknown, operation: 'read' | 'write'): ActionError {
    const code = (error as NodeJS.ErrnoException).code ?? 'unknown';
    const details = { path: this.path, errno: code };
    const unchanged = operation === 'write' ? ', so nothing was changed' : '';

    if (code === 'ENOENT') {
      return secretStoreError(
        'secret_store_not_found',
        `${this.name} does not exist${unchanged}; create it or set DJANGO_ENV_FILE to the file the app reads`,
        details,
      );
    }

    const reasons: Record<string, string> = {
      EACCES: `permission denied for this process (uid ${process.getuid?.() ?? 'unknown'})`,
      EPERM: 'operation not permitted',
      EROFS: 'it is on a read-only file system',
      ENOSPC: 'no space left on the device',
      EDQUOT: 'the disk quota is exceeded',
      EISDIR: 'it is a folder, not a file',
    };
    const reason = reasons[code] ?? `the system returned ${code}`;
    const errorCode = operation === 'read' ? 'secret_store_unreadable' : 'secret_store_unwritable';
    return secretStoreError(errorCode, `cannot ${operation} ${this.name}: ${reason}${unchanged}`, details);
  }
}

async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}


function checkValue(key: string, value: string): void {
  if (value.includes('\0')) {
    throw secretStoreError(
      'secret_store_invalid',
      `the value for ${key} contains a NUL character, which a .env file cannot hold; nothing was changed`,
      { key },
    );
  }
}
