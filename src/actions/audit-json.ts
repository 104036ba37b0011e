// JSON helpers for audit commands. The command runner merges stdout and
// stderr, so a JSON document may sit between warning lines; these find it.

type Status = 'pass' | 'warn' | 'fail';

/**
 * Finds the JSON document in command output: the whole output, or the first
 * line that starts with `{` or `[` up to the last line that still parses.
 * Returns undefined when no JSON is found.
 */
export function extractJson(output: string): unknown {
  const whole = tryParse(output.trim());
  if (whole !== undefined) return whole;

  const lines = output.split(/\r?\n/);
  for (let start = 0; start < lines.length; start++) {
    const first = lines[start].trimStart();
    if (!first.startsWith('{') && !first.startsWith('[')) continue;
    for (let end = lines.length; end > start; end--) {
      const parsed = tryParse(lines.slice(start, end).join('\n'));
      if (parsed !== undefined) return parsed;
    }
  }
  return undefined;
}

function tryParse(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

const PASS_WORDS = new Set(['pass', 'passed', 'ok', 'success', 'succeeded', 'true', 'info', 'good']);
const FAIL_WORDS = new Set(['fail', 'failed', 'error', 'critical', 'high', 'false', 'bad']);

function normalizeStatus(value: unknown): Status {
  if (typeof value === 'boolean') return value ? 'pass' : 'fail';
  const word = String(value ?? '').toLowerCase();
  if (PASS_WORDS.has(word)) return 'pass';
  if (FAIL_WORDS.has(word)) return 'fail';
  return 'warn';
}

interface Finding {
  name: string;
  status: Status;
  message: string;
}

function field(item: Record<string, unknown>, names: string[]): unknown {
  for (const name of names) if (item[name] !== undefined) return item[name];
  return undefined;
}

function toFinding(item: unknown, fallbackName: string): Finding {
  if (typeof item !== 'object' || item === null) {
    return { name: fallbackName, status: normalizeStatus(item), message: '' };
  }
  const record = item as Record<string, unknown>;
  const name = field(record, ['name', 'id', 'check', 'title', 'key']) ?? fallbackName;
  const status = field(record, ['status', 'result', 'level', 'severity', 'passed', 'ok']);
  const message = field(record, ['message', 'detail', 'details', 'description', 'msg']) ?? '';
  return { name: String(name), status: normalizeStatus(status), message: String(message) };
}

/**
 * Reads the findings of a security-check report. The report may be a list
 * of findings, or an object with that list under `checks`, `results`,
 * `issues`, `findings` or `items`, or an object of findings keyed by name. A finding
 * has a name (`name`/`id`/`check`), a status (`status`/`result`/`level`/
 * `severity`, or a boolean `passed`/`ok`) and a message. Unknown status
 * words count as warnings.
 */
export function summarizeSecurityReport(report: unknown): { status: Status; summary: string; lines: string[] } {
  const findings = collectFindings(report);
  if (findings.length === 0) {
    return { status: 'warn', summary: 'security check output has no findings to read', lines: [] };
  }

  const counts = { pass: 0, warn: 0, fail: 0 };
  for (const finding of findings) counts[finding.status] += 1;
  let status: Status = 'pass';
  if (counts.warn > 0) status = 'warn';
  if (counts.fail > 0) status = 'fail';

  const rank: Record<Status, number> = { fail: 0, warn: 1, pass: 2 };
  const lines = findings
    .filter((finding) => finding.status !== 'pass')
    .sort((a, b) => rank[a.status] - rank[b.status])
    .map((finding) => `${finding.status.toUpperCase()} ${finding.name}${finding.message ? `: ${finding.message}` : ''}`);
  return {
    status,
    summary: `security check: ${findings.length} checks, ${counts.pass} passed, ${counts.warn} warnings, ${counts.fail} failed`,
    lines,
  };
}

function collectFindings(report: unknown): Finding[] {
  if (Array.isArray(report)) return report.map((item, index) => toFinding(item, `check ${index + 1}`));
  if (typeof report !== 'object' || report === null) return [];

  const record = report as Record<string, unknown>;
  for (const key of ['checks', 'results', 'issues', 'findings', 'items']) {
    const list = record[key];
    if (Array.isArray(list)) return list.map((item, index) => toFinding(item, `${key} ${index + 1}`));
  }
  return Object.entries(record).map(([name, item]) => toFinding(item, name));
}
