-- provsync state store, SQLite flavour.
-- Written to port to PostgreSQL with little change: timestamps are integer epoch
-- milliseconds (BIGINT), ids are TEXT, JSON is stored as TEXT, booleans are
-- INTEGER 0/1. The one SQLite-only clause is WITHOUT ROWID on seen (drop it for
-- PostgreSQL), and rid INTEGER PRIMARY KEY becomes BIGSERIAL there.

-- Jobs. queue_seq orders the per-target FIFO queue (set when a job is queued).
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    target          TEXT NOT NULL,
    spec            TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    state           TEXT NOT NULL,
    stage           TEXT NOT NULL,
    failure         TEXT,
    abort_requested INTEGER NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    updated_at      BIGINT NOT NULL,
    summary         TEXT,
    queue_seq       BIGINT,
    -- A small number for the run, so the per-record seen marks stay narrow.
    run_no          INTEGER NOT NULL UNIQUE
);
-- Dispatch asks "is this target busy / who is next" on every start.
CREATE INDEX jobs_target_state ON jobs (target, state, queue_seq);
-- list_jobs is newest first.
CREATE INDEX jobs_created ON jobs (created_at);

-- Every persisted state change, in order (seq is per job, from 1).
CREATE TABLE job_transitions (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    reason     TEXT,
    PRIMARY KEY (job_id, seq)
);

-- Named leases: `job:<id>` for a running job's worker, others for schedules.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Where the next fetch of a job starts.
CREATE TABLE checkpoints (
    job_id              TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    next_page           BIGINT NOT NULL,
    next_cursor         TEXT,
    extraction_complete INTEGER NOT NULL DEFAULT 0
);

-- The page ledger: one row per fetched page; counts (KindCounts JSON) once loaded.
CREATE TABLE pages (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    page_no    BIGINT NOT NULL,
    cursor     TEXT NOT NULL,
    records    BIGINT NOT NULL,
    loaded     INTEGER NOT NULL DEFAULT 0,
    fetched_at BIGINT NOT NULL,
    loaded_at  BIGINT,
    counts     TEXT,
    PRIMARY KEY (job_id, page_no)
);

-- Counts of the relations stage, one row per committed chunk of staged links.
-- The primary key makes a replayed chunk count once.
CREATE TABLE link_chunks (
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    upto_seq BIGINT NOT NULL,
    counts   TEXT NOT NULL,
    PRIMARY KEY (job_id, upto_seq)
);

-- Rejected and failed records (seq is per job, from 1, in arrival order).
CREATE TABLE errors (
    job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq       BIGINT NOT NULL,
    page_no   BIGINT,
    stage     TEXT NOT NULL,
    kind      TEXT,
    source_id TEXT,
    reason    TEXT NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- What each target holds: content hash, id map and sweep stamps, per record.
-- Not tied to a job (it outlives runs), so no foreign key.
-- Targets by number: record_state is keyed by it (short keys, fast lookups).
CREATE TABLE targets (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE record_state (
    rid              INTEGER PRIMARY KEY,
    target           INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    scope            TEXT NOT NULL,
    hash             TEXT NOT NULL,
    target_id        TEXT,
    connected        INTEGER NOT NULL DEFAULT 1,
    updated_run      TEXT,
    disconnected_run TEXT,
    UNIQUE (target, kind, source_id)
);

-- Known records a run saw unchanged (or wrote): the sweep spares them. Integer
-- pairs appended per page, so a rerun of unchanged data costs no record rewrite;
-- dropped when the run ends.
CREATE TABLE seen (
    run_no INTEGER NOT NULL,
    rid    INTEGER NOT NULL,
    PRIMARY KEY (run_no, rid)
) WITHOUT ROWID;

-- Links waiting for the relations stage. seq is derived from (page, index) so a
-- replayed page stages the same rows; parent_key groups a parent's links.
CREATE TABLE staged_links (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    page_no    BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    parent_key TEXT NOT NULL,
    created    INTEGER NOT NULL,
    payload    TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
