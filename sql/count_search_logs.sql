-- Rows ingested in [:start, :end): what an extracted partition must hold.
SELECT COUNT(*) AS n
FROM search_impressions
WHERE ingested_at >= :start
  AND ingested_at < :end
