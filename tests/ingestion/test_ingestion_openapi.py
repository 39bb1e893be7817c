"""The ingestion API's /openapi.json: generated from the protos and the routes, valid, covers
every route of the app, served as generated."""

from __future__ import annotations

from typing import Any

import aiohttp
from openapi_spec_validator import validate

from embedpipe.protodoc import comments_by_name, proto_files
from ingestion import console
from ingestion.api import create_app
from ingestion.openapi import document, generate
from ingestion.settings import IngestionSettings
from tests.support.tenants import bearer

UPLOAD = "/api/v1/collections/{collection_id}/documents"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def registered_routes() -> set[tuple[str, str]]:
    """(path template, method) of every route of the app, without aiohttp's HEAD-for-GET."""
    app = create_app(IngestionSettings(database_url="postgresql://unused"))
    routes = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.resource is not None
    }
    return {
        (path, method) for path, method in routes if (path, "GET") not in routes or method != "HEAD"
    }


def documented_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_the_served_document_is_the_one_the_protos_and_routes_make() -> None:
    """ingestion/openapi.json is generated (scripts/gen_docs.py), never edited."""
    assert document() == generate(comments_by_name(proto_files()))
    create = document()["paths"]["/api/v1/collections"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body == "#/components/schemas/CreateCollectionRequest"
    assert (
        "chunk_tokens"
        in document()["components"]["schemas"]["CreateCollectionRequest"]["properties"]
    )


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = document()
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_route_is_documented_and_every_documented_route_served() -> None:
    routes = registered_routes()
    assert ("/api/v1/collections/{collection_id}/search", "POST") in routes  # enumeration works
    documented = documented_routes(document())
    assert routes <= documented, f"routes missing from the spec: {routes - documented}"
    assert documented <= routes, f"spec paths the app does not serve: {documented - routes}"


def test_bodies_errors_parameters_and_keys_are_described() -> None:
    spec = document()
    upload = spec["paths"][UPLOAD]["post"]
    assert set(upload["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert {"202", "400", "401", "404", "413", "415", "422"} <= set(upload["responses"])
    create = spec["paths"]["/api/v1/collections"]["post"]
    assert {"201", "400", "401", "409", "415", "503"} <= set(create["responses"])
    ws = spec["paths"]["/api/v1/ws"]["get"]
    assert "101" in ws["responses"] and '"subscribe"' in ws["description"]
    assert {"queryKeyAuth": []} in ws["security"]

    for path, op in operations(spec):
        placeholders = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        parameters = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert parameters == placeholders, path
        if placeholders:
            assert "404" in op["responses"], f"{path}: ids of other tenants answer 404"
        if op["security"]:
            assert "401" in op["responses"], path
    public = {path for path, op in operations(spec) if not op["security"]}
    assert public == {"/healthz", "/readyz", "/metrics", "/openapi.json", *console.PATHS}


async def test_openapi_json_is_served_as_built(
    ingestion_api: str, http: aiohttp.ClientSession
) -> None:
    # Served without an API key, like /healthz and /readyz.
    async with http.get(ingestion_api + "/openapi.json") as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        served: dict[str, Any] = await r.json()
    assert served == document()

    # Two documented errors of the WebSocket route, in the documented error shape.
    async with http.get(ingestion_api + "/api/v1/ws") as r:
        assert r.status == 401
        assert (await r.json())["error"]["status"] == "UNAUTHENTICATED"
    async with http.get(ingestion_api + "/api/v1/ws", headers=bearer("tenant-a")) as r:
        assert r.status == 400
        assert (await r.json())["error"]["status"] == "INVALID_ARGUMENT"
