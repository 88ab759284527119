-- Issuer-wide secrets (store.Store.InitSecret), each sealed with the
-- issuer's key-encryption key before it reaches the database: today the key
-- the opaque global user ids are derived with. The first writer wins.

-- +goose Up
CREATE TABLE airlock_secrets (
    name   text PRIMARY KEY,
    sealed bytea NOT NULL
);

-- +goose Down
DROP TABLE airlock_secrets;
