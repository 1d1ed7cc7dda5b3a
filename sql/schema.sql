-- Warehouse schema. Portable SQL: the same statements run on DuckDB and PostgreSQL.
-- Nothing here rejects bad rows (no CHECK, no NOT NULL on payload columns, no unique event_id):
-- the warehouse keeps what arrived, and validation decides what may be trained on.

CREATE TABLE IF NOT EXISTS products (
    product_id  VARCHAR PRIMARY KEY,
    title       VARCHAR,
    brand       VARCHAR,
    category    VARCHAR,
    price       DOUBLE PRECISION,
    created_at  TIMESTAMP WITH TIME ZONE
);

CREATE TABLE IF NOT EXISTS search_impressions (
    event_id     VARCHAR,
    event_ts     TIMESTAMP WITH TIME ZONE,          -- when the user saw the result (UTC)
    ingested_at  TIMESTAMP WITH TIME ZONE NOT NULL, -- when the row landed in the warehouse (UTC)
    session_id   VARCHAR,
    user_id      VARCHAR,
    query        VARCHAR,
    product_id   VARCHAR,
    position     INTEGER,                           -- 1-based rank on the results page
    clicked      INTEGER                            -- 0 or 1
);

CREATE INDEX IF NOT EXISTS search_impressions_ingested_at ON search_impressions (ingested_at);
