import cron from 'node-cron';

// Pure functions that list the runs ("slots") of a cron expression in an
// IANA time zone. A slot is named by its scheduled local time, so a daily
// job has exactly one slot per local day also on daylight-saving days:
// - a local time that does not exist (spring forward) runs once, moved
//   forward by the length of the gap (02:30 becomes 03:30 in New York);
// - a local time that occurs twice (fall back) runs once, at the first
//   occurrence.
// node-cron 4.6 skips a nonexistent local time for that day, and runs a
// repeated one once, at the first occurrence (checked by reading its
// MatcherWalker and localTimeToTimestamp).

export interface CronFields {
  seconds: number[];
  minutes: number[];
  hours: number[];
  daysOfMonth: Set<number>;
  months: Set<number>;
  /** 0 is Sunday; node-cron folds 7 into 0. */
  daysOfWeek: Set<number>;
  /** True for six-field expressions, whose slot names then carry seconds. */
  hasSeconds: boolean;
}

export interface CalendarDate {
  year: number;
  month: number;
  day: number;
}

export interface WallTime extends CalendarDate {
  hour: number;
  minute: number;
  second: number;
}

export interface Slot {
  /** Scheduled local time: `2026-03-29T02:00`, or `2026-03-29T02:00:30` with seconds. */
  local: string;
  /** When the slot is due, in milliseconds since the Unix epoch. */
  at: number;
  /** True when the local time did not exist that day and the slot moved forward. */
  shifted: boolean;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Searches for the previous or next slot stop after this many days (8 years covers 29 February). */
const MAX_SEARCH_DAYS = 366 * 8;

/**
 * Parses a cron expression with node-cron's parser. Throws an Error listing
 * the invalid fields, or naming a token (L, W, #) that slots do not support.
 */
export function parseCronFields(expression: string): CronFields {
  const validation = cron.validateDetailed(expression);
  if (!validation.valid) {
    throw new Error(validation.errors.map((error) => error.message).join('; '));
  }

  const parsed = cron.parse(expression);
  const special = [...parsed.dayOfMonth, ...parsed.dayOfWeek].find((value) => typeof value !== 'number');
  if (special !== undefined) {
    throw new Error(`the token ${String(special)} is not supported here; use plain numbers, ranges and steps`);
  }

  return {
    seconds: [...parsed.second].sort((a, b) => a - b),
    minutes: [...parsed.minute].sort((a, b) => a - b),
    hours: [...parsed.hour].sort((a, b) => a - b),
    daysOfMonth: new Set(parsed.dayOfMonth as number[]),
    months: new Set(parsed.month),
    daysOfWeek: new Set((parsed.dayOfWeek as number[]).map((day) => day % 7)),
    hasSeconds: expression.trim().split(/\s+/).length === 6,
  };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timezone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(timezone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timezone, formatter);
  }
  return formatter;
}

/** Converts an instant to its local wall-clock time in a zone. */
export function wallTime(ms: number, timezone: string): WallTime {
  const parts: Record<string, number> = {};
  for (const part of formatterFor(timezone).formatToParts(new Date(ms))) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return {
    year: parts.year,
    month: parts.month,
    day: parts.day,
    hour: parts.hour === 24 ? 0 : parts.hour,
    minute: parts.minute,
    second: parts.second,
  };
}

function wallAsUtc(wall: WallTime): number {
  return Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute, wall.second);
}

/** Offset of the zone from UTC at an instant, in milliseconds (positive east of Greenwich). */
function offsetAt(ms: number, timezone: string): number {
  const whole = Math.floor(ms / 1000) * 1000;
  return wallAsUtc(wallTime(whole, timezone)) - whole;
}

function sameWall(a: WallTime, b: WallTime): boolean {
  return (
    a.year === b.year &&
    a.month === b.month &&
    a.day === b.day &&
    a.hour === b.hour &&
    a.minute === b.minute &&
    a.second === b.second
  );
}

/**
 * Converts a local time in a zone to an instant. A repeated local time gives
 * the first occurrence. A nonexistent one is read with the offset from before
 * the transition, which moves it forward by the length of the gap.
 */
export function wallTimeToInstant(wall: WallTime, timezone: string): number {
  const guess = wallAsUtc(wall);
  const before = offsetAt(guess - DAY_MS, timezone);
  const after = offsetAt(guess + DAY_MS, timezone);

  const matches = [...new Set([guess - before, guess - after])]
    .filter((instant) => sameWall(wallTime(instant, timezone), wall))
    .sort((a, b) => a - b);
  return matches[0] ?? guess - before;
}

function pad(value: number): string {
  return String(value).padStart(2, '0');
}

function formatLocal(wall: WallTime, withSeconds: boolean): string {
  const base = `${wall.year}-${pad(wall.month)}-${pad(wall.day)}T${pad(wall.hour)}:${pad(wall.minute)}`;
  return withSeconds ? `${base}:${pad(wall.second)}` : base;
}

/** Calendar date `offset` days after the given one. */
function addDays(date: CalendarDate, offset: number): CalendarDate {
  const moved = new Date(Date.UTC(date.year, date.month - 1, date.day + offset));
  return { year: moved.getUTCFullYear(), month: moved.getUTCMonth() + 1, day: moved.getUTCDate() };
}

function dayMatches(fields: CronFields, date: CalendarDate): boolean {
  const weekday = new Date(Date.UTC(date.year, date.month - 1, date.day)).getUTCDay();
  // Day of month and day of week must both match, as in node-cron.
  return fields.months.has(date.month) && fields.daysOfMonth.has(date.day) && fields.daysOfWeek.has(weekday);
}

/** Lists the slots of one local calendar day, in time order. */
export function slotsOnDay(
  fields: CronFields,
  timezone: string,
  date: CalendarDate,
): Slot[] {
  if (!dayMatches(fields, date)) return [];

  const byInstant = new Map<number, Slot>();
  for (const hour of fields.hours) {
    for (const minute of fields.minutes) {
      for (const second of fields.seconds) {
        const wall = { year: date.year, month: date.month, day: date.day, hour, minute, second };
        const at = wallTimeToInstant(wall, timezone);
        const shifted = !sameWall(wallTime(at, timezone), wall);
        const existing = byInstant.get(at);
        // A moved slot that lands on a real one (02:30 moved to 03:30 when
        // 03:30 is a slot too) is dropped, so one instant runs once.
        if (existing && !existing.shifted) continue;
        byInstant.set(at, { local: formatLocal(wall, fields.hasSeconds), at, shifted });
      }
    }
  }
  return [...byInstant.values()].sort((a, b) => a.at - b.at);
}

/** Slots due after `fromMs` and at or before `toMs`, in time order, at most `limit`. */
export function slotsBetween(
  fields: CronFields,
  timezone: string,
  fromMs: number,
  toMs: number,
  limit = 10_000,
): Slot[] {
  const slots: Slot[] = [];
  const last = wallTime(toMs + DAY_MS, timezone);
  let date: CalendarDate = wallTime(fromMs - DAY_MS, timezone);
  for (let day = 0; day <= MAX_SEARCH_DAYS * 4; day++) {
    for (const slot of slotsOnDay(fields, timezone, date)) {
      if (slot.at > fromMs && slot.at <= toMs) slots.push(slot);
      if (slots.length >= limit) return slots;
    }
    if (date.year === last.year && date.month === last.month && date.day === last.day) break;
    date = addDays(date, 1);
  }
  return slots;
}

/** Finds the newest slot due at or before `ms`; undefined when none is found within 8 years. */
export function latestSlotAtOrBefore(fields: CronFields, timezone: string, ms: number): Slot | undefined {
  let date: CalendarDate = wallTime(ms + DAY_MS, timezone);
  for (let day = 0; day < MAX_SEARCH_DAYS; day++) {
    const due = slotsOnDay(fields, timezone, date).filter((slot) => slot.at <= ms);
    if (due.length > 0) {
      // A slot of the day before can be moved past this day's first slot by a gap.
      const earlier = slotsOnDay(fields, timezone, addDays(date, -1)).filter((slot) => slot.at <= ms);
      return [...earlier, ...due].sort((a, b) => a.at - b.at).at(-1);
    }
    date = addDays(date, -1);
  }
  return undefined;
}

/** Finds the first slot due after `ms`; undefined when none is found within 8 years. */
export function nextSlotAfter(fields: CronFields, timezone: string, ms: number): Slot | undefined {
  let date: CalendarDate = wallTime(ms - DAY_MS, timezone);
  for (let day = 0; day < MAX_SEARCH_DAYS; day++) {
    const upcoming = slotsOnDay(fields, timezone, date).filter((slot) => slot.at > ms);
    if (upcoming.length > 0) {
      const later = slotsOnDay(fields, timezone, addDays(date, 1)).filter((slot) => slot.at > ms);
      return [...upcoming, ...later].sort((a, b) => a.at - b.at)[0];
    }
    date = addDays(date, 1);
  }
  return undefined;
}
