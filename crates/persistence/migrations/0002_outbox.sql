-- Transactional outbox: messages written with the state change they announce, published by the
-- relay, marked sent only after the broker's PubAck. `seq` gives the publish order (per key);
-- `id` is the envelope id and the broker's de-duplication key (Nats-Msg-Id).
CREATE TABLE outbox (
    seq        bigserial   PRIMARY KEY,
    id         uuid        NOT NULL UNIQUE,
    name       text        NOT NULL,
    subject    text        NOT NULL,
    payload    bytea       NOT NULL,
    headers    jsonb       NOT NULL,
    key        text,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts   integer     NOT NULL DEFAULT 0,
    retry_at   timestamptz,
    last_error text,
    sent_at    timestamptz
);

-- What the relay claims (oldest first) and the per-key "is an older row still unsent" check.
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX outbox_unsent_key ON outbox (key, seq) WHERE sent_at IS NULL AND key IS NOT NULL;
-- What clean-up deletes: rows are inserted in created_at order, which BRIN summarises for next to
-- nothing per insert (a B-tree on sent_at would cost every mark one more index insertion).
CREATE INDEX outbox_created_at ON outbox USING brin (created_at);

-- A queue table: every row is updated once and deleted later. Vacuum it early so the partial
-- indexes do not fill with entries of rows already sent, which every claim would step over.
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);

-- Wakes the relay when an enqueuing transaction commits (NOTIFY is delivered at commit, and
-- only then, so a rolled-back transaction wakes nobody). One notification per statement; the
-- channel carries the schema so relays of different modules in one database stay apart.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox.' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
