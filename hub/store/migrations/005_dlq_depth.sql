-- Unresolved dead letters per service, kept by triggers, so a metrics scrape reads one small
-- row per service instead of counting a DLQ that may hold hundreds of thousands of rows.
-- Statement-level triggers add up each statement's rows, so a bulk replay or flush updates
-- each service's count once; services are locked in name order, so concurrent statements
-- cannot deadlock on them.
CREATE TABLE dlq_depth (
    service     text PRIMARY KEY,
    unresolved  bigint NOT NULL
);
INSERT INTO dlq_depth (service, unresolved)
SELECT service, count(*) FROM dlq WHERE resolved_at IS NULL GROUP BY service;

CREATE FUNCTION add_dlq_depth(changes jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO dlq_depth AS d (service, unresolved)
    SELECT key, value::bigint FROM jsonb_each_text(changes) WHERE value::bigint <> 0
    ORDER BY key
    ON CONFLICT (service) DO UPDATE SET unresolved = d.unresolved + EXCLUDED.unresolved;
$$;

CREATE FUNCTION dlq_depth_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM add_dlq_depth((SELECT coalesce(jsonb_object_agg(service, n), '{}')
                           FROM (SELECT service, count(*) AS n FROM new_rows
                                 WHERE resolved_at IS NULL GROUP BY service) AS s));
    RETURN NULL;
END;
$$;

CREATE FUNCTION dlq_depth_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM add_dlq_depth((SELECT coalesce(jsonb_object_agg(service, -n), '{}')
                           FROM (SELECT service, count(*) AS n FROM old_rows
                                 WHERE resolved_at IS NULL GROUP BY service) AS s));
    RETURN NULL;
END;
$$;

CREATE FUNCTION dlq_depth_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM add_dlq_depth((SELECT coalesce(jsonb_object_agg(service, n), '{}')
                           FROM (SELECT service, sum(n) AS n FROM (
                                     SELECT service, 1 AS n FROM new_rows
                                     WHERE resolved_at IS NULL
                                     UNION ALL
                                     SELECT service, -1 FROM old_rows
                                     WHERE resolved_at IS NULL) AS c
                                 GROUP BY service) AS s));
    RETURN NULL;
END;
$$;

CREATE FUNCTION dlq_depth_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dlq_depth;
    RETURN NULL;
END;
$$;

CREATE TRIGGER dlq_depth_insert AFTER INSERT ON dlq REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dlq_depth_inserted();
CREATE TRIGGER dlq_depth_delete AFTER DELETE ON dlq REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dlq_depth_deleted();
CREATE TRIGGER dlq_depth_update AFTER UPDATE ON dlq
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dlq_depth_updated();
CREATE TRIGGER dlq_depth_truncate AFTER TRUNCATE ON dlq
    FOR EACH STATEMENT EXECUTE FUNCTION dlq_depth_truncated();
