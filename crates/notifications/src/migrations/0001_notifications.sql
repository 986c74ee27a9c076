-- The notifications service's own tables (the pool's search_path is the `notifications` schema).

-- Who to text: filled from CustomerRegistered / CustomerSmsChanged, and from the customers
-- service's answer on a cache miss.
CREATE TABLE customers_cache (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    sms_number text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every text sent. The unique (order_id, kind) is what makes a second event of the same kind
-- for the same order (a redelivery, a republished event under a new id) send nothing.
CREATE TABLE notifications (
    id          uuid        PRIMARY KEY,
    order_id    text        NOT NULL,
    customer_id text        NOT NULL,
    sms_number  text        NOT NULL,
    kind        text        NOT NULL,
    text        text        NOT NULL,
    sent_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_order_kind UNIQUE (order_id, kind)
);

CREATE INDEX notifications_customer ON notifications (customer_id, sent_at);
