-- Provider store written by the SQLite target. Mapped fields are plain columns;
-- the bookkeeping columns (hash, connection flag, runs) are the target's own.
CREATE TABLE individuals (
    source_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    first_name TEXT, last_name TEXT, middle_name TEXT, full_name TEXT, title TEXT,
    gender TEXT, birth_date TEXT, primary_specialty TEXT, specialties TEXT, npi TEXT,
    email TEXT, status TEXT,
    content_hash TEXT NOT NULL,
    connected BOOLEAN NOT NULL DEFAULT TRUE,
    connection_run TEXT NOT NULL,
    created_run TEXT NOT NULL,
    updated_run TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE workplaces (
    source_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    parent_source_id TEXT,
    name TEXT, type_code TEXT, address_line TEXT, city TEXT, region TEXT, postal_code TEXT,
    country TEXT, phone TEXT, npi TEXT, status TEXT,
    content_hash TEXT NOT NULL,
    connected BOOLEAN NOT NULL DEFAULT TRUE,
    connection_run TEXT NOT NULL,
    created_run TEXT NOT NULL,
    updated_run TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX workplaces_parent ON workplaces (parent_source_id);
CREATE TABLE activities (
    source_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    individual_source_id TEXT NOT NULL,
    workplace_source_id TEXT NOT NULL,
    role TEXT, is_primary BOOLEAN, phone TEXT, status TEXT,
    content_hash TEXT NOT NULL,
    connected BOOLEAN NOT NULL DEFAULT TRUE,
    connection_run TEXT NOT NULL,
    created_run TEXT NOT NULL,
    updated_run TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX activities_individual ON activities (individual_source_id);
CREATE INDEX activities_workplace ON activities (workplace_source_id);
CREATE TABLE relations (
    source_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    relation_type TEXT, from_kind TEXT, from_source_id TEXT, to_kind TEXT, to_source_id TEXT,
    content_hash TEXT NOT NULL,
    connected BOOLEAN NOT NULL DEFAULT TRUE,
    connection_run TEXT NOT NULL,
    created_run TEXT NOT NULL,
    updated_run TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE codes (
    source_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    list TEXT, code TEXT, label TEXT, labels JSONB, active BOOLEAN,
    content_hash TEXT NOT NULL,
    connected BOOLEAN NOT NULL DEFAULT TRUE,
    connection_run TEXT NOT NULL,
    created_run TEXT NOT NULL,
    updated_run TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- One row per applied change: created, updated, moved, disconnected, reconnected.
-- A page replayed after a crash logs nothing twice: the target skips records the
-- same run already wrote (their updated_run says so).
CREATE TABLE change_log (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    change TEXT NOT NULL,
    detail TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX change_log_run ON change_log (run_id);
