-- A run's claims replace its seen marks: every record a page delivered, claimed by
-- the first page that listed it (a second copy is a duplicate, or a conflict when
-- another scope lists it), and spared by the sweep. Keyed by source id, not by
-- record_state row, so a record new to the target is claimed before it is written.
-- Same text for SQLite and PostgreSQL.
CREATE TABLE run_claims (
    run_no    BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    source_id TEXT NOT NULL,
    page_no   BIGINT NOT NULL,
    scope     TEXT NOT NULL,
    conflict  TEXT,
    PRIMARY KEY (run_no, kind, source_id)
);

-- A run in progress during the upgrade keeps what it saw (page unknown: -1).
INSERT INTO run_claims (run_no, kind, source_id, page_no, scope)
SELECT s.run_no, r.kind, r.source_id, -1, r.scope
FROM seen s JOIN record_state r ON r.rid = s.rid;

DROP TABLE seen;
