-- What a page says of the one scope it holds whole (sources that deliver a scope per
-- page, like GMC's designated bodies): JSON of `ScopeSnapshot`, NULL for the others.
-- The sweep reads it to reconcile scope by scope. Same text for SQLite and PostgreSQL.
ALTER TABLE pages ADD COLUMN snapshot TEXT;
