/**
 * The one source of time for the bot. Production uses the system clock; the
 * sandbox and tests use an adjustable clock so deadlines can be reached
 * without waiting.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * A clock that runs at real speed from a movable offset. Listeners run after
 * each move so schedulers can re-arm their timers.
 */
export class AdjustableClock implements Clock {
  private offsetMs: number;
  private readonly listeners = new Set<(offsetMs: number) => void>();

  constructor(offsetMs = 0, private readonly base: Clock = systemClock) {
    this.offsetMs = offsetMs;
  }

  now(): number {
    return this.base.now() + this.offsetMs;
  }

  get offset(): number {
    return this.offsetMs;
  }

  /** Moves the clock forward by `ms`; the clock never moves backward. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) {
      throw new RangeError(`clock advance must be a non-negative number of milliseconds, got ${ms}`);
    }
    this.offsetMs += ms;
    for (const listener of this.listeners) listener(this.offsetMs);
  }

  onChange(listener: (offsetMs: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
