-- One hour of search logs: the rows INGESTED in the half-open interval [:start, :end).
-- Keyed on ingested_at, not event_ts, so a late-arriving event lands in the hour it arrived
-- and every row is extracted exactly once. LEFT JOIN: an impression of an unknown product is
-- kept (its title is null and validation quarantines the hour) rather than silently dropped.
-- The ORDER BY makes the output, and so the Parquet file, deterministic.
SELECT
    i.event_id,
    i.event_ts,
    i.ingested_at,
    i.session_id,
    i.user_id,
    i.query,
    i.product_id,
    i.position,
    i.clicked,
    p.title,
    p.brand,
    p.category,
    p.price
FROM search_impressions AS i
LEFT JOIN products AS p ON p.product_id = i.product_id
WHERE i.ingested_at >= :start
  AND i.ingested_at < :end
ORDER BY i.event_id, i.ingested_at, i.product_id, i.position, i.clicked, i.session_id, i.query
