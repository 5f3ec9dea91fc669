-- Who set a destination's status (an operator's hold or stop names them; the scheduler's own
-- statuses name nobody), so the monitor tells an operator's hold from a failure; and the host
-- of the destination's latest attempt outcome, shown while the scheduler has not switched hosts
-- (current_host is set by HostSwitched only).
ALTER TABLE destinations ADD COLUMN status_actor text;
ALTER TABLE destinations ADD COLUMN last_host text;

-- d.* was expanded when the view was made: make it again to carry the new columns
DROP VIEW destination_overview;
CREATE VIEW destination_overview AS
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
