-- GMC doctors store (recipe gmc-to-postgres): one row per doctor, keyed by GMC
-- number. `connected` is "exists in GMC for its designated body"; `designated_body`
-- keeps the last body GMC listed the doctor under, also after a disconnect, so a
-- sweep can require "still connected to that body". `admin` belongs to the users
-- (never mapped, never overwritten by a sync).
CREATE TABLE doctors (
    source_id TEXT PRIMARY KEY,
    scope TEXT NOT NULL,
    gmc_number TEXT NOT NULL,
    first_name TEXT, last_name TEXT,
    submission_date DATE, date_added DATE,
    under_notice TEXT, sanction TEXT, doctor_status TEXT,
    breach TEXT, investigation TEXT, preliminary_investigation TEXT,
    designated_body TEXT,
    admin TEXT,
    content_hash TEXT NOT NULL,
    connected BOOLEAN NOT NULL DEFAULT TRUE,
    connection_run TEXT NOT NULL,
    created_run TEXT NOT NULL,
    updated_run TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX doctors_designated_body ON doctors (designated_body) WHERE connected;

-- The doctors as the original DoctorsForDB document showed them.
CREATE VIEW doctors_for_db AS
SELECT gmc_number, first_name, last_name, submission_date, date_added, under_notice,
       sanction, doctor_status, designated_body, connected AS exists_in_gmc,
       to_timestamp(updated_at / 1000.0) AS gmc_last_updated, admin
FROM doctors;

-- Connection events: every connect, move and disconnect of a GMC designated-body
-- connection (an activity with role designated_body_connection) is logged here and
-- queued in the outbox in the same transaction as the change itself, so a broker
-- outage loses nothing and delays no sync; `provsync relay-changes` drains the outbox
-- to the RabbitMQ topic exchange `provsync.changes`.
CREATE TABLE connection_log (
    id BIGSERIAL PRIMARY KEY,
    gmc_number TEXT NOT NULL,
    event TEXT NOT NULL,
    previous_body TEXT,
    new_body TEXT,
    changed_by TEXT NOT NULL,
    run_id TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX connection_log_doctor ON connection_log (gmc_number);
CREATE TABLE change_outbox (
    id BIGSERIAL PRIMARY KEY,
    routing_key TEXT NOT NULL,
    payload JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX change_outbox_pending ON change_outbox (id) WHERE published_at IS NULL;

CREATE FUNCTION gmc_connection_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    a activities%ROWTYPE;
    ev TEXT;
    prev TEXT;
    nxt TEXT;
    log_id BIGINT;
BEGIN
    IF NEW.kind <> 'activity' THEN
        RETURN NULL;
    END IF;
    SELECT * INTO a FROM activities WHERE source_id = NEW.source_id;
    IF NOT FOUND OR a.role IS DISTINCT FROM 'designated_body_connection' THEN
        RETURN NULL;
    END IF;
    IF NEW.change IN ('created', 'reconnected') THEN
        ev := 'connected';
        nxt := a.workplace_source_id;
    ELSIF NEW.change = 'moved' THEN
        ev := 'moved';
        -- detail: "workplace_source_id: <previous> -> <new>"
        prev := split_part(split_part(NEW.detail, ': ', 2), ' -> ', 1);
        nxt := a.workplace_source_id;
    ELSIF NEW.change = 'disconnected' THEN
        ev := 'disconnected';
        prev := a.workplace_source_id;
    ELSE
        RETURN NULL;
    END IF;
    INSERT INTO connection_log (gmc_number, event, previous_body, new_body, changed_by, run_id, at)
    VALUES (a.individual_source_id, ev, prev, nxt, 'provsync', NEW.run_id, NEW.at)
    RETURNING id INTO log_id;
    INSERT INTO change_outbox (routing_key, payload, created_at)
    VALUES ('gmc.doctor.' || ev,
            jsonb_build_object('event', ev, 'gmc_number', a.individual_source_id,
                               'previous_body', prev, 'new_body', nxt,
                               'changed_by', 'provsync', 'run_id', NEW.run_id,
                               'at', NEW.at, 'connection_log_id', log_id),
            NEW.at);
    RETURN NULL;
END
$$;
CREATE TRIGGER change_log_gmc_connection AFTER INSERT ON change_log
    FOR EACH ROW EXECUTE FUNCTION gmc_connection_event();
