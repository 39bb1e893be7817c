"""Code shared by the embedpipe services, and the product's front door.

- `embedpipe.embedding.v1`: the generated contract stubs (regenerate: scripts/gen_protos.sh).
- Shared runtime: `envconfig` (typed environment settings), `logs`, `auth` (API keys →
  tenants), `redis_conn`, `redis_server` (a private redis-server), `streams` (at-least-once
  Redis Stream consumption), `http_errors` (the JSON error body), `openapi` (building
  blocks of the OpenAPI documents), `readiness` (/readyz).
- Front door: `stack` (`make up`: the whole stack on embedded defaults) and the `embedpipe`
  CLI (`cli` and the `cli_*` modules).
"""
