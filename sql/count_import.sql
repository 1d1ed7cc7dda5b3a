-- Impressions already loaded by one judgment import (`incremental.judgments`): their event ids
-- share the import's prefix (seed, start hour and a digest of the rows and options).
SELECT COUNT(*) AS n
FROM search_impressions
WHERE event_id LIKE :prefix
