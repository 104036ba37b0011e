import type { IncomingMessage, ServerResponse } from 'node:http';

import type { CustomRoute } from '@slack/bolt';

/** `GET /healthz`: 200 once the bot takes requests, 503 before that and while it stops. */
export function healthRoute(isReady: () => boolean, details: () => Record<string, unknown>): CustomRoute {
  return {
    path: '/healthz',
    method: ['GET'],
    handler: (_req: IncomingMessage, res: ServerResponse) => {
      const ready = isReady();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ status: ready ? 'ok' : 'starting', ...details() }));
    },
  };
}

/** The largest move of the clock in one request: a year, enough for quarterly reminders. */
const MAX_CLOCK_ADVANCE_MS = 366 * 86_400_000;

/**
 * `POST /admin/clock` with `{"advanceMs": N}` moves the bot's clock forward;
 * served only when ALLOW_CLOCK_CONTROL is true (tests and demos).
 */
export function clockRoute(advance: (ms: number) => number): CustomRoute {
  return {
    path: '/admin/clock',
    method: ['POST'],
    handler: (req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        body += chunk;
        if (body.length > 1000) req.destroy();
      });
      req.on('end', () => {
        let ms: unknown;
        try {
          ms = (JSON.parse(body) as { advanceMs?: unknown }).advanceMs;
        } catch {
          ms = undefined;
        }
        if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_CLOCK_ADVANCE_MS) {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: `send {"advanceMs": N} with N from 0 to ${MAX_CLOCK_ADVANCE_MS} milliseconds (one year)` }));
          return;
        }
        const now = advance(ms);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ now: new Date(now).toISOString() }));
      });
    },
  };
}
