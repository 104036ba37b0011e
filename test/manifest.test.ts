import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
const schemaDir = `${root}vendor/slack-manifest-schema/`;

function loadSchema(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(`${schemaDir}${name}`, 'utf8')) as Record<string, unknown>;
}

function validator() {
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  // The index schema refers to the versioned schemas by their published URLs.
  const index = loadSchema('manifest.schema.json');
  for (const [version, file] of [['1', 'manifest.schema.1.0.0.json'], ['2', 'manifest.schema.2.0.0.json']] as const) {
    const url = JSON.stringify(index).match(new RegExp(`https://[^"]*manifest\\.schema\\.${version}\\.0\\.0\\.json`))?.[0];
    if (url) ajv.addSchema(loadSchema(file), url);
  }
  return ajv.compile(index);
}

const manifest = parse(readFileSync(`${root}manifest.yml`, 'utf8')) as Record<string, any>;

describe('Slack app manifest', () => {
  it('is valid against the published schema', () => {
    const validate = validator();
    const valid = validate(manifest);
    if (!valid) console.error(validate.errors);
    expect(valid).toBe(true);
  });

  it('a broken manifest fails the same schema', () => {
    const validate = validator();
    expect(validate({ ...manifest, display_information: { name: '' } })).toBe(false);
  });

  it('declares the /incident command', () => {
    expect(manifest.features.slash_commands.map((command: { command: string }) => command.command)).toEqual(['/incident']);
  });

  it('turns on interactivity and Socket Mode', () => {
    expect(manifest.settings.interactivity.is_enabled).toBe(true);
    expect(manifest.settings.socket_mode_enabled).toBe(true);
  });

  it('asks for the scopes the bot uses', () => {
    expect(manifest.oauth_config.scopes.bot).toEqual(['commands', 'chat:write', 'chat:write.public', 'usergroups:read', 'channels:history', 'groups:history']);
  });
});
