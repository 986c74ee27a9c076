-- Event-sourced aggregates. `streams` holds each stream's current version: appends bump it with
-- a compare-and-set, which is the optimistic concurrency check (a lost race updates no row and
-- leaves the caller's transaction usable). Streams are keyed by aggregate type and id because
-- ids are reused across types (an order has its basket's id).
CREATE TABLE streams (
    stream_type text        NOT NULL,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL CHECK (version > 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_type, stream_id)
);

-- One row per event: name and schema version say how to read the protobuf payload, so an old
-- event stays readable after its type is renamed or changed (the aggregate's upcaster).
CREATE TABLE events (
    stream_type    text        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    name           text        NOT NULL,
    schema_version integer     NOT NULL,
    payload        bytea       NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_type, stream_id, version)
);

-- The latest snapshot per stream: a cache of the state at `version`. A snapshot in another
-- format than the aggregate's current one is ignored (full replay), never an error.
CREATE TABLE snapshots (
    stream_type    text        NOT NULL,
    stream_id      text        NOT NULL,
    version        bigint      NOT NULL CHECK (version > 0),
    schema_version integer     NOT NULL,
    payload        bytea       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream_type, stream_id)
);
