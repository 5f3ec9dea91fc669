-- Read models of ecpds, created in the schema named first on the connection's search_path
-- (default ecpds_rm). Names are never schema-qualified, so the same file builds the live
-- schema and a rebuild schema, and a schema rename swaps one for the other.
--
-- Rules kept here:
-- * no credential, ciphertext or password hash is ever stored (hosts keep has_credentials);
-- * no wall-clock column: every time comes from an event, so a rebuild equals the live tables;
-- * "last ..." columns written from several partitions carry the event time they come from,
--   and are only moved forward, so the result does not depend on how partitions interleave.

CREATE TABLE projection_position (
    projection text NOT NULL,
    topic text NOT NULL,
    "partition" integer NOT NULL,
    "offset" bigint NOT NULL,
    PRIMARY KEY (projection, topic, "partition")
);

-- configuration ---------------------------------------------------------------------------

CREATE TABLE destinations (
    name text PRIMARY KEY,
    defined boolean NOT NULL DEFAULT false,   -- false: only seen in transfer events so far
    removed boolean NOT NULL DEFAULT false,
    type text,
    transfer_group text,
    country text,
    owner text,
    comment text,
    active boolean,
    standby boolean,
    max_connections integer,
    retry_count integer,
    retry_frequency_ms bigint,
    max_start integer,
    max_requeue integer,
    max_pending integer,
    max_file_size bigint,
    on_host_failure text,
    compression text,
    default_lifetime_ms bigint,
    config jsonb,                             -- the full definition (secrets redacted)
    config_changed_at timestamptz,
    config_changed_by text,
    status text,
    status_reason text,
    status_until timestamptz,
    status_changed_at timestamptz,
    current_host text,
    host_switched_at timestamptz,
    host_switch_reason text,
    last_success_at timestamptz,
    last_success_transfer text,
    last_error_at timestamptz,
    last_error text,
    last_error_transfer text
);
CREATE INDEX destinations_status ON destinations (status);
CREATE INDEX destinations_group ON destinations (transfer_group);
CREATE INDEX destinations_country ON destinations (country);

CREATE TABLE hosts (
    id text PRIMARY KEY,
    defined boolean NOT NULL DEFAULT false,
    removed boolean NOT NULL DEFAULT false,
    nickname text,
    type text,
    protocol text,
    address text,
    login text,
    has_credentials boolean,
    directory text,
    options jsonb,                            -- secret-looking options redacted
    max_connections integer,
    retry_count integer,
    retry_frequency_ms bigint,
    polling_frequency_ms bigint,
    active boolean,
    transfer_group text,
    network_code text,
    comment text,
    config_changed_at timestamptz,
    config_changed_by text,
    last_check_at timestamptz,                -- last transfer outcome or listing on this host
    last_check_ok boolean,
    last_success_at timestamptz,
    last_error_at timestamptz,
    last_error text,
    last_bytes_per_second double precision,
    transfers_done bigint NOT NULL DEFAULT 0,
    transfers_failed bigint NOT NULL DEFAULT 0,
    bytes_sent bigint NOT NULL DEFAULT 0
);
CREATE INDEX hosts_type ON hosts (type);
CREATE INDEX hosts_group ON hosts (transfer_group);

CREATE TABLE associations (
    destination text NOT NULL,
    host text NOT NULL,
    defined boolean NOT NULL DEFAULT false,
    removed boolean NOT NULL DEFAULT false,
    priority integer,
    priority_set_at timestamptz,
    active boolean NOT NULL DEFAULT true,     -- host on/off for this destination
    active_set_at timestamptz,
    active_reason text,
    PRIMARY KEY (destination, host)
);
CREATE INDEX associations_host ON associations (host);

CREATE TABLE transfer_groups (
    name text PRIMARY KEY,
    removed boolean NOT NULL DEFAULT false,
    region text,
    stores text[],
    backup_host text,
    backup boolean,
    replicate boolean,
    min_replication_count integer,
    active boolean,
    comment text,
    config_changed_at timestamptz,
    config_changed_by text
);

CREATE TABLE data_users (
    login text PRIMARY KEY,
    removed boolean NOT NULL DEFAULT false,
    has_password boolean,
    ssh_key_count integer,
    destinations text[],
    operations text[],
    portal_service text,
    active boolean,
    country text,
    comment text,
    properties jsonb,
    config_changed_at timestamptz,
    config_changed_by text
);

CREATE TABLE policies (
    id text PRIMARY KEY,
    removed boolean NOT NULL DEFAULT false,
    active boolean,
    destinations text[],
    users text[],
    comment text,
    properties jsonb,
    config_changed_at timestamptz,
    config_changed_by text
);

-- every configuration change, the audit trail of ecpds.config
CREATE TABLE config_changes (
    event_id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL,
    kind text NOT NULL,
    entity text NOT NULL,
    changed_fields text[],
    actor text
);
CREATE INDEX config_changes_entity ON config_changes (kind, entity, occurred_at);

-- data files ------------------------------------------------------------------------------

CREATE TABLE data_files (
    data_file_id text PRIMARY KEY,
    destination text,
    target text,
    transfer_group text,
    status text NOT NULL,                     -- REGISTERED STORED FAILED EXPIRED DELETED
    priority integer,
    file_instance integer,
    version text,
    original text,
    expected_size bigint,
    content_type text,
    acquisition_host text,
    requested_by text,
    submission_mode text,
    registered_at timestamptz,
    scheduled_time timestamptz,
    expiry_time timestamptz,
    guid text,
    store text,
    location text,
    size bigint,
    adler32 text,
    md5 text,
    sha512 text,
    stored_at timestamptz,
    store_duration_ms bigint,
    failed_stage text,
    error text,
    expired_at timestamptz,
    deleted_at timestamptz,
    delete_reason text,
    backup_host text,
    backup_path text,
    backed_up_at timestamptz,
    backup_error text,
    metadata jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX data_files_destination ON data_files (destination, registered_at);
CREATE INDEX data_files_status ON data_files (status);
CREATE INDEX data_files_target ON data_files (target);

CREATE TABLE data_file_copies (
    data_file_id text NOT NULL,
    store text NOT NULL,
    guid text,
    location text,
    size bigint,
    copied_at timestamptz,
    deleted_at timestamptz,
    delete_reason text,
    PRIMARY KEY (data_file_id, store)
);

CREATE TABLE data_file_refusals (
    event_id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    destination text NOT NULL,
    target text NOT NULL,
    reason text NOT NULL,
    message text,
    data_file_id text,
    size bigint,
    requested_by text
);
CREATE INDEX data_file_refusals_destination ON data_file_refusals (destination, occurred_at);

-- transfers -------------------------------------------------------------------------------

CREATE TABLE transfers (
    transfer_id text PRIMARY KEY,
    destination text NOT NULL,
    data_file_id text,
    target text,
    status text,                              -- null until the transfer's queueing is seen
    priority integer,
    queue_time timestamptz,
    scheduled_time timestamptz,
    expiry_time timestamptz,
    size bigint,
    alias_of text,
    identity text,
    file_instance integer,
    notify boolean,
    asap boolean,
    attempt integer NOT NULL DEFAULT 0,
    host_id text,
    mover_id text,
    start_count integer NOT NULL DEFAULT 0,
    requeue_count integer NOT NULL DEFAULT 0,
    started_at timestamptz,
    finished_at timestamptz,
    bytes_sent bigint,
    duration_ms bigint,
    bytes_per_second double precision,
    verification text,
    remote_path text,
    md5 text,
    last_error text,
    last_error_at timestamptz,
    status_reason text,
    status_actor text,
    updated_at timestamptz,
    -- from ecpds.orders.<group> (another topic: separate columns keep the result order-free)
    transfer_group text,
    ordered_attempt integer,
    ordered_at timestamptz,
    ordered_host text
);
CREATE INDEX transfers_queue ON transfers (destination, status, priority, queue_time);
CREATE INDEX transfers_status ON transfers (status);
CREATE INDEX transfers_data_file ON transfers (data_file_id);
CREATE INDEX transfers_target ON transfers (target);

-- every event of every transfer, append-only: the transfer timeline
CREATE TABLE transfer_history (
    event_id uuid PRIMARY KEY,
    transfer_id text NOT NULL,
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL,
    destination text,
    status text,
    attempt integer,
    host_id text,
    mover_id text,
    message text,
    bytes bigint,
    actor text,
    source text,
    causation_id text
);
CREATE INDEX transfer_history_transfer ON transfer_history (transfer_id, occurred_at);

-- counts of transfers per destination and status, kept by the trigger below
CREATE TABLE destination_status_counts (
    destination text NOT NULL,
    status text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (destination, status)
);

CREATE FUNCTION transfer_status_counted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- decrement the old status and increment the new one in the writing transaction, so the
    -- counts are right whatever order the status changes come in
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status
       AND OLD.destination = NEW.destination THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IS NOT NULL THEN
        UPDATE destination_status_counts SET count = count - 1
         WHERE destination = OLD.destination AND status = OLD.status;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IS NOT NULL THEN
        INSERT INTO destination_status_counts AS c (destination, status, count)
        VALUES (NEW.destination, NEW.status, 1)
        ON CONFLICT (destination, status) DO UPDATE SET count = c.count + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER transfers_counted
AFTER INSERT OR DELETE OR UPDATE OF status, destination ON transfers
FOR EACH ROW EXECUTE FUNCTION transfer_status_counted();

-- per-minute statistics per destination (upserted counters)
CREATE TABLE destination_minutes (
    destination text NOT NULL,
    minute timestamptz NOT NULL,
    files bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (destination, minute)
);
CREATE INDEX destination_minutes_minute ON destination_minutes (minute);

-- operator requests (hold, restart, stop, requeue, priority, ...), the audit of actions
CREATE TABLE operator_requests (
    event_id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL,
    destination text NOT NULL,
    transfer_id text,
    host_id text,
    requested_by text NOT NULL,
    reason text,
    details jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX operator_requests_destination ON operator_requests (destination, occurred_at);

-- acquisition -----------------------------------------------------------------------------

CREATE TABLE acquisition_hosts (
    host_id text PRIMARY KEY,
    destination text,
    last_listing_at timestamptz,
    last_listing_started_at timestamptz,
    last_duration_ms bigint,
    last_entries_listed integer,
    last_files_matched integer,
    last_files_new integer,
    last_errors text[],
    last_timed_out boolean,
    listings bigint NOT NULL DEFAULT 0,
    failed_listings bigint NOT NULL DEFAULT 0,
    discovered bigint NOT NULL DEFAULT 0,
    retrieved bigint NOT NULL DEFAULT 0,
    retrieval_failures bigint NOT NULL DEFAULT 0,
    last_error_at timestamptz,
    last_error text
);

CREATE TABLE acquisition_files (
    host_id text NOT NULL,
    path text NOT NULL,
    destination text,
    name text,
    status text NOT NULL,                     -- DISCOVERED RETRIEVED FAILED
    reason text,
    size bigint,
    modified_at timestamptz,
    data_file_id text,
    target text,
    data_id text,
    discovered_at timestamptz,
    retrieved_at timestamptz,
    duration_ms bigint,
    error text,
    updated_at timestamptz,
    PRIMARY KEY (host_id, path)
);
CREATE INDEX acquisition_files_destination ON acquisition_files (destination, updated_at);

-- movers, portal, notifications, dead letters -----------------------------------------------

CREATE TABLE movers (
    mover_id text PRIMARY KEY,
    transfer_group text,
    hostname text,
    capacity integer,
    running integer,
    running_transfers text[],
    bytes_per_second double precision,
    started_at timestamptz,
    last_heartbeat_at timestamptz,
    stopped_at timestamptz,
    stop_reason text
);
CREATE INDEX movers_group ON movers (transfer_group);

CREATE TABLE portal_access (
    event_id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    kind text NOT NULL,                       -- UPLOAD DOWNLOAD DENIED
    data_user text,
    destination text,
    path text,
    protocol text,
    bytes bigint,
    duration_ms bigint,
    complete boolean,
    reason text,
    message text,
    operation text,
    data_file_id text,
    transfer_id text,
    client_address text
);
CREATE INDEX portal_access_user ON portal_access (data_user, occurred_at);
CREATE INDEX portal_access_time ON portal_access (occurred_at);

CREATE TABLE notifications (
    event_id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    ok boolean NOT NULL,
    destination text NOT NULL,
    transfer_id text NOT NULL,
    data_file_id text,
    topic text,
    qos integer,
    retain boolean,
    payload_size integer,
    broker text,
    message_id text,
    data_id text,
    error_class text,
    message text
);
CREATE INDEX notifications_destination ON notifications (destination, occurred_at);

CREATE TABLE dead_letters (
    event_id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    reason text NOT NULL,
    message text,
    origin_topic text NOT NULL,
    origin_partition integer NOT NULL,
    origin_offset bigint NOT NULL,
    origin_timestamp timestamptz,
    event_type text,
    error_class text,
    consumer_group text,
    key_size integer,
    value_size integer,                       -- the bytes stay in Kafka: they may hold secrets
    header_names text[]
);
CREATE INDEX dead_letters_origin ON dead_letters (origin_topic, origin_partition, origin_offset);

-- what the overview page reads: each destination with its counts by status
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
             sum(count) FILTER (WHERE status = 'FAIL') AS failed,
             sum(count) FILTER (WHERE status = 'HOLD') AS held,
             sum(count) FILTER (WHERE status = 'DONE') AS done,
             sum(count) FILTER (WHERE status NOT IN ('DONE', 'FAIL', 'STOP')) AS outstanding
        FROM destination_status_counts
       GROUP BY destination
  ) c ON c.destination = d.name;
