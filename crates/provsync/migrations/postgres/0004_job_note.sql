-- Why a running job waits (parked on a target's spent API budget). In the store, not
-- in the memory of the process running the job, so a second `serve`, `provsync
-- status` or the distributed driver's peers can all say why. Same text for SQLite
-- and PostgreSQL.
ALTER TABLE jobs ADD COLUMN note TEXT;
