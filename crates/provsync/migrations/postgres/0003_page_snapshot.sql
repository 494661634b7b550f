-- What a page says of the one scope it holds whole (sources that deliver a scope per
-- page, like GMC's designated bodies): JSON of `ScopeSnapshot`, NULL for the others.
-- The sweep reads it to reconcile scope by scope. Same text for SQLite and PostgreSQL.
ALTER TABLE pages ADD COLUMN snapshot TEXT;

-- The sweep counts and lists a target's connected records scope by scope (one
-- GMC designated body at a time): without this, each of those queries read every
-- record of the kind.
CREATE INDEX record_state_scope ON record_state (target, kind, scope, connected);
