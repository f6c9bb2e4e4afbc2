-- An attempt is logged as 'sending' before its request leaves, so a send cut off by a crash
-- or a database blip still has its row (and the next attempt its next number); such a row
-- ends 'unknown': the receiver may or may not have got it.
ALTER TABLE delivery_log DROP CONSTRAINT delivery_log_status_check;
ALTER TABLE delivery_log ADD CONSTRAINT delivery_log_status_check
    CHECK (status IN ('sending', 'ok', 'failed', 'unknown'));

-- Claim-checks: large event data and rendered payloads live here, and workflow histories
-- carry their keys. A key names its content's hash, so writing one twice is harmless.
CREATE TABLE claims (
    key         text PRIMARY KEY,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX claims_created_at ON claims (created_at);
