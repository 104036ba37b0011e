import type { Db } from './db.ts';

export interface RestoreTestRow<Report = Record<string, unknown>> {
  id: number;
  incidentId: number | null;
  at: number;
  passed: boolean;
  report: Report;
}

interface RestoreTestRecord {
  id: number;
  incident_id: number | null;
  at: number;
  passed: number;
  report: string;
}

/**
 * Saves a restore-test report and returns its id. The report is shown in
 * Slack later, so it should contain counts, paths and timings, never row contents or secrets.
 */
export function saveRestoreTest(
  db: Db,
  test: { incidentId?: number; at: number; passed: boolean; report: object },
): number {
  const result = db
    .prepare('INSERT INTO restore_tests (incident_id, at, passed, report) VALUES (?, ?, ?, ?)')
    .run(test.incidentId ?? null, test.at, test.passed ? 1 : 0, JSON.stringify(test.report));
  return Number(result.lastInsertRowid);
}

/** Reads the newest restore-test report; undefined when none was saved. */
export function latestRestoreTestReport<Report = Record<string, unknown>>(
  db: Db,
): RestoreTestRow<Report> | undefined {
  const record = db
    .prepare('SELECT * FROM restore_tests ORDER BY at DESC, id DESC LIMIT 1')
    .get() as RestoreTestRecord | undefined;
  if (!record) return undefined;

  return {
    id: record.id,
    incidentId: record.incident_id,
    at: record.at,
    passed: record.passed === 1,
    report: JSON.parse(record.report) as Report,
  };
}
