import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

export interface HealthResult {
  /** True for a 2xx response; redirects are not followed and fail. */
  ok: boolean;
  /** HTTP status, or 0 when no response arrived. */
  status: number;
  durationMs: number;
  /** Why the check failed, for messages; absent when ok. */
  error?: string;
}

export interface HealthWaitResult extends HealthResult {
  attempts: number;
}

/** Sends one GET to `url`; never throws. */
export async function checkHealth(url: string, { timeoutMs }: { timeoutMs: number }): Promise<HealthResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);

  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { ok: false, status: 0, durationMs: 0, error: `invalid health URL ${JSON.stringify(url)}` };
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    return {
      ok: false,
      status: 0,
      durationMs: 0,
      error: `invalid health URL ${displayUrl(parsed)}: use http:// or https://`,
    };
  }

  // fetch rejects URLs with credentials, so they travel as Basic authorization.
  const headers: Record<string, string> = {};
  if (parsed.username || parsed.password) {
    const user = decodeURIComponent(parsed.username);
    const password = decodeURIComponent(parsed.password);
    headers.authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  }
  const target = new URL(displayUrl(parsed));

  try {
    const response = await fetch(target, {
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(Math.max(1, Math.round(timeoutMs))),
    });
    await response.body?.cancel();
    const status = response.status;
    if (status >= 200 && status < 300) return { ok: true, status, durationMs: elapsed() };

    const location = response.headers.get('location');
    const error =
      status >= 300 && status < 400 && location
        ? `${displayUrl(parsed)} redirected to ${location}; set the health URL to the final address`
        : `${displayUrl(parsed)} returned HTTP ${status}`;
    return { ok: false, status, durationMs: elapsed(), error };
  } catch (error) {
    return { ok: false, status: 0, durationMs: elapsed(), error: requestFailure(parsed, error, timeoutMs) };
  }
}

/**
 * Repeats checkHealth until it passes or `timeoutMs` has passed, for an app
 * that takes a moment to come back after a restart. Returns the last result.
 */
export async function waitForHealth(
  url: string,
  {
    timeoutMs,
    intervalMs = 500,
    attemptTimeoutMs = 5000,
  }: { timeoutMs: number; intervalMs?: number; attemptTimeoutMs?: number },
): Promise<HealthWaitResult> {
  const started = performance.now();
  let attempts = 0;

  for (;;) {
    const remaining = timeoutMs - (performance.now() - started);
    attempts++;
    const result = await checkHealth(url, {
      timeoutMs: Math.max(1, Math.round(Math.min(attemptTimeoutMs, remaining))),
    });
    const durationMs = Math.round(performance.now() - started);
    if (result.ok || durationMs + intervalMs >= timeoutMs) {
      return { ...result, durationMs: result.ok ? result.durationMs : durationMs, attempts };
    }
    await sleep(intervalMs);
  }
}

/** The URL without user name or password, which may be credentials. */
function displayUrl(url: URL): string {
  const copy = new URL(url);
  copy.username = '';
  copy.password = '';
  return copy.toString();
}

function requestFailure(url: URL, error: unknown, timeoutMs: number): string {
  const name = (error as Error).name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return `${displayUrl(url)} did not respond within ${timeoutMs} ms`;
  }

  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code === 'ECONNREFUSED') return `${displayUrl(url)} refused the connection`;
  if (cause?.code === 'ENOTFOUND') return `the host of ${displayUrl(url)} was not found`;
  return `request to ${displayUrl(url)} failed: ${cause?.code ?? cause?.message ?? (error as Error).message}`;
}
