-- Saga instances. `version` is bumped by every update, which succeeds only if the version is
-- still the one the updater loaded: two replies cannot both advance the same step.
CREATE TABLE sagas (
    saga_type    text        NOT NULL,
    id           text        NOT NULL,
    version      bigint      NOT NULL CHECK (version > 0),
    step         integer     NOT NULL,
    compensating boolean     NOT NULL DEFAULT false,
    done         boolean     NOT NULL DEFAULT false,
    data         jsonb       NOT NULL,
    deadline     timestamptz,
    stuck_reason text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga_type, id)
);

-- The step-timeout sweeper's query: running sagas past their deadline.
CREATE INDEX sagas_deadline ON sagas (deadline)
    WHERE NOT done AND stuck_reason IS NULL AND deadline IS NOT NULL;
