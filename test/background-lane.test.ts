import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { BackgroundLane } from '../src/bot/background-lane.ts';

/** Starts a loopback server whose requests the lane tracks and which responds only when the test ends a response. */
async function heldServer(lane: BackgroundLane) {
  const pending: ServerResponse[] = [];
  const untracked: Array<[IncomingMessage, ServerResponse]> = [];
  let tracking = true;
  const server: Server = createServer((req, res) => {
    if (tracking) lane.track(req, res);
    else untracked.push([req, res]);
    pending.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const send = () =>
    new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/', method: 'POST' }, (res) => {
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end('x');
    });
  const arrived = async (count: number) => {
    while (pending.length < count) await new Promise((resolve) => setTimeout(resolve, 1));
  };
  /** Later requests are held but not tracked until the test tracks them itself. */
  const stopTracking = () => (tracking = false);
  return { server, pending, untracked, send, arrived, stopTracking };
}

const settled = (promise: Promise<void>) => {
  const state = { done: false };
  void promise.then(() => (state.done = true));
  return state;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('BackgroundLane', () => {
  let lane: BackgroundLane;
  let served: Awaited<ReturnType<typeof heldServer>>;

  beforeEach(async () => {
    lane = new BackgroundLane({ quietMs: 5, maxWaitMs: 400 });
    served = await heldServer(lane);
  });

  afterEach(async () => {
    for (const res of served.pending) if (!res.writableEnded) res.end();
    await new Promise((resolve) => served.server.close(resolve));
  });

  it('resumes at once without requests', async () => {
    const started = performance.now();
    await lane.quiet();
    expect(performance.now() - started).toBeLessThan(100);
  });

  it('waits while a request is served', async () => {
    const reply = served.send();
    await served.arrived(1);
    const work = settled(lane.quiet());
    await sleep(50);
    expect(work.done).toBe(false);
    served.pending[0].end('ok');
    await reply;
  });

  it('resumes after the answer and a pause', async () => {
    const reply = served.send();
    await served.arrived(1);
    const work = lane.quiet();
    await sleep(20);
    served.pending[0].end('ok');
    await reply;
    const answered = performance.now();
    await work;
    expect(performance.now() - answered).toBeLessThan(200);
  });

  it('resumes after the longest wait under load', async () => {
    void served.send();
    await served.arrived(1);
    const started = performance.now();
    await lane.quiet();
    expect(performance.now() - started).toBeGreaterThanOrEqual(395);
  });

  it('resumes waiters in arrival order', async () => {
    const order: number[] = [];
    await Promise.all([1, 2, 3].map((n) => lane.quiet().then(() => order.push(n))));
    expect(order).toEqual([1, 2, 3]);
  });

  it('resumes one waiter per turn', async () => {
    // A request that starts while the first waiter runs holds back the second.
    served.stopTracking();
    const reply = served.send();
    await served.arrived(1);
    const [req, res] = served.untracked[0];
    const first = lane.quiet().then(() => lane.track(req, res));
    const second = settled(lane.quiet());
    await first;
    await sleep(50);
    expect(second.done).toBe(false);
    res.end('ok');
    await reply;
  });
});
