-- Customers as CRUD rows (spec modules.md §3). Names are not unique; the id is a server UUID.
CREATE TABLE customers (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    sms_number text        NOT NULL,
    enabled    boolean     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
