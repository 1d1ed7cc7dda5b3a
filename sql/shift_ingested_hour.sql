-- Simulated ingestion outage: rows that landed in [:start, :end) arrive one hour later instead.
-- (Used by the simulator's `empty_hour` fault only; a real warehouse never rewrites history.)
UPDATE search_impressions
SET ingested_at = ingested_at + INTERVAL '1 hour'
WHERE ingested_at >= :start
  AND ingested_at < :end
