-- The monitor's charts (issue 17): per-host throughput and delivery latency read the transfers
-- delivered in a time range, by finish time. The indexes are partial (delivered rows only), so
-- a chart reads its range without scanning the table and rows on their way cost no entry.
CREATE INDEX transfers_delivered ON transfers (finished_at) WHERE status = 'DONE';
CREATE INDEX transfers_delivered_destination ON transfers (destination, finished_at)
    WHERE status = 'DONE';
