-- The commit notification names the rows it committed (their ids, in `seq` order), so a relay
-- in the enqueuing process can publish them from memory at once instead of claiming them from
-- the table. Payloads are limited to 8000 bytes: a statement inserting more rows than fit (or
-- none, all duplicates) sends an empty payload, which makes the relay claim as before.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ids text;
BEGIN
    SELECT string_agg(id::text, ',' ORDER BY seq) INTO ids FROM new_rows;
    IF ids IS NULL OR octet_length(ids) > 7900 THEN
        ids := '';
    END IF;
    PERFORM pg_notify('outbox.' || TG_TABLE_SCHEMA, ids);
    RETURN NULL;
END
$$;

DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
