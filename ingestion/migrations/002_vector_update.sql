-- The vector extension at the version its installed library ships: a database created with
-- pgvector 0.6 gets 0.8's SQL objects once the server runs 0.8 (iterative index scans need
-- only the library, but the extension's version is what the service reads to know it).
ALTER EXTENSION vector UPDATE;
