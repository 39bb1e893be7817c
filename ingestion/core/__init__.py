"""The ingestion operations, written once.

The HTTP routes (ingestion/routes.py) and the gRPC servicer (ingestion/grpc_api.py) are thin
fronts over these functions: each takes the caller's tenant and a request message of
protos/embedpipe/ingestion/v1, validates it (field paths read the same over both
transports), and answers with a response message or raises an `IngestionError`.
"""
