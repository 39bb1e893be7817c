"""The Ingestion Service: documents in, vectors in pgvector, live progress, search."""
