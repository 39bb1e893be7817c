"""Code shared by the embedpipe services, and the product's front door. Nothing here
imports a service (`make check` holds that line).

- `embedpipe.embedding.v1`: the generated contract stubs (regenerate: scripts/gen_protos.sh).
- Shared runtime: `envconfig` (typed settings from the environment), `logs`, `auth` (API
  keys → tenants), `http` (the toolkit of both aiohttp apps), `strict_json` and
  `text_safety` (input we can carry and store), `retry` (one retry policy), `signals`,
  `redis_conn`, `streams` (at-least-once Redis Stream consumption), `task_status`,
  `bundled_model` (where the default model's files are), `tables` (command-line tables).
- Private servers for the embedded stack, the tests and the benchmarks: `redis_server`,
  `postgres_server`.
- Front door: `stack` (`make up`: the whole stack on embedded defaults) and the `embedpipe`
  CLI (`cli/`).
"""
