-- "Failed" on the overview counts stopped transfers too (STOP: an unrecoverable error or an
-- operator's stop), as "requeue failed" does: a destination whose transfer stopped on an
-- unrecoverable error no longer shows Failed 0.
CREATE OR REPLACE VIEW destination_overview AS
SELECT d.*,
       coalesce(c.queued, 0) AS queued,
       coalesce(c.running, 0) AS running,
       coalesce(c.failed, 0) AS failed,
       coalesce(c.held, 0) AS held,
       coalesce(c.done, 0) AS done,
       coalesce(c.outstanding, 0) AS outstanding
  FROM destinations d
  LEFT JOIN (
      SELECT destination,
             sum(count) FILTER (WHERE status IN ('WAIT', 'RETR', 'SCHE', 'INIT', 'FETC')) AS queued,
             sum(count) FILTER (WHERE status = 'EXEC') AS running,
             sum(count) FILTER (WHERE status IN ('FAIL', 'STOP')) AS failed,
             sum(count) FILTER (WHERE status = 'HOLD') AS held,
             sum(count) FILTER (WHERE status = 'DONE') AS done,
             sum(count) FILTER (WHERE status NOT IN ('DONE', 'FAIL', 'STOP')) AS outstanding
        FROM destination_status_counts
       GROUP BY destination
  ) c ON c.destination = d.name;
