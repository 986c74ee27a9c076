-- Read models of the stores service, written in the same transaction as the events they
-- project (spec modules.md §1). Prices are double precision: the API's prices are doubles, and
-- the original's decimal(9,4) overflowed at 100000.

-- The mall: one row per store.
CREATE TABLE stores (
    id            text        PRIMARY KEY,
    name          text        NOT NULL,
    location      text        NOT NULL,
    participating boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- GET /api/stores/participating reads only these rows.
CREATE INDEX participating_stores_idx ON stores (participating) WHERE participating;

-- The catalogue: one row per product still on sale (a removed product's row is deleted).
CREATE TABLE products (
    id          text             PRIMARY KEY,
    store_id    text             NOT NULL,
    name        text             NOT NULL,
    description text             NOT NULL,
    sku         text             NOT NULL,
    price       double precision NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    updated_at  timestamptz      NOT NULL DEFAULT now()
);

-- GET /api/stores/{storeId}/products.
CREATE INDEX store_products_idx ON products (store_id);
