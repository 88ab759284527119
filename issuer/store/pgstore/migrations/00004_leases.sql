-- Leases: a named role that one replica at a time holds for a bounded term
-- (today "key-rotation": the replica that advances the key lifecycle).
-- The holder renews expire_time well before it passes; once it has passed,
-- any replica may take the lease over. Times are the database's clock, so
-- the replicas' clocks need not agree.

-- +goose Up
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    expire_time timestamptz NOT NULL
);

-- +goose Down
DROP TABLE leases;
