-- The search service's own tables (the pool's search_path is the `search` schema).

-- Name caches, fed by customer, store and product events, and by the owning service's answer
-- on a miss.
CREATE TABLE customers_cache (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stores_cache (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- A removed product keeps its row (flagged): an order placed before the removal, indexed after
-- it, still gets the product's name.
CREATE TABLE products_cache (
    id         text        PRIMARY KEY,
    store_id   text        NOT NULL,
    name       text        NOT NULL,
    removed    boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The read model. created_at is the OrderCreated event's send time; total is Σ price × quantity.
CREATE TABLE orders (
    order_id      text             PRIMARY KEY,
    customer_id   text             NOT NULL,
    customer_name text             NOT NULL,
    items         jsonb            NOT NULL,
    total         double precision NOT NULL,
    status        text             NOT NULL,
    product_ids   text[]           NOT NULL,
    store_ids     text[]           NOT NULL,
    created_at    timestamptz      NOT NULL,
    updated_at    timestamptz      NOT NULL DEFAULT now()
);

-- Pages walk (created_at, order_id) newest first.
CREATE INDEX orders_created ON orders (created_at DESC, order_id DESC);
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC);
CREATE INDEX orders_store_ids ON orders USING gin (store_ids);
CREATE INDEX orders_product_ids ON orders USING gin (product_ids);

-- A status event that arrived before its order was indexed; applied (and deleted) when the
-- order's OrderCreated is indexed.
CREATE TABLE pending_statuses (
    order_id   text        PRIMARY KEY,
    status     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
