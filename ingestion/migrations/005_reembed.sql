-- A model change without downtime: a collection's vectors are one generation; a re-embed
-- writes the next one next to it (a copy of every searchable chunk, embedded with the new
-- model) while search reads the current one, and the switch moves the collection to the
-- new generation in one transaction. Both generations' rows are in the HNSW indexes as
-- their vectors arrive, so the switch builds nothing.
ALTER TABLE chunks ADD COLUMN generation integer NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN generation integer NOT NULL DEFAULT 0;
-- The re-embed in progress, if any: one at a time per collection.
ALTER TABLE collections ADD COLUMN reembed_task_id text;

-- A task ingests a document (upload) or re-embeds a collection (reembed, document_id '').
-- Its vectors come from `model` (of `dimensions`), set when its chunks are sent: a
-- callback of another model is a stale one, dropped.
ALTER TABLE tasks ADD COLUMN kind text NOT NULL DEFAULT 'upload'
    CHECK (kind IN ('upload', 'reembed'));
ALTER TABLE tasks ADD COLUMN model text;
ALTER TABLE tasks ADD COLUMN dimensions integer;
-- The vector size asked of a model that can shorten its vectors (NULL: the model's own).
ALTER TABLE collections ADD COLUMN output_dimensions integer;
ALTER TABLE tasks ADD COLUMN output_dimensions integer;
UPDATE tasks t SET model = c.model, dimensions = c.dimensions FROM collections c
    WHERE c.tenant_id = t.tenant_id AND c.collection_id = t.collection_id;

-- A task can be cancelled.
ALTER TABLE tasks DROP CONSTRAINT tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check CHECK (status IN ('pending', 'extracting',
    'chunking', 'embedding', 'storing', 'completed', 'unchanged', 'failed', 'cancelled'));

-- A task's chunks still to embed: what a re-embed counts after each callback and sends.
CREATE INDEX chunks_unembedded ON chunks (tenant_id, task_id, document_id, chunk_id)
    WHERE embedding IS NULL;
