-- What a record is placed by (an activity's workplace): a write that changes it is a
-- move, counted `moved` as the SQL targets' change logs count it, also for targets
-- that leave that judgment to the state store (Salesforce). Same text for SQLite and
-- PostgreSQL.
ALTER TABLE record_state ADD COLUMN anchor TEXT;
