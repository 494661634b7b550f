-- provsync state store, PostgreSQL flavour: the SQLite schema (migrations/sqlite)
-- ported. Timestamps are BIGINT epoch milliseconds and JSON is TEXT, as there, so
-- both stores read and write the same values; flags are BOOLEAN (PostgreSQL has no
-- integer-to-boolean coercion, and the Rust side reads `bool` directly).
-- Every table lives in the store's own schema (the connection's search_path), so
-- this migration names none.

-- Jobs. queue_seq orders the per-target FIFO queue (set when a job is queued).
-- run_no comes from a sequence: SQLite's MAX(run_no) + 1 relies on its single
-- writer, and two concurrent create_job calls here would collide on UNIQUE.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,
    target          TEXT NOT NULL,
    spec            TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    state           TEXT NOT NULL,
    stage           TEXT NOT NULL,
    failure         TEXT,
    abort_requested BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      BIGINT NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    updated_at      BIGINT NOT NULL,
    summary         TEXT,
    queue_seq       BIGINT,
    -- A small number for the run, so the per-record seen marks stay narrow.
    run_no          BIGSERIAL NOT NULL UNIQUE
);
-- Dispatch asks "is this target busy / who is next" on every start.
CREATE INDEX jobs_target_state ON jobs (target, state, queue_seq);
-- list_jobs is newest first.
CREATE INDEX jobs_created ON jobs (created_at);

-- One row per dispatch key, locked (SELECT ... FOR UPDATE via an upsert) by
-- dispatch and start_next_queued so that deciding "start or queue" is serialised
-- per target across processes. Holds nothing else.
CREATE TABLE dispatch_targets (
    target TEXT PRIMARY KEY
);

-- Every persisted state change, in order (seq is per job, from 1; writers hold
-- the job's row lock, so MAX(seq) + 1 cannot race).
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
    extraction_complete BOOLEAN NOT NULL DEFAULT FALSE
);

-- The page ledger: one row per fetched page; counts (KindCounts JSON) once loaded.
CREATE TABLE pages (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    page_no    BIGINT NOT NULL,
    cursor     TEXT NOT NULL,
    records    BIGINT NOT NULL,
    loaded     BOOLEAN NOT NULL DEFAULT FALSE,
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

-- Rejected and failed records, in arrival order. seq comes from a sequence
-- (increasing across jobs, not per job from 1 as in SQLite): workers of one job
-- commit pages concurrently, and MAX(seq) + 1 would collide or need a job-wide lock.
CREATE TABLE errors (
    job_id    TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq       BIGSERIAL NOT NULL,
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
    id   BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE record_state (
    rid              BIGSERIAL PRIMARY KEY,
    target           BIGINT NOT NULL,
    kind             TEXT NOT NULL,
    source_id        TEXT NOT NULL,
    scope            TEXT NOT NULL,
    hash             TEXT NOT NULL,
    target_id        TEXT,
    connected        BOOLEAN NOT NULL DEFAULT TRUE,
    updated_run      TEXT,
    disconnected_run TEXT,
    UNIQUE (target, kind, source_id)
);

-- Known records a run saw unchanged (or wrote): the sweep spares them. Integer
-- pairs appended per page, so a rerun of unchanged data costs no record rewrite;
-- dropped when the run ends.
CREATE TABLE seen (
    run_no BIGINT NOT NULL,
    rid    BIGINT NOT NULL,
    PRIMARY KEY (run_no, rid)
);

-- Links waiting for the relations stage. seq is derived from (page, index) so a
-- replayed page stages the same rows; parent_key groups a parent's links.
CREATE TABLE staged_links (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    page_no    BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    parent_key TEXT NOT NULL,
    created    BOOLEAN NOT NULL,
    payload    TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
