import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';

import { generateDjangoSecretKey } from '../src/actions/django.ts';
import { fingerprint } from '../src/bot/fingerprint.ts';
import { rotationHistory } from '../src/store/rotations.ts';
import { ALEX, startTestBot, type TestBot } from './helpers/bot.ts';
import { startHealthServer } from './helpers/health-server.ts';
import { leakSites } from './helpers/leaks.ts';
import { startVaultServer, type VaultDouble } from './helpers/vault-server.ts';

const VAULT_TOKEN = 'hvs.runbook-vault-incident-token-4c2e81';
const MOUNT = 'kv';
const PATH = 'apps/django';

/** Returns the step's blocks in the checklist thread as one string. */
function stepBlocks(bot: TestBot, stepId: string): string {
  const checklist = bot.messages().find((message) => message.text.startsWith('Checklist for incident'))!;
  const blocks = checklist.blocks as Array<{ block_id?: string }>;
  return JSON.stringify(blocks.filter((block) => block.block_id?.startsWith(`step|${stepId}|`)));
}

/** Finds the Run button of a step in the checklist. */
function runButton(bot: TestBot, stepId: string): { confirm?: { text: { text: string } } } | undefined {
  const checklist = bot.messages().find((message) => message.text.startsWith('Checklist for incident'))!;
  const blocks = checklist.blocks as Array<{ block_id?: string; elements?: Array<{ action_id?: string }> }>;
  const actions = blocks.find((block) => block.block_id === `step|${stepId}|actions`);
  return actions?.elements?.find((element) => element.action_id === 'step.run') as never;
}

function vaultKey(vault: VaultDouble): unknown {
  return vault.secret(PATH)?.data.DJANGO_SECRET_KEY;
}

function vaultEnv(vault: VaultDouble, healthUrl: string, token = VAULT_TOKEN): Record<string, string> {
  return {
    SECRET_STORE: 'vault',
    VAULT_ADDR: vault.addr,
    VAULT_TOKEN: token,
    VAULT_MOUNT: MOUNT,
    VAULT_PATH: PATH,
    DJANGO_RESTART_COMMAND: '/bin/true',
    DJANGO_HEALTH_URL: healthUrl,
  };
}

let health: Awaited<ReturnType<typeof startHealthServer>>;

beforeAll(async () => {
  health = await startHealthServer();
});

afterAll(async () => {
  await health.close();
});

describe('secret-key incident with Vault as the secret store', () => {
  let vault: VaultDouble;
  let bot: TestBot;
  let oldKey: string;

  beforeEach(async () => {
    // cas_required makes the double reject any write without check-and-set.
    vault = await startVaultServer({ token: VAULT_TOKEN, mount: MOUNT, casRequired: true });
    oldKey = generateDjangoSecretKey();
    vault.putSecret(PATH, { DJANGO_SECRET_KEY: oldKey, DJANGO_SITE_NAME: 'shop' });
    bot = await startTestBot({ env: vaultEnv(vault, health.url) });
    await bot.command(ALEX, '/incident secret-key Key pasted in a public gist');
  });

  afterEach(async () => {
    await bot.close();
    await vault.stop();
  });

  it('rotate button asks for confirmation first', async () => {
    const button = runButton(bot, 'rotate');

    expect(button?.confirm?.text.text).toContain('Writes a new key to the secret store');
    await expect(bot.click(ALEX, 'step.run', 'rotate', { confirmed: false })).rejects.toThrow(/confirm/);
    expect(vault.secret(PATH)?.version).toBe(1);
  });

  it('confirmed rotation writes a new key to Vault', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    const newKey = vaultKey(vault);

    expect(newKey).not.toBe(oldKey);
    expect(newKey).toHaveLength(50);
    expect(vault.secret(PATH)?.version).toBe(2);
  });

  it('rotation keeps other Vault values and no fallback', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    const data = vault.secret(PATH)!.data;

    expect(data.DJANGO_SITE_NAME).toBe('shop');
    expect(data.DJANGO_SECRET_KEY_FALLBACKS ?? '').toBe('');
  });

  it('rotation writes with check-and-set and the token', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    const writes = vault.requests.filter((request) => request.method === 'POST');

    expect(writes).toHaveLength(1);
    expect((writes[0].body as { options: { cas: number } }).options.cas).toBe(1);
    expect(writes[0].path).toBe(`/v1/${MOUNT}/data/${PATH}`);
    expect(writes[0].token).toBe(VAULT_TOKEN);
  });

  it('Slack shows the new key fingerprint', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    const blocks = stepBlocks(bot, 'rotate');

    expect(blocks).toContain(':white_check_mark: *2. Rotate DJANGO_SECRET_KEY*');
    expect(blocks).toContain(`New key ${fingerprint(String(vaultKey(vault)))} written`);
    expect(blocks).toContain(`Vault secret ${MOUNT}/data/${PATH}`);
  });

  it('new key reaches no log, Slack or database', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    const newKey = String(vaultKey(vault));

    expect(bot.logs.lines.filter((line) => line.includes(newKey))).toEqual([]);
    expect(leakSites(bot, newKey)).toEqual([]);
  });

  it('old key and token reach no output', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');

    expect(leakSites(bot, oldKey)).toEqual([]);
    expect(leakSites(bot, VAULT_TOKEN)).toEqual([]);
  });

  it('rotation history stores only the fingerprint', async () => {
    await bot.click(ALEX, 'step.run', 'rotate');
    const history = rotationHistory(bot.bot.db, 'DJANGO_SECRET_KEY', 5);

    expect(history).toHaveLength(1);
    expect(history[0].fingerprint).toBe(fingerprint(String(vaultKey(vault))));
  });

  it('sealed Vault fails the step and changes nothing', async () => {
    vault.setFailure(503);
    await bot.click(ALEX, 'step.run', 'rotate');
    vault.setFailure(null);
    const blocks = stepBlocks(bot, 'rotate');

    expect(vaultKey(vault)).toBe(oldKey);
    expect(blocks).toContain(':white_large_square: *2. Rotate DJANGO_SECRET_KEY*');
    expect(blocks).toContain('Action failed: Vault cannot serve');
    expect(blocks).toContain('HTTP 503');
    expect(blocks).toContain('Run again: Rotate DJANGO_SECRET_KEY');
  });

  it('concurrent Vault writer fails the step', async () => {
    vault.beforeNextWrite(() => vault.putSecret(PATH, { DJANGO_SECRET_KEY: oldKey, DJANGO_SITE_NAME: 'changed elsewhere' }));
    await bot.click(ALEX, 'step.run', 'rotate');
    const blocks = stepBlocks(bot, 'rotate');

    expect(vault.secret(PATH)?.data.DJANGO_SITE_NAME).toBe('changed elsewhere');
    expect(vaultKey(vault)).toBe(oldKey);
    expect(blocks).toContain('another writer changed');
    expect(blocks).toContain('Run again: Rotate DJANGO_SECRET_KEY');
  });

  it('run again after unsealing rotates once', async () => {
    vault.setFailure(503);
    await bot.click(ALEX, 'step.run', 'rotate');
    vault.setFailure(null);
    await bot.click(ALEX, 'step.run', 'rotate');

    expect(vaultKey(vault)).not.toBe(oldKey);
    expect(vault.secret(PATH)?.version).toBe(2);
    expect(stepBlocks(bot, 'rotate')).toContain(':white_check_mark: *2. Rotate DJANGO_SECRET_KEY*');
  });
});

describe('Vault rejecting the bot token', () => {
  const wrongToken = 'hvs.runbook-vault-wrong-token-9d0b37';
  let vault: VaultDouble;
  let bot: TestBot;
  let oldKey: string;

  beforeEach(async () => {
    vault = await startVaultServer({ token: VAULT_TOKEN, mount: MOUNT });
    oldKey = generateDjangoSecretKey();
    vault.putSecret(PATH, { DJANGO_SECRET_KEY: oldKey });
    bot = await startTestBot({ env: vaultEnv(vault, health.url, wrongToken) });
    await bot.command(ALEX, '/incident secret-key leak');
    await bot.click(ALEX, 'step.run', 'rotate');
  });

  afterEach(async () => {
    await bot.close();
    await vault.stop();
  });

  it('step names VAULT_TOKEN and keeps the key', async () => {
    const blocks = stepBlocks(bot, 'rotate');

    expect(blocks).toContain('Action failed: Vault denied access');
    expect(blocks).toContain('VAULT_TOKEN');
    expect(vaultKey(vault)).toBe(oldKey);
  });

  it('rejected token reaches no output', async () => {
    expect(leakSites(bot, wrongToken)).toEqual([]);
  });
});
