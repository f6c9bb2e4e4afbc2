-- Delivery control: rule priority and order key; service weight, rate, maximum hold and
-- pause. A change of any of them bumps the configuration version (the triggers of 001), so
-- every worker's rule index sees a pause within one NOTIFY.
ALTER TABLE rules
    ADD COLUMN priority  smallint NOT NULL DEFAULT 3 CHECK (priority BETWEEN 1 AND 5),
    ADD COLUMN order_key text;

ALTER TABLE services
    ADD COLUMN weight    double precision NOT NULL DEFAULT 1 CHECK (weight > 0),
    ADD COLUMN rate      text,
    ADD COLUMN max_hold  double precision NOT NULL DEFAULT 86400 CHECK (max_hold > 0),
    ADD COLUMN paused_at timestamptz;

-- The pace of each service, shared by every worker, kept beside its circuit:
-- rate_tat is the theoretical arrival time of the next delivery under the service's rate
-- (GCRA: each delivery takes the slot max(rate_tat, now()) and moves it on by 1/rate);
-- throttled_until is when a 429's Retry-After lets the service be called again.
ALTER TABLE circuit_state
    ADD COLUMN rate_tat        timestamptz,
    ADD COLUMN throttled_until timestamptz;
