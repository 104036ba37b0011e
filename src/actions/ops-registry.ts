import type { Config } from '../bot/config.ts';
import { ActionError } from '../bot/errors.ts';
import type { Logger } from '../bot/logger.ts';
import type { ActionDefinition } from '../runbooks/actions-registry.ts';
import type { Db } from '../store/db.ts';
import {
  checkDeploy,
  checkRequiredEnv,
  checkTlsCertificate,
  latestRestoreTest,
  pipOutdated,
  runSecurityCheckScript,
  type AuditEvidence,
} from './audit-checks.ts';
import { runBackup, type BackupLedger } from './backup-run.ts';
import { replaceDatabase, runMigrations, runRestoreTest, smokeTest, startApp, stopApp, takeSafetyBackup, verifyChosenBackup } from './restore.ts';
import { EnvFileStore } from './secrets/env-file.ts';
import { commandFrom, present, type Env } from './env-values.ts';
import type { ActionContext, ActionOutcome } from './types.ts';

export interface OpsServices {
  db: Db;
  backupLedger: BackupLedger;
}

/** BACKUP_RETENTION_DAYS, default 30. */
export function retentionDays(env: Env): number {
  return Number(present(env.BACKUP_RETENTION_DAYS) ?? 30);
}

function backupPathOf(context: ActionContext): { path: string; sha256?: string } {
  const path = context.metadata.backupPath;
  if (typeof path !== 'string' || path === '') {
    throw new ActionError('invalid_input', 'this restore has no chosen backup; start it with /incident restore and pick a backup');
  }
  return { path, sha256: typeof context.metadata.sha256 === 'string' ? context.metadata.sha256 : undefined };
}

/** Turns audit evidence into a step outcome; only a pass ticks the step, the rest wait for a person. */
function evidenceOutcome(evidence: AuditEvidence): ActionOutcome {
  const icon = { pass: 'pass', warn: 'warning', fail: 'failed', skipped: 'skipped' }[evidence.status];
  return {
    summary: `${icon}: ${evidence.summary}`,
    facts: evidence.lines.map((line, index) => [`${index + 1}`, line]),
    completesStep: evidence.status === 'pass',
  };
}

/** Backup, restore, restore-test and audit actions. */
export function opsActions(config: Config, logger: Logger, services: OpsServices | undefined): ActionDefinition[] {
  const env = config.env;
  const databasePath = present(env.DJANGO_DATABASE_PATH);
  const backupDir = present(env.BACKUP_DIR);
  const backupMissing = [...(databasePath ? [] : ['DJANGO_DATABASE_PATH']), ...(backupDir ? [] : ['BACKUP_DIR'])];
  const stop = commandFrom(env, 'DJANGO_STOP_COMMAND');
  const start = commandFrom(env, 'DJANGO_START_COMMAND');
  const migrate = commandFrom(env, 'DJANGO_MIGRATE_COMMAND');
  const healthUrl = present(env.DJANGO_HEALTH_URL);
  const needServices = () => {
    if (!services) throw new ActionError('not_configured', 'this action needs the bot store, which this build did not pass');
    return services;
  };
  // Django's commands learn which database and .env to use from the same
  // variables the bot reads; no secret is passed.
  const djangoEnv: Record<string, string> = {};
  for (const name of ['DJANGO_DATABASE_PATH', 'DJANGO_ENV_FILE'] as const) {
    const value = present(env[name]);
    if (value) djangoEnv[name] = value;
  }
  const commandOptions = { logger, cwd: present(env.DJANGO_PROJECT_DIR), env: djangoEnv };

  return [
    {
      id: 'backup.run',
      missingConfig: () => backupMissing,
      run: (context) =>
        runBackup({
          databasePath: databasePath!,
          backupDir: backupDir!,
          envFile: present(env.DJANGO_ENV_FILE),
          encryptionKey: present(env.BACKUP_ENCRYPTION_KEY),
          retentionDays: retentionDays(env),
          clock: context.clock,
          logger: context.logger,
          ledger: needServices().backupLedger,
        }),
    },
    {
      id: 'restore.verify',
      missingConfig: () => [],
      run: async (context) => {
        const chosen = backupPathOf(context);
        return verifyChosenBackup({ backupPath: chosen.path, expectedSha256: chosen.sha256, backupDir });
      },
    },
    {
      id: 'restore.safety_backup',
      missingConfig: () => backupMissing,
      run: (context) => takeSafetyBackup({ databasePath: databasePath!, backupDir: backupDir!, clock: context.clock, logger: context.logger }),
    },
    { id: 'restore.stop_app', missingConfig: () => stop.missing, run: () => stopApp(stop.argv!, commandOptions) },
    {
      id: 'restore.replace',
      missingConfig: () => (databasePath ? [] : ['DJANGO_DATABASE_PATH']),
      run: async (context) => {
        const chosen = backupPathOf(context);
        return replaceDatabase({ backupPath: chosen.path, databasePath: databasePath!, expectedSha256: chosen.sha256, logger: context.logger });
      },
    },
    { id: 'restore.migrate', missingConfig: () => migrate.missing, run: () => runMigrations(migrate.argv!, commandOptions) },
    { id: 'restore.start_app', missingConfig: () => start.missing, run: () => startApp(start.argv!, commandOptions) },
    {
      id: 'restore.smoke_test',
      missingConfig: () => (healthUrl ? [] : ['DJANGO_HEALTH_URL']),
      run: () => smokeTest(healthUrl!),
    },
    {
      id: 'restore_test.run',
      missingConfig: () => [...backupMissing, ...(present(env.RESTORE_TEST_STAGING_PATH) ? [] : ['RESTORE_TEST_STAGING_PATH'])],
      run: async (context) => {
        const newest = needServices().backupLedger.records().filter((record) => record.kind === 'database' && record.status === 'good').sort((a, b) => b.createdAt - a.createdAt)[0];
        if (!newest) throw new ActionError('no_backup', `no good database backup is recorded in ${backupDir}; run /incident backup first`);
        const smoke = commandFrom(env, 'RESTORE_TEST_SMOKE_COMMAND');
        const outcome = await runRestoreTest({
          backupPath: newest.path,
          stagingPath: present(env.RESTORE_TEST_STAGING_PATH)!,
          productionPath: databasePath!,
          countTable: present(env.RESTORE_TEST_TABLE),
          migrateArgv: migrate.argv,
          smokeArgv: smoke.argv,
          cwd: commandOptions.cwd,
          // Django's commands must act on the staging copy, never on production.
          env: { ...djangoEnv, DJANGO_DATABASE_PATH: '{stagingPath}' },
          clock: context.clock,
          logger: context.logger,
        });
        const report = outcome.report as unknown as Record<string, unknown>;
        const passed = Boolean((outcome.report as { passed?: boolean }).passed);
        return { ...outcome, restoreTest: { passed, report }, completesStep: passed };
      },
    },
    {
      id: 'audit.security_check',
      missingConfig: () => commandFrom(env, 'AUDIT_SECURITY_CHECK_COMMAND').missing,
      run: async () => evidenceOutcome(await runSecurityCheckScript(commandFrom(env, 'AUDIT_SECURITY_CHECK_COMMAND').argv, commandOptions)),
    },
    {
      id: 'audit.check_deploy',
      missingConfig: () => commandFrom(env, 'AUDIT_DEPLOY_CHECK_COMMAND').missing,
      run: async () => evidenceOutcome(await checkDeploy(commandFrom(env, 'AUDIT_DEPLOY_CHECK_COMMAND').argv, commandOptions)),
    },
    {
      id: 'audit.required_env',
      missingConfig: () => [],
      run: async () => {
        const names = (present(env.AUDIT_REQUIRED_ENV) ?? 'DJANGO_SECRET_KEY,SENTRY_DSN').split(',').map((name) => name.trim()).filter(Boolean);
        const envFile = present(env.DJANGO_ENV_FILE);
        const values: Record<string, string | undefined> = {};
        for (const name of names) values[name] = envFile ? await new EnvFileStore(envFile).read(name) : env[name];
        return evidenceOutcome(checkRequiredEnv(names, values));
      },
    },
    {
      id: 'audit.tls_certificate',
      missingConfig: () => (present(env.AUDIT_TLS_HOST) ? [] : ['AUDIT_TLS_HOST']),
      run: async (context) => {
        const [host, port] = present(env.AUDIT_TLS_HOST)!.split(':');
        return evidenceOutcome(await checkTlsCertificate(host, Number(port ?? 443), context.clock.now()));
      },
    },
    {
      id: 'audit.pip_outdated',
      missingConfig: () => commandFrom(env, 'AUDIT_PIP_COMMAND').missing,
      run: async () => evidenceOutcome(await pipOutdated(commandFrom(env, 'AUDIT_PIP_COMMAND').argv, commandOptions)),
    },
    {
      id: 'audit.restore_test',
      missingConfig: () => [],
      run: async (context) => evidenceOutcome(latestRestoreTest(needServices().db, context.clock.now())),
    },
  ];
}
