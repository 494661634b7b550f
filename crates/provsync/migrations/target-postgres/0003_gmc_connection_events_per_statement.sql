-- Connection events per statement instead of per row (same events, same order,
-- same payload): one pass over the rows a statement added to change_log (a batch
-- of up to 5,000), joined with activities once, instead of a PL/pgSQL call, a
-- lookup and two single-row inserts for every row. A first night of 104,000
-- doctors spent most of its load time in the per-row trigger.
DROP TRIGGER change_log_gmc_connection ON change_log;
DROP FUNCTION gmc_connection_event();

CREATE FUNCTION gmc_connection_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH ev AS (
        SELECT n.id AS change_id, n.run_id, n.at, a.individual_source_id AS gmc_number,
               CASE WHEN n.change IN ('created', 'reconnected') THEN 'connected'
                    ELSE n.change END AS event,
               -- moved: detail is "workplace_source_id: <previous> -> <new>"
               CASE WHEN n.change = 'moved'
                        THEN split_part(split_part(n.detail, ': ', 2), ' -> ', 1)
                    WHEN n.change = 'disconnected' THEN a.workplace_source_id
               END AS previous_body,
               CASE WHEN n.change <> 'disconnected' THEN a.workplace_source_id END AS new_body
        FROM new_rows n
        -- One primary-key lookup per new row. OFFSET 0 keeps the planner from
        -- flattening this into a join: a transition table has no statistics, and
        -- the join it guessed scanned the new rows once per activity.
        CROSS JOIN LATERAL (
            SELECT x.individual_source_id, x.workplace_source_id FROM activities x
            WHERE x.source_id = n.source_id AND x.role = 'designated_body_connection'
            OFFSET 0
        ) a
        WHERE n.kind = 'activity'
          AND n.change IN ('created', 'reconnected', 'moved', 'disconnected')
    ), logged AS (
        INSERT INTO connection_log (gmc_number, event, previous_body, new_body, changed_by, run_id, at)
        SELECT gmc_number, event, previous_body, new_body, 'provsync', run_id, at
        FROM ev ORDER BY change_id
        RETURNING id, gmc_number, event, previous_body, new_body, run_id, at
    )
    INSERT INTO change_outbox (routing_key, payload, created_at)
    SELECT 'gmc.doctor.' || event,
           jsonb_build_object('event', event, 'gmc_number', gmc_number,
                              'previous_body', previous_body, 'new_body', new_body,
                              'changed_by', 'provsync', 'run_id', run_id,
                              'at', at, 'connection_log_id', id),
           at
    FROM logged ORDER BY id;
    RETURN NULL;
END
$$;
CREATE TRIGGER change_log_gmc_connection AFTER INSERT ON change_log
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gmc_connection_events();
