import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { App, HTTPReceiver, SocketModeReceiver, type CustomRoute, type Receiver } from '@slack/bolt';

import type { BackupLedger } from '../actions/backup-run.ts';
import { buildActions, registerStoredSecrets } from '../actions/registry.ts';
import { listBackups, markPruned, recordBackup } from '../store/backups.ts';
import { saveRestoreTest } from '../store/restore-tests.ts';
import { recordRotation } from '../store/rotations.ts';
import { scheduledJobs } from './scheduled-jobs.ts';
import { createScheduler } from './schedules.ts';
import { describeSuspiciousEvents, sentryClientFromEnv } from '../actions/sentry-registry.ts';
import { escapeText } from '../runbooks/mrkdwn.ts';
import { renderNotice } from '../runbooks/render.ts';
import { ActionRegistry } from '../runbooks/actions-registry.ts';
import { Engine } from '../runbooks/engine.ts';
import { registerBuiltinFollowUps } from '../runbooks/follow-ups.ts';
import { loadRunbooks, type RunbookCatalog } from '../runbooks/loader.ts';
import type { HandlerDeps } from '../handlers/deps.ts';
import { registerHandlers } from '../handlers/register.ts';
import { sentryWebhookRoute } from '../handlers/sentry-webhook.ts';
import { openDatabase, type Db } from '../store/db.ts';
import { countOpenIncidents } from '../store/incidents.ts';
import { getSetting, setSetting } from '../store/settings.ts';
import { BackgroundLane } from './background-lane.ts';
import { boltLogger } from './bolt-logger.ts';
import { AdjustableClock, systemClock, type Clock } from './clock.ts';
import type { Config } from './config.ts';
import { clockRoute, healthRoute } from './http-routes.ts';
import { createLogger, type Logger } from './logger.ts';
import { OutboxWorker } from './outbox-worker.ts';
import { PagerDutyPublisher } from './pagerduty-publisher.ts';
import { registerSecret } from './redact.ts';
import { ResponderDirectory } from './responders.ts';
import { captureError } from './sentry.ts';
import { SlackPublisher } from './slack-publisher.ts';
import { answerIfUnanswered, bufferSlackRequest, processEventErrorHandler, rejectMalformedBodies } from './slack-request-guard.ts';
import { TimerScheduler } from './timer-scheduler.ts';

export interface BotOptions {
  config: Config;
  logger?: Logger;
  /** Replaces the action registry built from the configuration (tests). */
  actions?: ActionRegistry;
  /**
   * Extra CA certificate (PEM) for the PagerDuty Events API, for in-process
   * tests; a deployed bot trusts extra CAs through NODE_EXTRA_CA_CERTS.
   */
  pagerDutyCa?: string;
  /**
   * Extra HTTP routes served beside /slack/events (the sandbox adds its page
   * and Web API). Bolt reads routes when the receiver is built, so they get
   * the clock now and the port through a function.
   */
  extraRoutes?: (context: RouteContext) => CustomRoute[];
}

export interface RouteContext {
  clock: Clock;
  adjustableClock?: AdjustableClock;
  /** The port the receiver listens on, once started. */
  port: () => number | undefined;
}

/** A running bot: the Bolt app and everything behind it. */
export interface Bot {
  config: Config;
  app: App;
  db: Db;
  engine: Engine;
  clock: Clock;
  /** Present when the clock can be moved (sandbox and tests). */
  adjustableClock?: AdjustableClock;
  runbooks: RunbookCatalog;
  logger: Logger;
  outbox: OutboxWorker;
  timers: TimerScheduler;
  /** The HTTP port, once started (HTTP and sandbox modes). */
  port?: number;
  /** Resolves when no Slack listener is running. */
  listenersIdle(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

const CLOCK_OFFSET_SETTING = 'clock_offset_ms';
/** Maximum time a client may take to send a whole request. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Time open requests get to finish when the bot stops, before their connections are closed. */
const SHUTDOWN_GRACE_MS = 2_000;

/** Builds the bot from its configuration; nothing listens until `start()`. */
export function createBot(options: BotOptions): Bot {
  const { config } = options;
  const logger = options.logger ?? createLogger(config.logLevel);
  for (const secret of [config.slack.botToken, config.slack.appToken, config.slack.signingSecret, config.pagerDuty.routingKey, ...Object.values(config.pagerDuty.routingKeys)]) {
    registerSecret(secret);
  }

  const runbooks = loadRunbooks(config.runbooksDir);
  registerBuiltinFollowUps();
  const db = openDatabase(config.databasePath);

  let clock: Clock = systemClock;
  let adjustableClock: AdjustableClock | undefined;
  if (config.clockControl) {
    // The offset is stored, so a restarted sandbox or test bot keeps its moved clock.
    adjustableClock = new AdjustableClock(Number(getSetting(db, CLOCK_OFFSET_SETTING) ?? 0));
    clock = adjustableClock;
  }

  let ready = false;
  let listeningPort: number | undefined;
  const routes: CustomRoute[] = [
    healthRoute(() => ready, () => ({ mode: config.mode, openIncidents: countOpenIncidents(db) })),
    ...(options.extraRoutes?.({ clock, adjustableClock, port: () => listeningPort }) ?? []),
  ];
  let handlerDeps: HandlerDeps | undefined;
  routes.push(
    sentryWebhookRoute(() => ({
      ...handlerDeps!,
      secret: config.env.SENTRY_WEBHOOK_SECRET,
      channel: config.env.SENTRY_ALERT_CHANNEL ?? config.incidentChannel,
      now: () => clock.now(),
    })),
  );
  if (adjustableClock && config.mode !== 'sandbox') {
    const movable = adjustableClock;
    routes.push(clockRoute((ms) => {
      movable.advance(ms);
      return movable.now();
    }));
  }
  const lane = new BackgroundLane();
  const intake = { stopping: false };
  const receiver = createReceiver(config, routes, logger, lane, intake);
  const app = new App({
    token: config.slack.botToken,
    receiver,
    logger: boltLogger(logger),
    deferInitialization: true,
    ...(config.mode === 'sandbox' ? { botId: 'B0SBXBOT', botUserId: 'U0SBXBOT' } : {}),
    clientOptions: {
      slackApiUrl: config.slack.apiUrl,
      // Failed deliveries go back to the outbox, which retries with backoff
      // across restarts; the client's own retries would hide them for minutes.
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: 10_000,
    },
  });

  rejectMalformedBodies(app);

  const actions = options.actions ?? buildActions(config, logger, { db, backupLedger: backupLedgerFor(db) });
  const responders = new ResponderDirectory(config.responders, { client: app.client, clock, logger });
  if (!responders.configured) logger.warn('RESPONDERS is not set: anyone may mark steps and every action is rejected; set RESPONDERS to enable actions');

  let outbox!: OutboxWorker;
  let timers!: TimerScheduler;
  // Timers are armed on the next turn of the event loop, after the handler has acknowledged Slack.
  let scanScheduled = false;
  const scheduleTimerScan = () => {
    if (scanScheduled) return;
    scanScheduled = true;
    setImmediate(() => {
      scanScheduled = false;
      timers?.scanNew();
    });
  };
  const engine = new Engine({
    db,
    clock,
    logger,
    runbooks,
    actions,
    policy: { respondersConfigured: responders.configured, requireSecondApprover: config.requireSecondApprover },
    paging: config.pagerDuty.routingKey || Object.keys(config.pagerDuty.routingKeys).length > 0
      ? { enabled: true }
      : { enabled: false, disabledReason: 'set PAGERDUTY_ROUTING_KEY to page on-call through PagerDuty' },
    onOutbox: () => outbox?.kick(),
    onTimers: () => scheduleTimerScan(),
    watchFindings: watchFindingsFor(config, logger),
    onActionSucceeded: ({ incidentId, actor, outcome, at }) => {
      for (const secretName of outcome.rotated ?? []) {
        recordRotation(db, { secretName, rotatedAt: at, source: 'bot', incidentId, actor, fingerprint: outcome.fingerprints?.[secretName] });
      }
      if (outcome.restoreTest) saveRestoreTest(db, { incidentId, at, passed: outcome.restoreTest.passed, report: outcome.restoreTest.report });
    },
  });

  const publisher = new SlackPublisher({ db, engine, client: app.client, logger });
  const pagerDuty = new PagerDutyPublisher({ engine, client: app.client, config, logger, ca: options.pagerDutyCa });
  outbox = new OutboxWorker({
    db,
    clock,
    logger,
    deliverers: { slack: publisher.deliver, pagerduty: pagerDuty.deliver },
    quiet: () => lane.quiet(),
    onAttempt: (message, result) => {
      if (message.target === 'pagerduty') engine.notePageAttempt(message, result);
      // An incident that cannot be posted (the bot is not in a private channel) must not go unnoticed.
      if (message.target === 'slack' && message.kind === 'post_incident' && result.kind === 'failed' && message.incidentId !== null) {
        const incident = engine.findIncident(message.incidentId);
        const ops = config.opsChannel;
        logger.error({ incidentId: message.incidentId, error: result.error }, 'incident message could not be posted');
        if (incident && ops && ops !== incident.channelId) {
          engine.postToChannel(
            ops,
            renderNotice(`:x: Incident #${incident.id} (${escapeText(incident.title)}) could not be posted in <#${incident.channelId}>: ${escapeText(result.error)}. Invite the bot to that channel and declare it again there.`),
            'incident.post_failed',
            { incidentId: incident.id, error: result.error },
          );
        }
      }
    },
  });
  timers = new TimerScheduler({ db, clock, logger, fire: (id) => engine.fireTimer(id) });

  const scheduler = createScheduler({
    db,
    clock,
    logger: logger.child({ component: 'scheduler' }),
    timezone: config.env.SCHEDULE_TZ?.trim() || 'UTC',
    timezoneVariable: 'SCHEDULE_TZ',
    skipSlotsBeforeFirstStart: true,
    jobs: scheduledJobs({ config, db, clock, logger, engine, actions, runbooks }),
  });
  handlerDeps = {
    engine,
    runbooks,
    responders,
    logger,
    config,
    quiet: () => lane.quiet(),
    listSchedules: () => scheduler.listSchedules(clock.now()).map((info) => ({ name: info.name, cron: info.cron, timezone: info.timezone, nextRun: info.nextRunAt })),
  };
  // Counts Slack requests whose listeners still run. Bolt acknowledges Slack
  // before they finish, so shutdown and tests wait on this count.
  let listenersRunning = 0;
  const listenerWaiters: Array<() => void> = [];
  app.use(async ({ next }) => {
    listenersRunning++;
    try {
      await next();
    } finally {
      listenersRunning--;
      if (listenersRunning === 0) for (const wake of listenerWaiters.splice(0)) wake();
    }
  });
  registerHandlers(app, handlerDeps);
  app.error(async (error) => {
    captureError(error);
    logger.error({ err: error }, 'unhandled error in a Slack listener');
  });

  let countdownTicker: NodeJS.Timeout | undefined;
  let server: Server | undefined;
  const bot: Bot = {
    config,
    app,
    db,
    engine,
    clock,
    adjustableClock,
    runbooks,
    logger,
    outbox,
    timers,
    listenersIdle: () => (listenersRunning === 0 ? Promise.resolve() : new Promise<void>((resolve) => listenerWaiters.push(resolve))),
    async start() {
      logger.info({ mode: config.mode, databasePath: config.databasePath, runbooks: runbooks.all.map((runbook) => runbook.id) }, 'bot starting');
      // The sandbox's Web API is served by this bot's own receiver, so its
      // auth.test works only once the receiver listens.
      if (config.mode !== 'sandbox') await app.init();
      await registerStoredSecrets(config, logger);
      engine.recoverInterruptedRuns();
      engine.declareLeftoverAccepted();
      adjustableClock?.onChange((offset) => {
        setSetting(db, CLOCK_OFFSET_SETTING, String(offset));
        logger.info({ offsetMs: offset }, 'clock moved');
        timers.rearm();
        engine.refreshCountdowns();
        outbox.kick();
      });
      const started = await startReceiver(config, receiver, app);
      if (started) {
        server = started;
        bot.port = listeningPort = (started.address() as AddressInfo).port;
        // Slack sends small requests at once, so a client that trickles its
        // headers or body is cut off instead of holding a connection.
        started.headersTimeout = REQUEST_TIMEOUT_MS;
        started.requestTimeout = REQUEST_TIMEOUT_MS;
      }
      if (config.mode === 'sandbox') await app.init();
      outbox.start();
      timers.start();
      await scheduler.start();
      engine.refreshCountdowns();
      countdownTicker = setInterval(() => {
        try {
          engine.refreshCountdowns();
        } catch (error) {
          logger.error({ err: error }, 'countdown refresh failed');
        }
      }, 60_000);
      countdownTicker.unref();
      ready = true;
      logger.info({ mode: config.mode, port: bot.port, host: config.host }, 'bot started');
    },
    async stop() {
      ready = false;
      // New Slack requests get 503 from here on. Only the listeners already
      // running are waited for, so the wait ends even under steady traffic.
      intake.stopping = true;
      logger.info('bot stopping');
      clearInterval(countdownTicker);
      timers.stop();
      await scheduler.stop();
      await bot.listenersIdle();
      await engine.settle();
      await outbox.stop();
      // server.close() waits for every open connection, so idle ones are
      // closed now and those of half-sent requests after a grace period.
      server?.closeIdleConnections();
      const cutOff = server && setTimeout(() => server?.closeAllConnections(), SHUTDOWN_GRACE_MS);
      await app.stop().catch((error: unknown) => logger.warn({ err: error }, 'stopping the receiver failed'));
      clearTimeout(cutOff);
      db.close();
      logger.info('bot stopped');
    },
  };
  return bot;
}

function backupLedgerFor(db: Db): BackupLedger {
  return {
    record: (backup) => recordBackup(db, backup),
    records: () => listBackups(db, { limit: 10_000 }).map((row) => ({ id: row.id, kind: row.kind, path: row.path, createdAt: row.createdAt, status: row.status })),
    markPruned: (ids) => void markPruned(db, ids),
  };
}

/** Builds the Sentry query behind each watch check-in; without Sentry it returns a line naming what to set. */
function watchFindingsFor(config: Config, logger: Logger) {
  const sentry = sentryClientFromEnv(config.env, logger);
  const told = new Set<number>();
  return async (incidentId: number, since: number, until: number): Promise<string | undefined> => {
    if (!sentry.client) {
      // Say it once per incident, not at every check-in.
      if (told.has(incidentId)) return undefined;
      told.add(incidentId);
      return `Sentry is not configured (set ${sentry.missing.join(', ')}), so check it by hand during this watch.`;
    }
    const report = await sentry.client.findSuspiciousEvents({ since, until });
    const { summary, facts } = describeSuspiciousEvents(report);
    logger.info({ incidentId, total: report.total }, 'watch query done');
    return [`:mag: ${escapeText(summary)}`, ...facts.map(([label, value]) => `• ${escapeText(label)}: ${escapeText(value)}`)].join('\n');
  };
}

function createReceiver(config: Config, routes: CustomRoute[], logger: Logger, lane: BackgroundLane, intake: { stopping: boolean }): Receiver {
  if (config.mode === 'socket') {
    return new SocketModeReceiver({
      appToken: config.slack.appToken!,
      customRoutes: routes,
      installerOptions: { port: config.port },
      logger: boltLogger(logger),
    });
  }
  const receiver = new HTTPReceiver({
    signingSecret: config.slack.signingSecret,
    endpoints: '/slack/events',
    customRoutes: routes,
    logger: boltLogger(logger),
    // Reply to a request that no listener acknowledged before Slack's 3 s limit.
    unhandledRequestTimeoutMillis: 2900,
    processEventErrorHandler: processEventErrorHandler(logger),
  });
  rejectFutureTimestamps(receiver, logger);
  const listener = receiver.requestListener;
  receiver.requestListener = (req, res) => {
    // Only Slack's requests wait for an ack. The sandbox page's event stream
    // and the bot's own Web API calls to the sandbox must not hold work back.
    if (req.method !== 'POST' || !req.url?.startsWith('/slack/events')) return listener(req, res);
    if (intake.stopping) {
      logger.warn({ path: req.url }, 'Slack request rejected: the bot is stopping');
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', connection: 'close', 'retry-after': '5' });
      res.end('runbook-bot is restarting; try again in a few seconds.');
      return;
    }
    lane.track(req, res);
    answerIfUnanswered(req, res, logger);
    bufferSlackRequest(req, res, logger, () => listener(req, res));
  };
  return receiver;
}

/**
 * Bolt rejects signed requests older than five minutes but accepts any
 * timestamp in the future. A replay window must close on both sides, so a
 * request stamped more than five minutes ahead gets 401 before it reaches Bolt.
 */
function rejectFutureTimestamps(receiver: HTTPReceiver, logger: Logger): void {
  const listener = receiver.requestListener;
  receiver.requestListener = (req, res) => {
    const header = req.headers['x-slack-request-timestamp'];
    const timestamp = Number(Array.isArray(header) ? header[0] : header);
    if (req.method === 'POST' && Number.isFinite(timestamp) && timestamp * 1000 - Date.now() > 5 * 60_000) {
      logger.warn({ remoteAddress: req.socket.remoteAddress, path: req.url, timestamp }, 'request timestamp is more than five minutes ahead; rejected');
      res.writeHead(401);
      res.end();
      return;
    }
    listener(req, res);
  };
}

async function startReceiver(config: Config, receiver: Receiver, app: App): Promise<Server | undefined> {
  if (config.mode === 'socket') {
    await app.start();
    return undefined;
  }
  return (await (receiver as HTTPReceiver).start({ port: config.port, host: config.host })) as Server;
}
