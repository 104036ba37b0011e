import type { IncomingMessage, ServerResponse } from 'node:http';

/** Time without a new Slack request after which background work starts. */
export const QUIET_MS = 2;
/** Maximum time background work waits while requests keep arriving. */
export const MAX_WAIT_MS = 250;

/**
 * Schedules work after Slack's acknowledgements. Slack expects every request
 * to be acknowledged within 3 seconds, and the work behind a declaration
 * (writing the incident's rows, rendering and posting it) costs several times
 * the acknowledgement itself. Work that can wait awaits `quiet()`. It resumes
 * once no request is being served and none arrived for QUIET_MS, or after
 * MAX_WAIT_MS, so a steady stream of requests delays it but cannot starve it.
 */
export class BackgroundLane {
  private serving = 0;
  private lastRequestAt = Number.NEGATIVE_INFINITY;
  private waiters: Array<{ deadline: number; resume: () => void }> = [];
  private timer?: NodeJS.Timeout;
  private resuming = false;

  constructor(private readonly options: { quietMs?: number; maxWaitMs?: number } = {}) {}

  /** Counts an HTTP request as served until its response is finished or its socket closes. */
  track(_request: IncomingMessage, response: ServerResponse): void {
    this.serving++;
    this.lastRequestAt = performance.now();
    let done = false;
    const finished = () => {
      if (done) return;
      done = true;
      this.serving--;
      this.lastRequestAt = performance.now();
      this.schedule();
    };
    response.once('finish', finished);
    response.once('close', finished);
  }

  /** Resolves when requests pause, or MAX_WAIT_MS from now at the latest. */
  quiet(): Promise<void> {
    return new Promise((resume) => {
      this.waiters.push({ deadline: performance.now() + (this.options.maxWaitMs ?? MAX_WAIT_MS), resume });
      this.schedule();
    });
  }

  /**
   * Resumes one waiter per turn of the event loop, oldest first, so requests
   * that arrived in between are read before the next piece of work starts.
   */
  private schedule(): void {
    if (this.resuming || this.waiters.length === 0) return;
    clearTimeout(this.timer);
    const now = performance.now();
    const quietAt = this.serving > 0 ? Number.POSITIVE_INFINITY : this.lastRequestAt + (this.options.quietMs ?? QUIET_MS);
    // Every waiter waits the same MAX_WAIT_MS, so the oldest has the earliest deadline.
    const oldest = this.waiters[0];
    const wakeAt = Math.min(quietAt, oldest.deadline);
    if (wakeAt > now) {
      this.timer = setTimeout(() => this.schedule(), Math.ceil(wakeAt - now));
      return;
    }
    this.waiters.shift();
    oldest.resume();
    this.resuming = true;
    setImmediate(() => {
      this.resuming = false;
      this.schedule();
    });
  }
}
