"""The Embedding Service: a gRPC server that accepts jobs and workers that embed them."""
