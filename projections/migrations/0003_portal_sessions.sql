-- The sessions each portal instance has in progress, as it last reported them
-- (PortalSessionsReported). The monitor shows the sessions of reports younger than two periods:
-- an older report is from an instance that stopped or died.
CREATE TABLE portal_session_reports (
    portal_id text PRIMARY KEY,
    reported_at timestamptz NOT NULL,
    period_ms bigint NOT NULL,
    sessions jsonb NOT NULL DEFAULT '[]'
);
