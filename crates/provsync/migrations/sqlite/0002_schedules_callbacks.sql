-- Schedules and callbacks. Same text for SQLite and PostgreSQL.

-- Where a job's callbacks go (copied from the spec, so the transition that ends a
-- job can queue its `finished` callback in the same transaction).
ALTER TABLE jobs ADD COLUMN callback_url TEXT;
-- The held-job loop looks for accepted jobs twice a second.
CREATE INDEX jobs_state ON jobs (state);

-- One row per schedule: firing updates it first, which serialises the firing of one
-- schedule across processes (a row lock in PostgreSQL, the write lock in SQLite).
CREATE TABLE schedules (
    name     TEXT PRIMARY KEY,
    fired_at BIGINT
);

-- Every cron tick claimed and every manual trigger. The primary key makes a tick
-- fire once however many processes share the store.
CREATE TABLE schedule_runs (
    schedule   TEXT NOT NULL,
    fired_by   TEXT NOT NULL,
    tick_at    BIGINT NOT NULL,
    job_id     TEXT,
    after_job  TEXT,
    outcome    TEXT NOT NULL,
    note       TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (schedule, fired_by, tick_at)
);
CREATE INDEX schedule_runs_job ON schedule_runs (job_id);
CREATE INDEX schedule_runs_latest ON schedule_runs (schedule, created_at);

-- The callback outbox: queued in the transaction that accepts or ends a job, so
-- nothing is lost and delivery never blocks the job.
CREATE TABLE callbacks (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    event        TEXT NOT NULL,
    url          TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    delivered_at BIGINT,
    gave_up_at   BIGINT,
    last_error   TEXT,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (job_id, event)
);
CREATE INDEX callbacks_due ON callbacks (next_at) WHERE delivered_at IS NULL AND gave_up_at IS NULL;
