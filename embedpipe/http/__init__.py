"""The HTTP toolkit both aiohttp apps (the gateway and the ingestion API) are built with.

- `errors`: `HttpError`, the JSON error body and the error middleware;
- `json_body`: reading a JSON body strictly (embedpipe/strict_json.py);
- `auth`: the API-key middleware and the request's tenant;
- `probes`: `/healthz` and `/readyz`;
- `upstream`: a failed gRPC call to the embedding server as an `HttpError`, by status class;
- `access_log`: the access log without API keys;
- `openapi`: building blocks of the OpenAPI documents.
"""
