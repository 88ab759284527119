-- The issuer's state. Secrets never reach these tables in clear: pats.hash
-- is a SHA-256, signing_keys.sealed and models.sealed_api_key are
-- AES-256-GCM blobs sealed with the issuer's key-encryption key, which the
-- database never sees. A zero time is stored as NULL.

-- +goose Up
CREATE TABLE airlock_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

-- One row per watched domain. A write to a domain's records updates its
-- row first, in the same transaction: the row lock serialises the writers of
-- a domain (as bbolt's single writer does) and the new value is the revision.
CREATE TABLE revisions (
    domain   text PRIMARY KEY,
    revision bigint NOT NULL CHECK (revision >= 0)
);
INSERT INTO revisions (domain, revision) VALUES ('keys', 0), ('models', 0), ('revocations', 0);

-- last_user_id is the last id CreateUser assigned; its row lock serialises
-- user creation (the limit check and the unique name).
CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL CHECK (value >= 0)
);
INSERT INTO counters (name, value) VALUES ('last_user_id', 0);

CREATE TABLE users (
    id          bigint PRIMARY KEY CHECK (id > 0),
    username    text NOT NULL UNIQUE,
    role        integer NOT NULL,
    features    text[] NOT NULL DEFAULT '{}',
    create_time timestamptz
);

CREATE TABLE pats (
    id          text PRIMARY KEY,
    hash        bytea NOT NULL UNIQUE,
    user_id     bigint NOT NULL REFERENCES users (id),
    username    text NOT NULL,
    create_time timestamptz,
    expire_time timestamptz,
    revoke_time timestamptz
);

-- The key set, replaced as a whole; position keeps the caller's order.
CREATE TABLE signing_keys (
    position      integer PRIMARY KEY,
    kid           text NOT NULL,
    alg           text NOT NULL,
    state         integer NOT NULL,
    sealed        bytea,
    create_time   timestamptz,
    activate_time timestamptz,
    retire_time   timestamptz,
    expire_time   timestamptz
);

CREATE TABLE issued_tokens (
    jti         text PRIMARY KEY,
    user_id     bigint NOT NULL,
    expire_time timestamptz
);

CREATE TABLE revocations (
    jti         text PRIMARY KEY,
    seq         bigint NOT NULL UNIQUE,
    expire_time timestamptz,
    revoke_time timestamptz
);

-- References between models (fallback) and from feature settings (model)
-- are checked by the store under the models row of revisions, not by
-- foreign keys: a bbolt installation copied by migrate-store may hold a
-- dangling link that bbolt tolerated.
CREATE TABLE models (
    name             text PRIMARY KEY,
    family           text NOT NULL,
    provider         text NOT NULL,
    endpoint         text NOT NULL,
    identifier       text NOT NULL,
    sealed_api_key   bytea,
    trusted_networks text[] NOT NULL DEFAULT '{}',
    fallback         text NOT NULL DEFAULT '',
    api_version      text NOT NULL,
    create_time      timestamptz,
    update_time      timestamptz
);
CREATE INDEX models_fallback ON models (fallback) WHERE fallback <> '';

CREATE TABLE feature_settings (
    feature  text PRIMARY KEY,
    model    text NOT NULL DEFAULT '',
    disabled boolean NOT NULL
);

-- +goose Down
DROP TABLE feature_settings, models, revocations, issued_tokens, signing_keys, pats, users, counters, revisions, airlock_meta;
