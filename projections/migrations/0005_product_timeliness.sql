-- Timeliness read models (issue 17): product generation status, the transfers of products
-- (files whose metadata names stream/time/step/type) with their cycle, and lateness events.
-- Predictions are not stored: they are computed from product_transfers by bus.timeliness (the
-- one home of the method), which the grid and the watcher share.

-- a product's generation status as last set (ProductStatusChanged); RESET keeps the row
CREATE TABLE product_status (
    product text PRIMARY KEY,                 -- stream/time/step/type
    stream text NOT NULL,
    "time" text NOT NULL,
    step text NOT NULL,
    type text NOT NULL,
    status text NOT NULL,                     -- EXPECTED STARTED COMPLETED RESET
    status_at timestamptz NOT NULL,           -- when the status holds from (--at)
    changed_at timestamptz NOT NULL,          -- when it was asked
    changed_by text NOT NULL,
    event_id uuid NOT NULL
);

-- one row per transfer of a product's file: its cycle, when it arrived, when it was delivered
CREATE TABLE product_transfers (
    transfer_id text PRIMARY KEY,
    destination text NOT NULL,
    product text NOT NULL,
    base_time timestamptz,                    -- the cycle (null: time is not a time of day)
    arrived_at timestamptz NOT NULL,          -- the transfer was queued (file in the store)
    delivered_at timestamptz,                 -- the transfer became DONE
    status text
);
CREATE INDEX product_transfers_cell ON product_transfers (destination, product, base_time);
CREATE INDEX product_transfers_product ON product_transfers (product, base_time);

-- the delivery of a product's transfer, kept in step with transfers by its status changes
-- (in the writing transaction, so a rebuild gives the same rows)
CREATE FUNCTION product_transfer_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.status IS NOT DISTINCT FROM NEW.status THEN
        RETURN NULL;
    END IF;
    UPDATE product_transfers
       SET status = NEW.status,
           delivered_at = CASE WHEN NEW.status = 'DONE'
                               THEN coalesce(NEW.finished_at, NEW.updated_at) END
     WHERE transfer_id = NEW.transfer_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER transfers_product_status
AFTER INSERT OR UPDATE OF status ON transfers
FOR EACH ROW EXECUTE FUNCTION product_transfer_status();

-- ProductLate and TransferLate, as published by the timeliness watcher
CREATE TABLE lateness_events (
    event_id uuid PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event_type text NOT NULL,
    product text NOT NULL,
    destination text,
    transfer_id text,
    base_time timestamptz NOT NULL,
    measure text,
    lateness text NOT NULL,
    predicted_at timestamptz NOT NULL,
    target_at timestamptz,
    observed_at timestamptz,
    late_by_ms bigint NOT NULL
);
CREATE INDEX lateness_events_product ON lateness_events (product, base_time);
CREATE INDEX lateness_events_destination ON lateness_events (destination, occurred_at);
