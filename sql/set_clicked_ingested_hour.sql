-- Simulated click-logging failure: every row that landed in [:start, :end) gets clicked = :clicked.
-- (Used by the simulator's `zero_clicks` and `all_clicked` faults only; a real warehouse never rewrites history.)
UPDATE search_impressions
SET clicked = :clicked
WHERE ingested_at >= :start
  AND ingested_at < :end
