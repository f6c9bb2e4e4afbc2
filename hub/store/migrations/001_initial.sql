-- Services, rules, delivery log, dead-letter queue and circuit state.

CREATE TABLE services (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    type            text NOT NULL CHECK (type IN ('http', 'amqp')),
    -- base_url never holds a password: a URL with one is stored masked here and encrypted
    -- whole in secret_url. token and inbound_token are encrypted too (see hub/secrets.py).
    base_url        text NOT NULL,
    secret_url      text,
    auth_type       text NOT NULL DEFAULT 'none' CHECK (auth_type IN ('none', 'bearer', 'apikey')),
    token           text,
    inbound_token   text,
    timeout         double precision NOT NULL DEFAULT 5 CHECK (timeout > 0),
    max_attempts    integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 5),
    backoff         double precision NOT NULL DEFAULT 1 CHECK (backoff >= 0),
    cb_threshold    integer NOT NULL DEFAULT 5 CHECK (cb_threshold >= 1),
    cb_cooldown     double precision NOT NULL DEFAULT 30 CHECK (cb_cooldown > 0),
    response_queue  text,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rules (
    id          bigserial PRIMARY KEY,
    event       text NOT NULL CHECK (event <> ''),
    service_id  bigint NOT NULL REFERENCES services (id) ON DELETE RESTRICT,
    method      text NOT NULL DEFAULT 'POST' CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
    endpoint    text NOT NULL DEFAULT '',
    template    text NOT NULL DEFAULT '',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rules_service_id ON rules (service_id);

-- Every change to services or rules bumps one version, inside the same transaction, and
-- notifies listeners, so cached rule indexes know when and to what they must reload.
CREATE TABLE config_version (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint NOT NULL
);
INSERT INTO config_version (version) VALUES (1);

CREATE FUNCTION bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    new_version bigint;
BEGIN
    UPDATE config_version SET version = version + 1 RETURNING version INTO new_version;
    PERFORM pg_notify('hub_config', new_version::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER services_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON services
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();
CREATE TRIGGER rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON rules
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();

CREATE TABLE delivery_log (
    id                bigserial PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    direction         text NOT NULL CHECK (direction IN ('in', 'out')),
    service           text NOT NULL,
    rule_id           bigint,
    event_id          text,
    event_name        text,
    delivery_id       text,
    workflow_id       text,
    method            text,
    target            text,
    status            text NOT NULL CHECK (status IN ('ok', 'failed')),
    status_code       integer,
    latency_ms        double precision,
    attempt           integer,
    error             text,
    response_excerpt  text
);
CREATE INDEX delivery_log_created_at ON delivery_log (created_at);
CREATE INDEX delivery_log_service ON delivery_log (service, created_at);
CREATE INDEX delivery_log_event_id ON delivery_log (event_id);
CREATE INDEX delivery_log_delivery_id ON delivery_log (delivery_id);

CREATE TABLE dlq (
    id            bigserial PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    event_id      text NOT NULL,
    event_name    text NOT NULL,
    event         jsonb NOT NULL,
    rule_id       bigint,
    service       text NOT NULL,
    method        text NOT NULL,
    endpoint      text NOT NULL,
    payload       text,
    error         text NOT NULL,
    attempts      integer NOT NULL,
    workflow_id   text NOT NULL,
    delivery_id   text NOT NULL,
    replay_count  integer NOT NULL DEFAULT 0,
    resolved_at   timestamptz,
    -- A retried compensation activity must not write a second row.
    UNIQUE (workflow_id, delivery_id)
);
CREATE INDEX dlq_unresolved ON dlq (service, created_at) WHERE resolved_at IS NULL;
CREATE INDEX dlq_event_id ON dlq (event_id);

-- One circuit per service, shared by every worker. Times are the database's, never a
-- worker's clock, so workers with skewed clocks still agree.
CREATE TABLE circuit_state (
    service_id        bigint PRIMARY KEY REFERENCES services (id) ON DELETE CASCADE,
    state             text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    failures          integer NOT NULL DEFAULT 0,
    opened_at         timestamptz,
    probe_owner       text,
    probe_expires_at  timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION create_circuit_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO circuit_state (service_id) VALUES (NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER services_circuit AFTER INSERT ON services
    FOR EACH ROW EXECUTE FUNCTION create_circuit_state();
