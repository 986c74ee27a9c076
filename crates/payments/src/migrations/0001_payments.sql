-- Payment authorizations and invoices (spec modules.md §6). Amounts are `numeric` without a
-- precision limit: the original's decimal(9,4) overflowed at 100000 (HTTP 500).
CREATE TABLE payments (
    id          text        PRIMARY KEY,
    customer_id text        NOT NULL,
    amount      numeric     NOT NULL CHECK (amount >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One invoice per order (id = order id); `canceled` when the order was cancelled before payment.
CREATE TABLE invoices (
    id         text        PRIMARY KEY,
    order_id   text        NOT NULL,
    amount     numeric     NOT NULL CHECK (amount >= 0),
    status     text        NOT NULL CHECK (status IN ('pending', 'paid', 'canceled')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX invoices_order_id_idx ON invoices (order_id);
