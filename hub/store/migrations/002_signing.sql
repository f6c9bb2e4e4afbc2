-- Signed deliveries (Standard Webhooks) and verified inbound webhooks.

-- The keys that sign a service's deliveries: at most one current key (expires_at NULL) and
-- the keys rotated out of it, which keep signing until expires_at. secret is sealed (see
-- hub/secrets.py): whsec_ for hmac, whsk_ for ed25519, whose whpk_ public key is kept in
-- clear for receivers.
CREATE TABLE signing_keys (
    id          bigserial PRIMARY KEY,
    service_id  bigint NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    scheme      text NOT NULL CHECK (scheme IN ('hmac', 'ed25519')),
    secret      text NOT NULL,
    public_key  text CHECK ((scheme = 'ed25519') = (public_key IS NOT NULL)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz
);
CREATE INDEX signing_keys_service ON signing_keys (service_id);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (service_id) WHERE expires_at IS NULL;

-- Rule indexes carry each service's keys, so a change to them is a configuration change.
CREATE TRIGGER signing_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION bump_config_version();

-- The whsec_ secret that signed inbound webhooks are verified with, sealed.
ALTER TABLE services ADD COLUMN inbound_secret text;
