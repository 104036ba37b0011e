/**
 * Versioned schema migrations. Each entry runs once, in order, inside one
 * transaction with the `user_version` bump, so a crash mid-migration leaves
 * the previous version intact. Append new entries; never edit old ones.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: incidents, steps, timers, audit log, action runs, outbox
  `
  CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    runbook_id TEXT NOT NULL,
    title TEXT NOT NULL,
    severity TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '',
    channel_id TEXT NOT NULL,
    declared_by TEXT NOT NULL,
    lead_user_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'resolved', 'cancelled')),
    declared_at INTEGER NOT NULL,
    resolved_at INTEGER,
    message_ts TEXT,
    dedup_key TEXT NOT NULL UNIQUE,
    origin TEXT NOT NULL DEFAULT 'command',
    countdown_label TEXT,
    message_hash TEXT,
    metadata TEXT NOT NULL DEFAULT '{}'
  );
  CREATE INDEX incidents_open ON incidents (status, channel_id, runbook_id);

  CREATE TABLE steps (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    step_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'skipped')),
    done_by TEXT,
    done_at INTEGER,
    skip_reason TEXT,
    assignee TEXT,
    due_at INTEGER,
    deadline_missed INTEGER NOT NULL DEFAULT 0,
    watch_ends_at INTEGER,
    note TEXT,
    PRIMARY KEY (incident_id, step_id)
  );

  CREATE TABLE checklist_messages (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    chunk INTEGER NOT NULL,
    ts TEXT,
    render_hash TEXT,
    PRIMARY KEY (incident_id, chunk)
  );

  CREATE TABLE timers (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER REFERENCES incidents (id),
    step_id TEXT,
    kind TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'fired', 'cancelled')),
    fired_at INTEGER,
    late_ms INTEGER,
    payload TEXT NOT NULL DEFAULT '{}'
  );
  CREATE INDEX timers_pending ON timers (status, due_at);

  CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    step_id TEXT,
    details TEXT NOT NULL DEFAULT '{}'
  );
  CREATE INDEX audit_by_incident ON audit_log (incident_id, id);
  CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
  CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

  CREATE TABLE action_runs (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    step_id TEXT NOT NULL,
    action TEXT NOT NULL,
    status TEXT NOT NULL
      CHECK (status IN ('requested', 'running', 'succeeded', 'failed', 'interrupted', 'superseded')),
    requested_by TEXT NOT NULL,
    approved_by TEXT,
    requested_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    inputs TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT
  );
  -- One live or successful run per (incident, step, action); failed,
  -- interrupted and superseded runs stay as history and do not block running again.
  CREATE UNIQUE INDEX action_runs_once ON action_runs (incident_id, step_id, action)
    WHERE status IN ('requested', 'running', 'succeeded');

  CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER,
    target TEXT NOT NULL CHECK (target IN ('slack', 'pagerduty')),
    kind TEXT NOT NULL,
    merge_key TEXT,
    payload TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    -- 1 while a worker delivers the message; a merge never joins such a row,
    -- because its render is already taken.
    in_flight INTEGER NOT NULL DEFAULT 0,
    -- 1 when a process died while delivering it: it may have reached the
    -- target, so the deliverer checks before sending it again.
    uncertain INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER,
    last_error TEXT,
    result TEXT
  );
  CREATE INDEX outbox_pending ON outbox (status, next_attempt_at);
  CREATE UNIQUE INDEX outbox_merge ON outbox (merge_key) WHERE status = 'pending' AND in_flight = 0;

  CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  `,
  // 2: rotation history, backups, schedule slots, restore-test reports, Sentry alerts
  `
  CREATE TABLE rotations (
    id INTEGER PRIMARY KEY,
    secret_name TEXT NOT NULL,
    rotated_at INTEGER NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('bot', 'outside')),
    incident_id INTEGER,
    actor TEXT NOT NULL,
    fingerprint TEXT
  );
  CREATE INDEX rotations_by_secret ON rotations (secret_name, rotated_at);

  CREATE TABLE backups (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('database', 'env')),
    path TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    size_bytes INTEGER,
    sha256 TEXT,
    status TEXT NOT NULL CHECK (status IN ('good', 'failed', 'pruned')),
    error TEXT
  );
  CREATE INDEX backups_by_time ON backups (kind, status, created_at);

  CREATE TABLE schedule_slots (
    schedule TEXT NOT NULL,
    slot TEXT NOT NULL,
    claimed_at INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    finished_at INTEGER,
    error TEXT,
    PRIMARY KEY (schedule, slot)
  );

  CREATE TABLE restore_tests (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER,
    at INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    report TEXT NOT NULL
  );

  CREATE TABLE webhook_events (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    resource TEXT,
    alert TEXT,
    matched_runbook TEXT,
    summary TEXT NOT NULL DEFAULT '{}'
  );
  `,
  // 3: webhook deliveries are recognised by Sentry's Request-ID, so a replay posts nothing
  `
  ALTER TABLE webhook_events ADD COLUMN request_id TEXT;
  CREATE UNIQUE INDEX webhook_events_request ON webhook_events (source, request_id) WHERE request_id IS NOT NULL;
  `,
  // 4: a declaration is written here before Slack is acknowledged, and
  // becomes an incident in the transaction that deletes it
  `
  CREATE TABLE accepted_declarations (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    runbook_id TEXT NOT NULL,
    summary TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    user_id TEXT NOT NULL
  );
  `,
];
