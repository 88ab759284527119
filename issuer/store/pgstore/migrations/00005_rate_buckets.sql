-- Rate limits shared by every replica (pgstore.Rate): one token bucket per
-- key (today "user:<name>" for minting), refilled by the database's clock.
-- A row per key that ever acted; a full bucket is the same as no row, so
-- rows idle for long may be deleted at any time.

-- +goose Up
CREATE TABLE rate_buckets (
    key         text PRIMARY KEY,
    tokens      double precision NOT NULL,
    update_time timestamptz NOT NULL
);

-- +goose Down
DROP TABLE rate_buckets;
