const DAY_MS = 24 * 60 * 60 * 1000;

export interface ReminderDecision {
  due: boolean;
  /** Newest rotation in the history, or null when none is recorded. */
  lastRotatedAt: number | null;
  /** Whole days since the newest rotation, or null when none is recorded. */
  ageDays: number | null;
  reason: 'never_rotated' | 'too_old' | 'recently_reminded' | 'fresh';
}

/**
 * Decides whether the daily rotation-age check should remind about one
 * secret: when its newest rotation is at least `maxAgeDays` old (or none is
 * recorded), and no reminder went out in the last `repeatDays` since that
 * rotation. A reminder sent before the newest rotation does not count.
 */
export function rotationReminderDue(
  history: ReadonlyArray<{ rotatedAt: number }>,
  now: number,
  options: { maxAgeDays: number; repeatDays: number; lastReminderAt?: number | null },
): ReminderDecision {
  const lastRotatedAt = history.length > 0 ? Math.max(...history.map((entry) => entry.rotatedAt)) : null;
  const ageDays = lastRotatedAt === null ? null : Math.floor((now - lastRotatedAt) / DAY_MS);

  if (ageDays !== null && ageDays < options.maxAgeDays) {
    return { due: false, lastRotatedAt, ageDays, reason: 'fresh' };
  }

  const reminder = options.lastReminderAt ?? null;
  const reminderCounts = reminder !== null && (lastRotatedAt === null || reminder >= lastRotatedAt);
  if (reminderCounts && now - reminder < options.repeatDays * DAY_MS) {
    return { due: false, lastRotatedAt, ageDays, reason: 'recently_reminded' };
  }
  return { due: true, lastRotatedAt, ageDays, reason: lastRotatedAt === null ? 'never_rotated' : 'too_old' };
}
