import { describe, expect, it } from 'vitest';

import { ConfigError, loadConfig } from '../src/bot/config.ts';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('configuration', () => {
  it('no Slack credentials selects the sandbox', () => {
    expect(loadConfig({}).mode).toBe('sandbox');
  });

  it('app token and bot token select Socket Mode', () => {
    expect(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1' }).mode).toBe('socket');
  });

  it('signing secret and bot token select HTTP mode', () => {
    expect(loadConfig({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 'abc' }).mode).toBe('http');
  });

  it('sandbox listens on loopback only', () => {
    expect(loadConfig({}).host).toBe('127.0.0.1');
  });

  it('every problem is reported at once', () => {
    const problems = problemsOf({ SLACK_SIGNING_SECRET: 'abc', PORT: 'eighty', LOG_LEVEL: 'loud' });
    expect(problems.some((problem) => problem.startsWith('PORT:'))).toBe(true);
    expect(problems.some((problem) => problem.startsWith('LOG_LEVEL:'))).toBe(true);
    expect(problems.some((problem) => problem.startsWith('SLACK_BOT_TOKEN: missing'))).toBe(true);
  });

  it('a problem shows the value that was given', () => {
    expect(problemsOf({ PORT: '99999' })[0]).toContain('"99999"');
  });

  it('a secret value is never shown in a problem', () => {
    const problems = problemsOf({ SLACK_BOT_TOKEN: 'not-a-token-value' });
    expect(problems.join('\n')).not.toContain('not-a-token-value');
  });

  it('bot token without a mode variable is rejected', () => {
    expect(problemsOf({ SLACK_BOT_TOKEN: 'xoxb-1' })[0]).toContain('SLACK_APP_TOKEN or SLACK_SIGNING_SECRET');
  });

  it('malformed responder id is rejected', () => {
    expect(problemsOf({ RESPONDERS: 'U123ABC,alex' })[0]).toContain('"alex"');
  });

  it('SLACK_API_URL must be http or https', () => {
    expect(problemsOf({ SLACK_API_URL: 'ftp://example.invalid/api/' })[0]).toMatch(/^SLACK_API_URL:/);
  });

  it('channel given by name is rejected', () => {
    expect(problemsOf({ OPS_CHANNEL: '#ops' })[0]).toMatch(/^OPS_CHANNEL: must be a channel id/);
  });

  it('alert action that is not JSON is rejected', () => {
    expect(problemsOf({ SENTRY_ALERT_ACTION_JSON: '{not json' })[0]).toMatch(/^SENTRY_ALERT_ACTION_JSON: must be a JSON object/);
  });

  it('vault store without its address is rejected', () => {
    expect(problemsOf({ SECRET_STORE: 'vault' })[0]).toContain('VAULT_ADDR and VAULT_TOKEN');
  });

  it('PORT defaults to 3000', () => {
    expect(loadConfig({}).port).toBe(3000);
  });
});
