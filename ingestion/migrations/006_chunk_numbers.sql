-- Every number in a chunk's metadata, by its path through objects: a range filter finds
-- its chunks through the btree here instead of reading every chunk of the collection
-- (bench/search: a range keeping 0.01% of a 100,000-chunk collection read the whole table,
-- ~400 ms). Kept by a trigger on insert; a chunk's rows go with it (metadata is never
-- updated). Numbers inside arrays are not here: a range does not match them either.
CREATE TABLE chunk_numbers (
    tenant_id     text    NOT NULL,
    collection_id text    NOT NULL,
    task_id       text    NOT NULL,
    chunk_id      text    NOT NULL,
    path          text[]  NOT NULL,
    value         numeric NOT NULL,
    FOREIGN KEY (tenant_id, task_id, chunk_id)
        REFERENCES chunks (tenant_id, task_id, chunk_id) ON DELETE CASCADE
);
CREATE INDEX chunk_numbers_by_value ON chunk_numbers (tenant_id, collection_id, path, value);
CREATE INDEX chunk_numbers_by_chunk ON chunk_numbers (tenant_id, task_id, chunk_id);

-- (path, number) of every number reached through objects only.
CREATE FUNCTION metadata_numbers(doc jsonb) RETURNS TABLE (path text[], value numeric)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    WITH RECURSIVE walk (path, value) AS (
        SELECT ARRAY[e.key], e.value
        FROM jsonb_each(CASE WHEN jsonb_typeof(doc) = 'object' THEN doc ELSE '{}' END) AS e
        UNION ALL
        SELECT w.path || e.key, e.value
        FROM walk AS w,
            jsonb_each(CASE WHEN jsonb_typeof(w.value) = 'object' THEN w.value ELSE '{}' END) AS e
    )
    SELECT walk.path, walk.value::numeric FROM walk WHERE jsonb_typeof(walk.value) = 'number'
$$;

CREATE FUNCTION chunk_numbers_of_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chunk_numbers (tenant_id, collection_id, task_id, chunk_id, path, value)
    SELECT c.tenant_id, c.collection_id, c.task_id, c.chunk_id, n.path, n.value
    FROM inserted AS c, metadata_numbers(c.metadata) AS n;
    RETURN NULL;
END
$$;

CREATE TRIGGER chunks_numbers AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION chunk_numbers_of_inserted();

INSERT INTO chunk_numbers (tenant_id, collection_id, task_id, chunk_id, path, value)
SELECT c.tenant_id, c.collection_id, c.task_id, c.chunk_id, n.path, n.value
FROM chunks AS c, metadata_numbers(c.metadata) AS n;
