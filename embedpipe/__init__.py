"""Code shared by the embedpipe services.

`embedpipe.embedding.v1` holds the generated contract stubs (regenerate with
`scripts/gen_protos.sh`); the modules next to it hold runtime code that more than one
service needs (environment parsing, logging, Redis connections, stream consumption).
"""
