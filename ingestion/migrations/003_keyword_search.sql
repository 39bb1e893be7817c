-- Keyword search: a collection names the PostgreSQL text search configuration its text is
-- split and stemmed with; each chunk keeps its text as a tsvector made with it when the
-- chunk is stored (the configuration is a name, looked up then: a generated column could
-- only use one fixed configuration), under a GIN index of the searchable chunks.
ALTER TABLE collections ADD COLUMN text_search_config text NOT NULL DEFAULT 'english';
ALTER TABLE chunks ADD COLUMN tsv tsvector;
UPDATE chunks SET tsv = to_tsvector('english', text);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv) WHERE live;
