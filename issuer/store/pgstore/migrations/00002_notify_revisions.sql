-- Every committed change of a domain's revision is announced on channel
-- airlock_revisions as "<domain>:<revision>", so the other replicas learn
-- of it (pgstore's WatchRevisions). NOTIFY is transactional: a rolled-back
-- write announces nothing, and a committed one is announced after commit.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION airlock_notify_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('airlock_revisions', NEW.domain || ':' || NEW.revision);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER revisions_notify AFTER UPDATE OF revision ON revisions
    FOR EACH ROW WHEN (OLD.revision IS DISTINCT FROM NEW.revision)
    EXECUTE FUNCTION airlock_notify_revision();

-- +goose Down
DROP TRIGGER revisions_notify ON revisions;
DROP FUNCTION airlock_notify_revision();
