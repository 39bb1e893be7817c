-- Keyword search: a collection names the PostgreSQL text search configuration its text is
-- split and stemmed with; each chunk keeps its text as a tsvector made with it when the
-- chunk is stored (the configuration is a name, looked up then: a generated column could
-- only use one fixed configuration), under a GIN index of the searchable chunks.
ALTER TABLE collections ADD COLUMN text_search_config text NOT NULL DEFAULT 'english';

-- A chunk's words. PostgreSQL's parser keeps a dotted or slashed name whole
-- ("shutil.copytree", "/etc/hosts"); its parts are added too, so that "copytree" and
-- "hosts" find it as well as the whole name does.
CREATE FUNCTION chunk_words(config regconfig, body text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT to_tsvector(config, body) || to_tsvector(config, translate(body, './', '  ')) $$;

ALTER TABLE chunks ADD COLUMN tsv tsvector;
UPDATE chunks SET tsv = chunk_words('english', text);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv) WHERE live;

-- Filters on metadata: containment and key tests (@>, @?) find their chunks through this
-- index, instead of reading the whole collection, when few chunks pass them.
CREATE INDEX chunks_metadata ON chunks USING gin (metadata jsonb_path_ops) WHERE live;
