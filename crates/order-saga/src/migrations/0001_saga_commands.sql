-- The command log of the saga engine: every command a saga sent, which saga and step sent it,
-- and how it was answered. A reply names its command (Causation-Id), never its saga, so this
-- is how a reply finds its saga; it is also the history the read endpoint shows.
-- (The saga rows themselves live in `sagas`, created by the persistence crate's migrations.)
CREATE TABLE saga_commands (
    command_id   uuid        PRIMARY KEY,
    saga_type    text        NOT NULL,
    saga_id      text        NOT NULL,
    step         integer     NOT NULL,
    compensating boolean     NOT NULL,
    name         text        NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    -- success | failure | timed_out; NULL while outstanding.
    outcome      text,
    settled_at   timestamptz
);

CREATE INDEX saga_commands_by_saga ON saga_commands (saga_type, saga_id, issued_at);
