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
