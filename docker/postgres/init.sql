-- Runs once when the PostgreSQL volume is created.
-- The monolith uses database `mallbots` (one schema per service); in microservices mode every
-- service owns a database of its own. Each service creates its schema and tables at start.
CREATE DATABASE mallbots;
CREATE DATABASE stores;
CREATE DATABASE customers;
CREATE DATABASE baskets;
CREATE DATABASE ordering;
CREATE DATABASE payments;
CREATE DATABASE depot;
CREATE DATABASE notifications;
CREATE DATABASE search;
CREATE DATABASE cosec;
