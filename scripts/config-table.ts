// Prints the configuration table of the README from the configuration
// schema: node --import tsx scripts/config-table.ts
import { describeConfig } from '../src/bot/config.ts';

export function configTable(): string {
  const rows = describeConfig().map(({ name, description }) => `| \`${name}\` | ${description.replace(/\|/g, '\\|')} |`);
  return ['| Variable | What it sets |', '| --- | --- |', ...rows].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(configTable());
