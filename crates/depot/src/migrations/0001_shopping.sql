-- Shopping lists: one row per list, its stops (stores to visit and what to pick there) as JSON
-- since they are always read and written whole with the list.
CREATE TABLE shopping_lists (
    id              text        PRIMARY KEY,
    order_id        text        NOT NULL,
    stops           jsonb       NOT NULL,
    assigned_bot_id text        NOT NULL DEFAULT '',
    status          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The saga's CreateShoppingList is answered with the order's existing list when re-sent.
CREATE INDEX shopping_lists_order_id ON shopping_lists (order_id);
-- What a bot dispatcher asks: the oldest lists waiting for a bot.
CREATE INDEX shopping_lists_available ON shopping_lists (created_at) WHERE status = 'available';

-- Stores as the stores service announced them (StoreCreated / StoreRebranded) or answered a
-- GetStore query on a cache miss.
CREATE TABLE stores_cache (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    location   text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Products likewise (ProductAdded / ProductRebranded / ProductRemoved, or GetProduct). The depot
-- needs no price.
CREATE TABLE products_cache (
    id         text        PRIMARY KEY,
    store_id   text        NOT NULL,
    name       text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
