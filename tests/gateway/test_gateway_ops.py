"""The gateway's operational surface: /openapi.json covers every route, /metrics counts."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from embedpipe.protodoc import comments_by_name, proto_files
from embedpipe.redis_server import free_port
from gateway.app import create_app
from gateway.openapi import document, generate
from gateway.settings import GatewaySettings
from tests.support.gateway_calls import GENERATE, seed_payload
from tests.support.services import serving_gateway
from tests.support.tenants import bearer

GENERATE_RPC = "/embedpipe.embedding.v1.EmbeddingService/GenerateEmbeddings"


def test_the_served_document_is_the_one_the_protos_and_routes_make() -> None:
    """gateway/openapi.json is generated (scripts/gen_docs.py), never edited: the generate
    route's bodies are described from the EmbeddingService messages."""
    assert document() == generate(comments_by_name(proto_files()))
    generate_route = document()["paths"][GENERATE]["post"]
    body = generate_route["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/GenerateEmbeddingsRequest"}


def registered_routes() -> set[tuple[str, str]]:
    """(path template, method) of every route of the app, without aiohttp's HEAD-for-GET."""
    routes = {
        (route.resource.canonical, route.method)
        for route in create_app(GatewaySettings()).router.routes()
        if route.resource is not None
    }
    return {
        (path, method) for path, method in routes if (path, "GET") not in routes or method != "HEAD"
    }


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: aiohttp.ClientSession, url: str) -> Samples:
    """Every sample of `GET /metrics`, by name and labels."""
    async with http.get(url + "/metrics") as r:
        assert r.status == 200
        assert r.content_type == "text/plain"
        text = await r.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_openapi_json_is_valid_and_describes_every_route(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway + "/openapi.json") as r:
        assert r.status == 200
        spec: dict[str, Any] = await r.json()
    validate(spec)

    routes = registered_routes()
    assert ("/api/v1/embeddings/generate", "POST") in routes  # the enumeration works
    documented = {
        (path, method.upper())
        for path, operations in spec["paths"].items()
        for method in operations
    }
    assert routes <= documented, f"routes missing from the spec: {routes - documented}"
    assert documented <= routes, f"spec paths the app does not serve: {documented - routes}"


async def test_openapi_json_documents_bodies_errors_and_keys(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway + "/openapi.json") as r:
        spec: dict[str, Any] = await r.json()
    generate = spec["paths"][GENERATE]["post"]
    assert {"202", "400", "401", "403", "413", "415", "429", "503", "504"} <= set(
        generate["responses"]
    )
    assert generate["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    responses = spec["components"]["responses"]
    assert "Retry-After" in responses["GoogleError429"]["headers"]
    assert "Retry-After" in responses["OpenAIError503"]["headers"]
    assert responses["OpenAIError400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIError"
    }
    schemas = spec["components"]["schemas"]
    # The seed's fields, and one added (optional): the size for models that shorten vectors.
    documented = set(schemas["GenerateEmbeddingsRequest"]["properties"])
    assert documented - set(seed_payload()) == {"dimensions"}
    assert set(seed_payload()) <= documented
    assert set(schemas["Chunk"]["properties"]) == {"chunk_id", "text", "metadata"}
    assert spec["paths"]["/healthz"]["get"]["security"] == []


async def test_metrics_count_requests_upstream_calls_and_queue_depth(
    gateway: str, http: aiohttp.ClientSession
) -> None:
    async with http.post(gateway + GENERATE, json=seed_payload(), headers=bearer("tenant-a")) as r:
        assert r.status == 202
    unknown_model = seed_payload(model="text-embedding-ada-002")
    async with http.post(gateway + GENERATE, json=unknown_model, headers=bearer("tenant-a")) as r:
        assert r.status == 400
    async with http.post(gateway + GENERATE, json=seed_payload()) as r:
        assert r.status == 401
    async with http.get(gateway + "/no/such/path") as r:
        assert r.status == 404

    samples = await scrape(http, gateway)
    requests = "embedpipe_gateway_requests_total"
    for status in ("202", "400", "401"):
        assert value(samples, requests, route=GENERATE, method="POST", status=status) == 1
    # Unknown paths share one label value: the raw path never becomes a label.
    assert value(samples, requests, route="unmatched", method="GET", status="404") == 1
    assert not [labels for (_, labels) in samples if ("route", "/no/such/path") in labels]
    duration = "embedpipe_gateway_request_duration_seconds_count"
    assert value(samples, duration, route=GENERATE, method="POST") == 3

    calls = "embedpipe_gateway_upstream_calls_total"
    assert value(samples, calls, method=GENERATE_RPC, code="OK") == 1
    assert value(samples, calls, method=GENERATE_RPC, code="INVALID_ARGUMENT") == 1
    assert value(samples, calls, method=GENERATE_RPC, code="UNAUTHENTICATED") == 1
    upstream = "embedpipe_gateway_upstream_duration_seconds_count"
    assert value(samples, upstream, method=GENERATE_RPC) == 3

    # No worker runs here: the accepted job is still in the stream.
    depth = value(samples, "embedpipe_jobs_queue_depth")
    assert depth is not None and depth >= 1


async def test_metrics_answer_when_the_embedding_server_is_down(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = GatewaySettings(embedding_target=f"127.0.0.1:{free_port()}", port=0)
    async with serving_gateway(nowhere) as url:
        async with http.post(url + GENERATE, json=seed_payload(), headers=bearer("tenant-a")) as r:
            assert r.status == 503
        samples = await scrape(http, url)
    assert value(samples, "embedpipe_jobs_queue_depth") == -1
    assert "queue depth unavailable" in caplog.text
    requests = "embedpipe_gateway_requests_total"
    assert value(samples, requests, route=GENERATE, method="POST", status="503") == 1
    calls = "embedpipe_gateway_upstream_calls_total"
    assert value(samples, calls, method=GENERATE_RPC, code="UNAVAILABLE") == 1


async def test_each_app_has_a_registry_of_its_own(
    gateway: str, gateway_settings: GatewaySettings, http: aiohttp.ClientSession
) -> None:
    async with http.get(gateway + "/healthz") as r:
        assert r.status == 200
    async with serving_gateway(gateway_settings) as other:
        samples = await scrape(http, other)
    assert (
        value(
            samples,
            "embedpipe_gateway_requests_total",
            route="/healthz",
            method="GET",
            status="200",
        )
        is None
    )
