-- The Ingestion Service's store. Every row carries tenant_id, and every key starts with it,
-- so no query can reach another tenant's rows by an id alone.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE collections (
    tenant_id       text        NOT NULL,
    collection_id   text        NOT NULL,
    model           text        NOT NULL,
    dimensions      integer     NOT NULL CHECK (dimensions > 0),
    chunk_tokens    integer     NOT NULL CHECK (chunk_tokens > 0),
    overlap_tokens  integer     NOT NULL CHECK (overlap_tokens >= 0),
    metadata        jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, collection_id)
);

CREATE TABLE documents (
    tenant_id       text        NOT NULL,
    collection_id   text        NOT NULL,
    document_id     text        NOT NULL,
    filename        text,
    content_type    text,
    content_hash    text,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    status          text        NOT NULL,
    chunk_count     integer     NOT NULL DEFAULT 0,
    -- The task whose chunks are the document's current, searchable ones.
    current_task_id text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, collection_id, document_id),
    FOREIGN KEY (tenant_id, collection_id)
        REFERENCES collections (tenant_id, collection_id) ON DELETE CASCADE
);

CREATE TABLE tasks (
    tenant_id       text        NOT NULL,
    task_id         text        NOT NULL,
    collection_id   text        NOT NULL,
    document_id     text        NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'extracting', 'chunking',
                        'embedding', 'storing', 'completed', 'unchanged', 'failed')),
    chunks_total    integer     NOT NULL DEFAULT 0,
    chunks_embedded integer     NOT NULL DEFAULT 0,
    content_hash    text,
    error_code      text,
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    PRIMARY KEY (tenant_id, task_id)
);
CREATE INDEX tasks_by_document ON tasks (tenant_id, collection_id, document_id);

-- Chunks of a task land here as their callbacks arrive; they become the document's
-- searchable chunks in one transaction when the last one is stored (no half-updated document).
CREATE TABLE chunks (
    tenant_id       text        NOT NULL,
    collection_id   text        NOT NULL,
    document_id     text        NOT NULL,
    task_id         text        NOT NULL,
    chunk_id        text        NOT NULL,
    position        integer     NOT NULL,
    text            text        NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    embedding       vector,
    dimensions      integer,
    live            boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, task_id, chunk_id)
);
CREATE INDEX chunks_by_document ON chunks (tenant_id, collection_id, document_id);
