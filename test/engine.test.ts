import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { UserError } from '../src/bot/errors.ts';
import { listAudit } from '../src/store/audit.ts';
import { getIncident, listSteps } from '../src/store/incidents.ts';
import { listOutbox } from '../src/store/outbox.ts';
import { listIncidentTimers, listPendingTimers } from '../src/store/timers.ts';
import { ALEX, createEngineHarness, GUEST, SAM, START, type EngineHarness } from './helpers/engine.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

function fireDue(harness: EngineHarness): string[] {
  const fired: string[] = [];
  for (const timer of listPendingTimers(harness.db, harness.clock.now())) {
    if (harness.engine.fireTimer(timer.id)) fired.push(`${timer.kind}:${timer.stepId}`);
  }
  return fired;
}

function threadPosts(harness: EngineHarness, incidentId: number): string[] {
  return listOutbox(harness.db, incidentId, 'slack')
    .filter((row) => row.kind === 'thread_post')
    .map((row) => (row.payload.message as { text: string }).text);
}

/** Returns the mrkdwn of the incident's escalation post. */
function escalationText(harness: EngineHarness, incidentId: number): string {
  const row = listOutbox(harness.db, incidentId, 'slack').find((candidate) => JSON.stringify(candidate.payload).includes('Deadline missed'))!;
  return JSON.stringify((row.payload.message as { blocks: unknown }).blocks);
}

function declareSecretKey(harness: EngineHarness, summary = 'Key pasted in a public gist'): number {
  const runbook = harness.runbooks.find('secret-key')!;
  const result = harness.engine.declare({ runbook, summary, channelId: 'C0SBXINCIDENTS', userId: ALEX.userId });
  if (result.kind !== 'declared') throw new Error('expected a new incident');
  return result.incidentId;
}

describe('engine', () => {
  let harness: EngineHarness;
  beforeEach(() => {
    harness = createEngineHarness();
  });
  afterEach(() => harness.close());

  it('declare creates seven pending steps', () => {
    const id = declareSecretKey(harness);
    const steps = listSteps(harness.db, id);
    expect(steps).toHaveLength(7);
    expect(steps.every((step) => step.status === 'pending')).toBe(true);
  });

  it('rotation deadline is 15 minutes after declaration', () => {
    const id = declareSecretKey(harness);
    const rotate = listSteps(harness.db, id).find((step) => step.stepId === 'rotate')!;
    expect(rotate.dueAt).toBe(START + 15 * MINUTE);
  });

  it('declare arms reminders, deadline and watch timers', () => {
    const id = declareSecretKey(harness);
    const kinds = listIncidentTimers(harness.db, id).map((timer) => `${timer.kind}@${(timer.dueAt - START) / MINUTE}`);
    expect(kinds).toEqual([
      'reminder@10',
      'reminder@14',
      'deadline@15',
      'watch_checkin@720',
      'watch_checkin@1440',
      'watch_checkin@2160',
      'watch_end@2880',
    ]);
  });

  it('declare writes audit entry and queues the incident message', () => {
    const id = declareSecretKey(harness);
    expect(listAudit(harness.db, id).map((entry) => entry.event)).toEqual(['incident.declared']);
    expect(listOutbox(harness.db, id).map((row) => row.kind)).toEqual(['post_incident']);
  });

  it('second declare in channel reports the open incident', () => {
    const first = declareSecretKey(harness);
    const result = harness.engine.declare({ runbook: harness.runbooks.find('secret-key')!, summary: 'again', channelId: 'C0SBXINCIDENTS', userId: SAM.userId });
    expect(result.kind).toBe('duplicate');
    expect((result as { open: { id: number } }).open.id).toBe(first);
  });

  it('forced declare opens a second incident', () => {
    declareSecretKey(harness);
    const result = harness.engine.declare({ runbook: harness.runbooks.find('secret-key')!, summary: 'another', channelId: 'C0SBXINCIDENTS', userId: SAM.userId, force: true });
    expect(result.kind).toBe('declared');
  });

  it('dedup keys differ between incidents', () => {
    const first = declareSecretKey(harness);
    const second = harness.engine.declare({ runbook: harness.runbooks.find('sentry-dsn')!, summary: '', channelId: 'C0SBXINCIDENTS', userId: ALEX.userId });
    expect(second.kind).toBe('declared');
    const keys = [getIncident(harness.db, first)!.dedupKey, getIncident(harness.db, (second as { incidentId: number }).incidentId)!.dedupKey];
    expect(new Set(keys).size).toBe(2);
  });

  it('summary over the limit is rejected and nothing is stored', () => {
    expect(() => declareSecretKey(harness, 'x'.repeat(9000))).toThrow(/9000 characters/);
    expect(harness.engine.listOpen()).toHaveLength(0);
  });

  it('done step records who and when', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(3 * MINUTE);
    harness.engine.completeStep(id, 'notify', SAM);
    const step = listSteps(harness.db, id).find((row) => row.stepId === 'notify')!;
    expect(step.status).toBe('done');
    expect(step.doneBy).toBe(SAM.userId);
    expect(step.doneAt).toBe(START + 3 * MINUTE);
  });

  it('done twice is refused and names who did it', () => {
    const id = declareSecretKey(harness);
    harness.engine.completeStep(id, 'notify', SAM);
    expect(() => harness.engine.completeStep(id, 'notify', ALEX)).toThrow(/already done by <@U0SBXSAM>/);
  });

  it('skip needs a reason', () => {
    const id = declareSecretKey(harness);
    expect(() => harness.engine.skipStep(id, 'lock', ALEX, '   ')).toThrow(UserError);
    expect(listSteps(harness.db, id).find((row) => row.stepId === 'lock')!.status).toBe('pending');
  });

  it('undo returns a step to pending', () => {
    const id = declareSecretKey(harness);
    harness.engine.completeStep(id, 'notify', ALEX);
    harness.engine.undoStep(id, 'notify', ALEX);
    expect(listSteps(harness.db, id).find((row) => row.stepId === 'notify')!.status).toBe('pending');
  });

  it('escalation is also shown in the channel', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(15 * MINUTE);
    fireDue(harness);
    const escalation = listOutbox(harness.db, id).find((row) => JSON.stringify(row.payload).includes('Deadline missed'))!;
    expect(escalation.payload.broadcast).toBe(true);
  });

  it('escalation names the declarer', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(15 * MINUTE);
    fireDue(harness);
    expect(escalationText(harness, id)).toContain(`<@${ALEX.userId}> declared this incident`);
  });

  it('escalation names a new lead', () => {
    const id = declareSecretKey(harness);
    harness.engine.takeLead(id, SAM);
    harness.clock.advance(15 * MINUTE);
    fireDue(harness);
    expect(escalationText(harness, id)).toContain(`<@${SAM.userId}> leads it`);
  });

  it('escalation names the assignee', () => {
    const id = declareSecretKey(harness);
    harness.engine.assignStep(id, 'rotate', ALEX, 'U0SBXPAT');
    harness.clock.advance(15 * MINUTE);
    fireDue(harness);
    expect(escalationText(harness, id)).toContain('<@U0SBXPAT> has the step');
  });

  it('second Done by the same person', () => {
    const id = declareSecretKey(harness);
    harness.engine.completeStep(id, 'notify', ALEX);
    expect(() => harness.engine.completeStep(id, 'notify', ALEX)).toThrow(/^You already marked "[^"]+" done, so nothing changed\.$/);
  });

  it('assignment is posted in the thread', () => {
    const id = declareSecretKey(harness);
    harness.engine.assignStep(id, 'rotate', ALEX, SAM.userId);
    expect(threadPosts(harness, id).at(-1)).toContain(`<@${ALEX.userId}> assigned <@${SAM.userId}> the step`);
  });

  it('reminders come 5 and 1 minutes before the deadline', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(10 * MINUTE);
    expect(fireDue(harness)).toEqual(['reminder:rotate']);
    harness.clock.advance(4 * MINUTE);
    expect(fireDue(harness)).toEqual(['reminder:rotate']);
    expect(threadPosts(harness, id)).toHaveLength(2);
  });

  it('rotation deadline escalates when missed', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(15 * MINUTE);
    fireDue(harness);
    const posts = threadPosts(harness, id);
    expect(posts.filter((text) => text.startsWith('Deadline missed'))).toHaveLength(1);
    expect(listSteps(harness.db, id).find((row) => row.stepId === 'rotate')!.deadlineMissed).toBe(true);
  });

  it('escalation message mentions the declarer and the channel', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(16 * MINUTE);
    fireDue(harness);
    const escalation = listOutbox(harness.db, id).find((row) => (row.payload.message as { text?: string } | undefined)?.text?.startsWith('Deadline missed'))!;
    const text = JSON.stringify(escalation.payload.message);
    expect(text).toContain('<!channel>');
    expect(text).toContain('<@U0SBXALEX>');
  });

  it('deadline met sends no escalation', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(5 * MINUTE);
    harness.engine.completeStep(id, 'rotate', ALEX);
    harness.clock.advance(20 * MINUTE);
    fireDue(harness);
    expect(threadPosts(harness, id).filter((text) => text.startsWith('Deadline missed'))).toHaveLength(0);
  });

  it('a timer fires only once', () => {
    declareSecretKey(harness);
    harness.clock.advance(15 * MINUTE);
    const deadline = listPendingTimers(harness.db, harness.clock.now()).find((timer) => timer.kind === 'deadline')!;
    expect(harness.engine.fireTimer(deadline.id)).toBe(true);
    expect(harness.engine.fireTimer(deadline.id)).toBe(false);
  });

  it('late timer is marked late with how late', () => {
    const id = declareSecretKey(harness);
    // The bot is down from minute 1 and comes back at minute 45.
    const restarted = createEngineHarness({ dir: harness.dbPath.replace(/\/bot\.sqlite3$/, ''), clockOffsetMs: 45 * MINUTE });
    try {
      fireDue(restarted);
      const deadline = listIncidentTimers(restarted.db, id).find((timer) => timer.kind === 'deadline')!;
      expect(deadline.lateMs).toBe(30 * MINUTE);
      const escalation = listOutbox(restarted.db, id).find((row) => JSON.stringify(row.payload).includes('Deadline missed'))!;
      expect(JSON.stringify(escalation.payload)).toContain('Late by 30 min');
    } finally {
      restarted.db.close();
    }
  });

  it('clock moved past a deadline escalates without a late note', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(45 * MINUTE);
    fireDue(harness);
    const escalation = listOutbox(harness.db, id).find((row) => JSON.stringify(row.payload).includes('Deadline missed'))!;
    expect(JSON.stringify(escalation.payload)).not.toContain('Late by');
  });

  it('reminder after its deadline is skipped', () => {
    const id = declareSecretKey(harness);
    harness.clock.advance(20 * MINUTE);
    fireDue(harness);
    expect(threadPosts(harness, id).filter((text) => text.startsWith('Reminder'))).toHaveLength(0);
  });

  it('watch posts three check-ins and a closing prompt', () => {
    const id = declareSecretKey(harness);
    harness.engine.completeStep(id, 'rotate', ALEX);
    harness.clock.advance(48 * HOUR);
    fireDue(harness);
    const posts = threadPosts(harness, id);
    expect(posts.filter((text) => text.startsWith('Watch check-in'))).toHaveLength(3);
    expect(posts.filter((text) => text.includes('watch for'))).toHaveLength(1);
  });

  it('every step finished resolves the incident with a timeline', () => {
    const id = declareSecretKey(harness);
    for (const step of harness.runbooks.find('secret-key')!.steps) harness.engine.completeStep(id, step.id, ALEX);
    expect(getIncident(harness.db, id)!.status).toBe('resolved');
    expect(threadPosts(harness, id).some((text) => text.startsWith('Timeline of incident'))).toBe(true);
  });

  it('resolving cancels pending timers', () => {
    const id = declareSecretKey(harness);
    for (const step of harness.runbooks.find('secret-key')!.steps) harness.engine.completeStep(id, step.id, ALEX);
    expect(listIncidentTimers(harness.db, id).filter((timer) => timer.status === 'pending')).toHaveLength(0);
  });

  it('click on a closed incident is refused', () => {
    const id = declareSecretKey(harness);
    harness.engine.cancel(id, ALEX);
    expect(() => harness.engine.completeStep(id, 'notify', ALEX)).toThrow(/cancelled/);
  });

  it('click on an unknown incident is refused', () => {
    expect(() => harness.engine.completeStep(999, 'notify', ALEX)).toThrow(/no incident #999/);
  });

  it('guest cannot mark steps of a critical incident', () => {
    const id = declareSecretKey(harness);
    expect(() => harness.engine.completeStep(id, 'notify', GUEST)).toThrow(/Only responders/);
    expect(listSteps(harness.db, id).find((row) => row.stepId === 'notify')!.status).toBe('pending');
  });

  it('refusal is kept in the audit log', () => {
    const id = declareSecretKey(harness);
    expect(() => harness.engine.completeStep(id, 'notify', GUEST)).toThrow(UserError);
    const refusals = listAudit(harness.db, id).filter((entry) => entry.event === 'permission.refused');
    expect(refusals).toHaveLength(1);
    expect(refusals[0].actor).toBe(GUEST.userId);
  });

  it('restore step waits for the steps it requires', () => {
    const runbook = harness.runbooks.find('restore')!;
    const result = harness.engine.declare({ runbook, summary: 'drill', channelId: 'C0SBXOPS', userId: ALEX.userId, metadata: { backupPath: '/nowhere' } });
    const id = (result as { incidentId: number }).incidentId;
    expect(() => harness.engine.requestAction(id, 'replace', ALEX)).toThrow(/Finish "Verify the chosen backup/);
  });

  it('restore step cannot be ticked before its prerequisites', () => {
    const runbook = harness.runbooks.find('restore')!;
    const result = harness.engine.declare({ runbook, summary: 'drill', channelId: 'C0SBXOPS', userId: ALEX.userId, metadata: { backupPath: '/nowhere' } });
    const id = (result as { incidentId: number }).incidentId;
    expect(() => harness.engine.completeStep(id, 'replace', ALEX)).toThrow(/Finish/);
  });

  it('last step done appears in the timeline', () => {
    const id = declareSecretKey(harness);
    for (const step of harness.runbooks.find('secret-key')!.steps) harness.engine.completeStep(id, step.id, ALEX);
    const timeline = JSON.stringify(listOutbox(harness.db, id).find((row) => JSON.stringify(row.payload).includes('Timeline of incident'))!.payload);
    expect(timeline).toContain('7. Post-incident review');
  });

  it('guest cannot take the lead of a critical incident', () => {
    const id = declareSecretKey(harness);
    expect(() => harness.engine.takeLead(id, GUEST)).toThrow(/Only responders/);
    expect(getIncident(harness.db, id)!.leadUserId).toBe(ALEX.userId);
  });

  it('guest cannot be assigned a step of a critical incident', () => {
    const id = declareSecretKey(harness);
    expect(() => harness.engine.assignStep(id, 'rotate', ALEX, GUEST.userId, false)).toThrow(/not a responder/);
  });

  it('cancelled incident timeline does not claim a missed deadline', () => {
    const id = declareSecretKey(harness);
    harness.engine.cancel(id, ALEX);
    const timeline = JSON.stringify(listOutbox(harness.db, id).find((row) => JSON.stringify(row.payload).includes('Timeline of incident'))!.payload);
    expect(timeline).toContain('not reached: the incident was cancelled before it');
    expect(timeline).not.toContain('*missed*');
  });

  it('take the lead changes the lead', () => {
    const id = declareSecretKey(harness);
    harness.engine.takeLead(id, SAM);
    expect(getIncident(harness.db, id)!.leadUserId).toBe(SAM.userId);
  });

  it('undo after a passed deadline escalates', () => {
    const id = declareSecretKey(harness);
    harness.engine.completeStep(id, 'rotate', ALEX);
    harness.clock.advance(20 * MINUTE);
    fireDue(harness);
    harness.engine.undoStep(id, 'rotate', ALEX);
    fireDue(harness);
    expect(threadPosts(harness, id).filter((text) => text.startsWith('Deadline missed'))).toHaveLength(1);
  });
});
