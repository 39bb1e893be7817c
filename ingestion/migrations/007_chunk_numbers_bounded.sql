-- The range index holds only paths a range filter can use it for (ingestion/chunk_filter.py
-- `number_range`): at most 16 parts and 256 characters dotted, as a filter's key, and no
-- part that `#>` would read as an array position ("0", "-1"): through an array the index
-- cannot follow, such a path is tested chunk by chunk. A longer path made an index row
-- larger than a btree takes, and the chunk's insert fail.
CREATE FUNCTION indexed_number_path(path text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT cardinality(path) <= 16
        AND length(array_to_string(path, '.')) <= 256
        AND NOT EXISTS (SELECT FROM unnest(path) AS part WHERE part ~ '^[[:space:]]*[-+]?[0-9]+$')
$$;

CREATE OR REPLACE FUNCTION metadata_numbers(doc jsonb) RETURNS TABLE (path text[], value numeric)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    WITH RECURSIVE walk (path, value) AS (
        SELECT ARRAY[e.key], e.value
        FROM jsonb_each(CASE WHEN jsonb_typeof(doc) = 'object' THEN doc ELSE '{}' END) AS e
        UNION ALL
        SELECT w.path || e.key, e.value
        FROM walk AS w,
            jsonb_each(CASE WHEN jsonb_typeof(w.value) = 'object' THEN w.value ELSE '{}' END) AS e
        WHERE cardinality(w.path) < 16
    )
    SELECT walk.path, walk.value::numeric FROM walk
    WHERE jsonb_typeof(walk.value) = 'number' AND indexed_number_path(walk.path)
$$;

DELETE FROM chunk_numbers WHERE NOT indexed_number_path(path);
