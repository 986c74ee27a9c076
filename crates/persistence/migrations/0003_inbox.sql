-- Inbox: which messages a consumer has already handled, written in the handler's transaction.
-- Pruned by age: BRIN suits an append-only timestamp and costs next to nothing per insert.
CREATE TABLE inbox (
    consumer    text        NOT NULL,
    message_id  uuid        NOT NULL,
    name        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

CREATE INDEX inbox_received_at ON inbox USING brin (received_at);
