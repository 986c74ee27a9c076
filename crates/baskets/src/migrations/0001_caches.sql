-- The baskets service's copies of the stores' catalogue, fed by the stores' events (consumers
-- baskets-stores and baskets-products) and filled on a miss by asking the stores service.
-- A basket line copies names and price from here when an item is added.

CREATE TABLE stores_cache (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- `price` is a double like the API's, not the original's decimal(9,4), which overflowed at
-- 100000 and rounded what it stored.
CREATE TABLE products_cache (
    id         text             PRIMARY KEY,
    store_id   text             NOT NULL,
    name       text             NOT NULL,
    price      double precision NOT NULL,
    created_at timestamptz      NOT NULL DEFAULT now(),
    updated_at timestamptz      NOT NULL DEFAULT now()
);
