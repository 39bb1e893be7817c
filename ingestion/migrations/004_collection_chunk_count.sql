-- A collection's searchable chunks, kept as documents are promoted and deleted: search
-- reads it to choose an exact search (small collections) or the HNSW index (large ones).
ALTER TABLE collections ADD COLUMN chunk_count bigint NOT NULL DEFAULT 0;
UPDATE collections c SET chunk_count = (SELECT coalesce(sum(d.chunk_count), 0) FROM documents d
    WHERE d.tenant_id = c.tenant_id AND d.collection_id = c.collection_id
    AND d.current_task_id IS NOT NULL);
