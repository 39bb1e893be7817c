"""The HTTP gateway: POST /api/v1/embeddings/generate translated into gRPC calls ."""
