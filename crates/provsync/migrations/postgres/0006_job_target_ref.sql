-- What a target keeps of a run across processes (the Salesforce target: the Id of
-- the run's IntegrationJobRun, created when the run starts and updated by Id when it
-- ends, also by a process that resumes the run). Same text for SQLite and PostgreSQL.
ALTER TABLE jobs ADD COLUMN target_ref TEXT;
