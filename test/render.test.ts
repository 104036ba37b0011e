import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { renderChecklist, renderIncidentMessage, type SlackMessage } from '../src/runbooks/render.ts';
import { checkMessage } from '../src/sandbox/block-kit.ts';
import { ALEX, createEngineHarness, tempDir, type EngineHarness } from './helpers/engine.ts';

function longRunbook(steps: number): string {
  const lines = ['id: long', 'title: A very long runbook', 'severity: critical', 'steps:'];
  for (let index = 0; index < steps; index++) {
    lines.push(`  - id: step-${index}`, `    title: Step ${index} <!channel> ${'t'.repeat(150)}`, `    description: ${'d'.repeat(1900)}`);
  }
  return `${lines.join('\n')}\n`;
}

function slackAccepts(message: SlackMessage): boolean {
  const result = checkMessage(message.text, message.blocks);
  if (!result.ok) console.error(result);
  return result.ok;
}

describe('rendering', () => {
  let dir: ReturnType<typeof tempDir>;
  let harness: EngineHarness;
  beforeEach(() => {
    dir = tempDir('render-');
    writeFileSync(join(dir.path, 'long.yml'), longRunbook(60));
    harness = createEngineHarness({ runbooksDir: dir.path });
  });
  afterEach(() => {
    harness.close();
    dir.remove();
  });

  function declare(runbookId: string, summary: string): number {
    const result = harness.engine.declare({ runbook: harness.runbooks.find(runbookId)!, summary, channelId: 'C0SBXINCIDENTS', userId: ALEX.userId });
    return (result as { incidentId: number }).incidentId;
  }

  it('cancel dialog offers to keep it open', () => {
    const id = declare('secret-key', 'x');
    const text = JSON.stringify(renderIncidentMessage(harness.engine.view(id)).blocks);
    expect(text).toContain('"deny":{"type":"plain_text","text":"Keep it open"}');
  });

  it('60-step checklist splits into several valid messages', () => {
    const parts = renderChecklist(harness.engine.view(declare('long', 'x')));
    expect(parts.length).toBeGreaterThan(1);
    expect(parts.every(slackAccepts)).toBe(true);
  });

  it('60-step checklist keeps every step', () => {
    const parts = renderChecklist(harness.engine.view(declare('long', 'x')));
    const text = JSON.stringify(parts);
    expect(text).toContain('step|step-0|text');
    expect(text).toContain('step|step-59|text');
  });

  it('summary of 5,000 characters renders within limits', () => {
    const message = renderIncidentMessage(harness.engine.view(declare('secret-key', 's'.repeat(5000))));
    expect(slackAccepts(message)).toBe(true);
  });

  it('mentions in a summary are shown as text', () => {
    const message = renderIncidentMessage(harness.engine.view(declare('secret-key', 'ping <!channel> and <@U123>')));
    const text = JSON.stringify(message.blocks);
    expect(text).not.toContain('<!channel>');
    expect(text).toContain('&lt;!channel&gt;');
    expect(text).not.toContain('<@U123>');
  });

  it('mentions in a step title are shown as text', () => {
    const parts = renderChecklist(harness.engine.view(declare('long', 'x')));
    expect(JSON.stringify(parts)).not.toContain('<!channel>');
  });

  it('incident message shows the next deadline and countdown', () => {
    const message = renderIncidentMessage(harness.engine.view(declare('secret-key', 'x')));
    const text = JSON.stringify(message.blocks);
    expect(text).toContain('Rotate DJANGO_SECRET_KEY: due <!date^');
    expect(text).toContain('15 min left');
  });

  it('secret-key checklist is one valid message', () => {
    const parts = renderChecklist(harness.engine.view(declare('secret-key', 'x')));
    expect(parts).toHaveLength(1);
    expect(slackAccepts(parts[0])).toBe(true);
  });
});
