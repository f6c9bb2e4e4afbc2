-- The delivery log, partitioned by day (UTC) so retention drops whole days instead of
-- deleting rows, and every listing reads only the newest index pages of each day.
--
-- Partitions are named delivery_log_pYYYYMMDD and made ahead of time by
-- delivery_log_ensure_partitions (at every migrate, so at every worker start, and by the
-- hourly prune run). delivery_log_default takes any row whose day has no partition yet, so
-- an insert never fails; its rows move into their day's partition when that is made.
--
-- The old table's rows are copied into day partitions; its id sequence keeps counting.

ALTER TABLE delivery_log RENAME TO delivery_log_unpartitioned;
ALTER INDEX delivery_log_pkey RENAME TO delivery_log_unpartitioned_pkey;
DROP INDEX delivery_log_created_at, delivery_log_service, delivery_log_event_id,
    delivery_log_delivery_id;
ALTER SEQUENCE delivery_log_id_seq OWNED BY NONE;

CREATE TABLE delivery_log (
    id                bigint NOT NULL DEFAULT nextval('delivery_log_id_seq'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    direction         text NOT NULL CONSTRAINT delivery_log_direction_check
                          CHECK (direction IN ('in', 'out')),
    service           text NOT NULL,
    rule_id           bigint,
    event_id          text,
    event_name        text,
    delivery_id       text,
    workflow_id       text,
    method            text,
    target            text,
    status            text NOT NULL CONSTRAINT delivery_log_status_check
                          CHECK (status IN ('sending', 'ok', 'failed', 'unknown')),
    status_code       integer,
    latency_ms        double precision,
    attempt           integer,
    error             text,
    response_excerpt  text
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE delivery_log_id_seq OWNED BY delivery_log.id;

CREATE TABLE delivery_log_default PARTITION OF delivery_log DEFAULT;

-- Make the partition of one UTC day unless it exists; return its name if it was made.
-- It is built beside the log and attached (the log itself is only SHARE UPDATE EXCLUSIVE
-- locked, so inserts go on); rows of that day waiting in the default partition move in
-- first, with the default partition locked so that none arrives meanwhile.
CREATE FUNCTION delivery_log_add_partition(day date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    part text := 'delivery_log_p' || to_char(day, 'YYYYMMDD');
    low timestamptz := day::timestamp AT TIME ZONE 'UTC';
    high timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
               WHERE i.inhparent = 'delivery_log'::regclass AND c.relname = part) THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE delivery_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   part);
    LOCK TABLE delivery_log_default IN SHARE ROW EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM delivery_log_default WHERE created_at >= low AND created_at < high)
    THEN
        EXECUTE format('WITH moved AS (DELETE FROM delivery_log_default
                                       WHERE created_at >= $1 AND created_at < $2 RETURNING *)
                        INSERT INTO %I SELECT * FROM moved', part)
            USING low, high;
    END IF;
    EXECUTE format('ALTER TABLE delivery_log ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   part, low, high);
    RETURN part;
END;
$$;

-- Make the partitions of today and the next `ahead` days (UTC), and of every day that has
-- rows in the default partition; one row per partition made, or left for the next run
-- (made = false) because its tables stayed locked past the caller's lock_timeout. A call
-- while another runs returns at once: neither ever waits long.
CREATE FUNCTION delivery_log_ensure_partitions(ahead integer)
RETURNS TABLE (partition_name text, made boolean)
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
    day date;
BEGIN
    IF NOT pg_try_advisory_xact_lock(1213551180) THEN
        RETURN;
    END IF;
    FOR day IN
        SELECT d::date FROM generate_series(today, today + ahead, interval '1 day') AS d
        UNION
        SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM delivery_log_default
        ORDER BY 1
    LOOP
        BEGIN
            partition_name := delivery_log_add_partition(day);
            made := true;
        EXCEPTION WHEN lock_not_available THEN
            partition_name := 'delivery_log_p' || to_char(day, 'YYYYMMDD');
            made := false;
        END;
        IF partition_name IS NOT NULL THEN
            RETURN NEXT;
        END IF;
    END LOOP;
END;
$$;

-- The old rows: a partition for each day they cover, then one copy (indexes come after).
SELECT delivery_log_add_partition(day)
FROM (SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date AS day
      FROM delivery_log_unpartitioned) AS days;
INSERT INTO delivery_log (id, created_at, direction, service, rule_id, event_id, event_name,
        delivery_id, workflow_id, method, target, status, status_code, latency_ms, attempt,
        error, response_excerpt)
SELECT id, created_at, direction, service, rule_id, event_id, event_name, delivery_id,
       workflow_id, method, target, status, status_code, latency_ms, attempt, error,
       response_excerpt
FROM delivery_log_unpartitioned;
DROP TABLE delivery_log_unpartitioned;
SELECT * FROM delivery_log_ensure_partitions(7);

-- Every filter of `hub logs` / GET /logs, newest first by id:
--   none, status ok, direction out    the primary key, backwards (those rows are most)
--   service                           (service, id)
--   status failed/unknown/sending     (id) and (service, id) where status <> 'ok'
--   direction in                      (id) and (service, id) where direction = 'in'
--   event id                          (event_id)
--   since                             partition pruning, then any of the above
--   before id                         the id in each of the above
-- (delivery_id) serves the attempt bookkeeping and inbound correlation. The status indexes
-- cost writes: an attempt's outcome update changes status, so it is never a HOT update (about
-- 120 more index bytes per attempt; bench/results.md, "Delivery log at 20 million rows").
ALTER TABLE delivery_log ADD CONSTRAINT delivery_log_pkey PRIMARY KEY (id, created_at);
CREATE INDEX delivery_log_service ON delivery_log (service, id);
CREATE INDEX delivery_log_event_id ON delivery_log (event_id);
CREATE INDEX delivery_log_delivery_id ON delivery_log (delivery_id);
CREATE INDEX delivery_log_not_ok ON delivery_log (id) WHERE status <> 'ok';
CREATE INDEX delivery_log_service_not_ok ON delivery_log (service, id) WHERE status <> 'ok';
CREATE INDEX delivery_log_inbound ON delivery_log (id) WHERE direction = 'in';
CREATE INDEX delivery_log_service_inbound ON delivery_log (service, id) WHERE direction = 'in';
