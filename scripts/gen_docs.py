"""Generate the API reference pages; `--check` fails (exit 1) if those on disk differ.

    .venv/bin/python scripts/gen_docs.py [--check]

gateway/openapi.json and ingestion/openapi.json, the OpenAPI documents the services serve,
are generated from their route tables and the protos with their comments (plus what only
HTTP has, described in each service's openapi.py). docs/http-api.md comes from those two
documents. docs/grpc-api.md comes from
the protos: their descriptors, with comments, are compiled by grpc_tools' protoc (the one
that generated the stubs, with --include_source_info, since the generated modules carry no
comments) and checked against the generated `embedpipe.<service>.v1.*_pb2` modules, so a
page never describes protos the stubs do not match. The output depends on nothing else.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2 as d

from embedpipe.protodoc import (
    ENUM_TYPE,
    ENUM_VALUE,
    FIELD,
    MESSAGE_TYPE,
    METHOD,
    NESTED_ENUM,
    NESTED_TYPE,
    SERVICE,
    StaleStubsError,
    comment_text,
    comments_by_name,
    proto_files,
)

ROOT = Path(__file__).resolve().parent.parent
HTTP_DOC = Path("docs/http-api.md")
GRPC_DOC = Path("docs/grpc-api.md")
COMMAND = ".venv/bin/python scripts/gen_docs.py"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

Schema = dict[str, Any]


# --- Markdown ------------------------------------------------------------------------------


def cell(text: str) -> str:
    """Text fit for a table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def anchor(name: str) -> str:
    return f'<a id="{name}"></a>'


def code(text: str) -> str:
    return f"`{text}`"


# --- HTTP: OpenAPI documents -----------------------------------------------------------------


class OpenApiPage:
    """Renders one OpenAPI 3.1 document; `key` prefixes its anchors."""

    def __init__(self, key: str, spec: Schema) -> None:
        self.key = key
        self.spec = spec

    # references

    def resolve(self, item: Schema) -> Schema:
        """Follow `$ref`s; a Reference's own summary/description wins (OpenAPI 3.1)."""
        overrides = {k: v for k, v in item.items() if k in ("summary", "description")}
        while "$ref" in item:
            target: Any = self.spec
            for part in item["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            item = target
        return {**item, **overrides}

    def schema_anchor(self, name: str) -> str:
        return f"{self.key}-schema-{name}"

    def type_of(self, schema: Schema) -> str:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            return f"[{name}](#{self.schema_anchor(name)})"
        for combinator in ("oneOf", "anyOf"):
            if combinator in schema:
                return " or ".join(self.type_of(s) for s in schema[combinator])
        kinds = schema.get("type", [])
        parts = []
        for kind in [kinds] if isinstance(kinds, str) else kinds:
            extra = schema.get("additionalProperties")
            if kind == "array":
                parts.append(f"array of {self.type_of(schema.get('items', {}))}")
            elif kind == "object" and isinstance(extra, dict):
                parts.append(f"object of {self.type_of(extra)}")
            elif "format" in schema and kind != "null":
                parts.append(f"{kind} ({schema['format']})")
            else:
                parts.append(kind)
        return " or ".join(parts) or "any"

    @staticmethod
    def notes(schema: Schema) -> str:
        """The description and the constraints of a schema, in words."""
        notes = [schema["description"]] if schema.get("description") else []
        if "enum" in schema:
            values = [code(str(v)) for v in schema["enum"]]
            notes.append(
                f"Always {values[0]}." if len(values) == 1 else f"One of {', '.join(values)}."
            )
        if "default" in schema:
            notes.append(f"Default {code(str(schema['default']))}.")
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            notes.append(f"From {low} to {high}.")
        elif low is not None:
            notes.append(f"At least {low}.")
        elif high is not None:
            notes.append(f"At most {high}.")
        if "exclusiveMinimum" in schema:
            notes.append(f"Over {schema['exclusiveMinimum']}.")
        for key, word in (("minLength", "character"), ("minItems", "item")):
            if key in schema:
                count = schema[key]
                notes.append(f"At least {count} {word}{'' if count == 1 else 's'}.")
        if "pattern" in schema:
            notes.append(f"Pattern {code(schema['pattern'])}.")
        if "contentMediaType" in schema:
            notes.append(f"Content: {code(schema['contentMediaType'])}.")
        return " ".join(notes)

    def field_rows(self, schema: Schema, prefix: str = "") -> Iterator[list[str]]:
        """A row per property; inline objects (and arrays of them) are flattened."""
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            path = prefix + name
            yield [
                code(path),
                self.type_of(prop),
                "yes" if name in required else "",
                self.notes(prop),
            ]
            if "properties" in prop:
                yield from self.field_rows(prop, path + ".")
            elif "properties" in prop.get("items", {}):
                yield from self.field_rows(prop["items"], path + "[].")

    def fields(self, schema: Schema) -> list[str]:
        resolved = self.resolve(schema)
        if "properties" not in resolved:
            return [f"Type: {self.type_of(resolved)}. {self.notes(resolved)}".rstrip(), ""]
        return table(("field", "type", "required", "description"), list(self.field_rows(resolved)))

    # operations

    def auth(self, operation: Schema) -> str:
        requirements = operation.get("security", self.spec.get("security", []))
        if not requirements:
            return "none"
        schemes = self.spec["components"]["securitySchemes"]
        ways = []
        for requirement in requirements:
            for name in requirement:
                scheme = schemes[name]
                if scheme["type"] == "http":
                    ways.append(code(f"Authorization: {scheme['scheme'].title()} <key>"))
                else:
                    ways.append(f"{code(scheme['name'])} {scheme['in']}")
        return " or ".join(ways)

    def operations(self) -> Iterator[tuple[str, str, Schema]]:
        for path, item in self.spec["paths"].items():
            for method in HTTP_METHODS:
                if method in item:
                    yield path, method, item[method]

    def operation_anchor(self, operation: Schema) -> str:
        return f"{self.key}-{operation['operationId']}"

    def render_operation(self, path: str, method: str, operation: Schema) -> list[str]:
        lines = [
            anchor(self.operation_anchor(operation)),
            f"#### `{method.upper()} {path}`",
            "",
            operation.get("summary", ""),
            "",
        ]
        if operation.get("description"):
            lines += [operation["description"], ""]
        lines += [f"Authentication: {self.auth(operation)}.", ""]
        if parameters := [self.resolve(p) for p in operation.get("parameters", [])]:
            rows = [
                [
                    code(p["name"]),
                    p["in"],
                    self.type_of(p.get("schema", {})),
                    "yes" if p.get("required") else "",
                    self.notes({**p.get("schema", {}), "description": p.get("description", "")}),
                ]
                for p in parameters
            ]
            lines += ["Parameters:", ""]
            lines += table(("name", "in", "type", "required", "description"), rows)
        if body := operation.get("requestBody"):
            body = self.resolve(body)
            for media_type, content in body.get("content", {}).items():
                schema = content.get("schema", {})
                lines += [f"Request body, {code(media_type)}: {self.type_of(schema)}", ""]
                lines += self.fields(schema)
                for field, encoding in content.get("encoding", {}).items():
                    if "contentType" in encoding:
                        types = ", ".join(
                            code(t.strip()) for t in encoding["contentType"].split(",")
                        )
                        lines += [f"Content types of {code(field)}: {types}.", ""]
        if messages := operation.get("x-websocket-messages"):
            lines += [
                f"WebSocket messages: the client sends {self.type_of(messages['send'])}; "
                f"the server sends {self.type_of(messages['receive'])}.",
                "",
            ]
        rows = []
        for status, item in operation.get("responses", {}).items():
            response = self.resolve(item)
            bodies = [
                f"{code(media_type)}: {self.type_of(content.get('schema', {}))}"
                for media_type, content in response.get("content", {}).items()
            ]
            bodies += [f"header {code(name)}" for name in response.get("headers", {})]
            rows.append([status, response.get("description", ""), "; ".join(bodies)])
        lines += ["Responses:", ""]
        lines += table(("status", "description", "body"), rows)
        return lines

    # the page section

    def render(self, heading: str) -> list[str]:
        info = self.spec["info"]
        lines = [anchor(self.key), f"## {heading}", ""]
        lines += [
            f"{code(info['title'])} version {info['version']}, OpenAPI {self.spec['openapi']}.",
            "",
        ]
        if info.get("description"):
            lines += [info["description"], ""]
        operations = list(self.operations())
        lines += table(
            ("route", "summary"),
            [
                [f"[`{m.upper()} {p}`](#{self.operation_anchor(o)})", o.get("summary", "")]
                for p, m, o in operations
            ],
        )
        tags = [(t["name"], t.get("description", "")) for t in self.spec.get("tags", [])]
        known = {name for name, _ in tags}
        tags += sorted(
            {(o["tags"][0], "") for _, _, o in operations if o.get("tags", [""])[0] not in known}
        )
        for tag, description in tags:
            tagged = [(p, m, o) for p, m, o in operations if o.get("tags", [""])[0] == tag]
            if not tagged:
                continue
            lines += [f"### {tag or 'other'}", ""]
            if description:
                lines += [description, ""]
            for path, method, operation in tagged:
                lines += self.render_operation(path, method, operation)
        lines += ["### Schemas", ""]
        for name, schema in self.spec.get("components", {}).get("schemas", {}).items():
            lines += [anchor(self.schema_anchor(name)), f"#### `{name}`", ""]
            if "properties" in schema and schema.get("description"):
                lines += [schema["description"], ""]
            lines += self.fields(schema)
        return lines


def openapi_text(document: Schema) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def http_page(gateway_document: Schema, ingestion_document: Schema) -> str:
    lines = [
        "# HTTP API reference",
        "",
        f"<!-- Generated by scripts/gen_docs.py; do not edit. Regenerate: {COMMAND} -->",
        "",
        "Generated from the OpenAPI documents the services serve at `GET /openapi.json`",
        "(`gateway/openapi.json`, `ingestion/openapi.json`), themselves generated from the",
        "protos and the services' route tables. Errors are JSON: Google's",
        '`{"error": {"code", "status", "message", "details"}}`, or OpenAI\'s shape on the',
        "gateway's `/v1/...` routes.",
        "",
        "- [Gateway](#gateway): the Embedding Service's HTTP face.",
        "- [Ingestion API](#ingestion): collections, documents, tasks, search.",
        "",
    ]
    lines += OpenApiPage("gateway", gateway_document).render("Gateway")
    lines += OpenApiPage("ingestion", ingestion_document).render("Ingestion API")
    return "\n".join(lines).rstrip() + "\n"


# --- gRPC: proto descriptors ---------------------------------------------------------------

SCALARS = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in d.FieldDescriptorProto.Type.items()
    if name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}


class ProtoPage:
    """Renders the services, messages and enums of some proto files."""

    def __init__(self, files: Sequence[d.FileDescriptorProto]) -> None:
        self.files = files
        self.documented: set[str] = set()
        for f in files:
            self.documented |= {name for name, _, _ in self.messages(f)}
            self.documented |= {name for name, _, _ in self.enums(f)}

    @staticmethod
    def comments(f: d.FileDescriptorProto) -> Callable[[Sequence[int]], str]:
        by_path = {
            tuple(loc.path): "\n\n".join(
                comment_text(c) for c in (loc.leading_comments, loc.trailing_comments) if c.strip()
            )
            for loc in f.source_code_info.location
        }
        return lambda path: by_path.get(tuple(path), "")

    def messages(
        self, f: d.FileDescriptorProto
    ) -> Iterator[tuple[str, d.DescriptorProto, tuple[int, ...]]]:
        """(full name, message, source path) of every message, nested ones after their parent."""

        def walk(
            prefix: str, message: d.DescriptorProto, path: tuple[int, ...]
        ) -> Iterator[tuple[str, d.DescriptorProto, tuple[int, ...]]]:
            name = f"{prefix}.{message.name}"
            yield name, message, path
            for i, nested in enumerate(message.nested_type):
                if not nested.options.map_entry:
                    yield from walk(name, nested, (*path, NESTED_TYPE, i))

        for i, message in enumerate(f.message_type):
            yield from walk(f.package, message, (MESSAGE_TYPE, i))

    def enums(
        self, f: d.FileDescriptorProto
    ) -> Iterator[tuple[str, d.EnumDescriptorProto, tuple[int, ...]]]:
        for i, enum in enumerate(f.enum_type):
            yield f"{f.package}.{enum.name}", enum, (ENUM_TYPE, i)
        for name, message, path in self.messages(f):
            for i, enum in enumerate(message.enum_type):
                yield f"{name}.{enum.name}", enum, (*path, NESTED_ENUM, i)

    def type_link(self, type_name: str, package: str) -> str:
        name = type_name.removeprefix(".")
        if name in self.documented:
            return f"[{name.removeprefix(package + '.')}](#{name})"
        return code(name)

    def field_type(
        self, field: d.FieldDescriptorProto, message: d.DescriptorProto, package: str
    ) -> str:
        if field.type in SCALARS:
            base = code(SCALARS[field.type])
        else:
            base = self.type_link(field.type_name, package)
        if field.label == d.FieldDescriptorProto.LABEL_REPEATED:
            entry = next(
                (
                    n
                    for n in message.nested_type
                    if n.options.map_entry and field.type_name.endswith(f".{n.name}")
                ),
                None,
            )
            if entry is not None:
                key, value = (self.field_type(x, entry, package) for x in entry.field)
                return f"map<{key}, {value}>"
            return f"repeated {base}"
        if field.proto3_optional:
            return f"optional {base}"
        return base

    def render_service(
        self, f: d.FileDescriptorProto, index: int, comment: Callable[[Sequence[int]], str]
    ) -> list[str]:
        service = f.service[index]
        path = (SERVICE, index)
        full = f"{f.package}.{service.name}"
        lines = [anchor(full), f"### Service `{service.name}`", ""]
        if text := comment(path):
            lines += [text, ""]

        def stream(streaming: bool, type_name: str) -> str:
            link = self.type_link(type_name, f.package)
            return f"stream {link}" if streaming else link

        rows = [
            [
                f"[`{m.name}`](#{full}.{m.name})",
                stream(m.client_streaming, m.input_type),
                stream(m.server_streaming, m.output_type),
            ]
            for m in service.method
        ]
        lines += table(("method", "request", "response"), rows)
        for i, method in enumerate(service.method):
            lines += [
                anchor(f"{full}.{method.name}"),
                f"#### `{service.name}.{method.name}`",
                "",
                f"`/{full}/{method.name}`: {stream(method.client_streaming, method.input_type)}"
                f" → {stream(method.server_streaming, method.output_type)}",
                "",
            ]
            if text := comment((*path, METHOD, i)):
                lines += [text, ""]
        return lines

    def render_message(
        self,
        f: d.FileDescriptorProto,
        name: str,
        message: d.DescriptorProto,
        path: tuple[int, ...],
        comment: Callable[[Sequence[int]], str],
    ) -> list[str]:
        lines = [anchor(name), f"### `{name.removeprefix(f.package + '.')}`", ""]
        if text := comment(path):
            lines += [text, ""]
        if not message.field:
            return [*lines, "No fields.", ""]
        rows = []
        for i, field in enumerate(message.field):
            notes = comment((*path, FIELD, i))
            if field.HasField("oneof_index") and not field.proto3_optional:
                notes = f"One of `{message.oneof_decl[field.oneof_index].name}`. {notes}"
            rows.append(
                [
                    code(field.name),
                    str(field.number),
                    self.field_type(field, message, f.package),
                    notes,
                ]
            )
        return lines + table(("field", "number", "type", "description"), rows)

    def render_enum(
        self,
        f: d.FileDescriptorProto,
        name: str,
        enum: d.EnumDescriptorProto,
        path: tuple[int, ...],
        comment: Callable[[Sequence[int]], str],
    ) -> list[str]:
        lines = [anchor(name), f"### enum `{name.removeprefix(f.package + '.')}`", ""]
        if text := comment(path):
            lines += [text, ""]
        rows = [
            [code(v.name), str(v.number), comment((*path, ENUM_VALUE, i))]
            for i, v in enumerate(enum.value)
        ]
        return lines + table(("name", "number", "description"), rows)

    def render(self) -> list[str]:
        lines = []
        for f in self.files:
            comment = self.comments(f)
            lines += [anchor(f.name), f"## `{f.name}`", "", f"Package `{f.package}`.", ""]
            if f.dependency:
                lines += ["Imports: " + ", ".join(code(dep) for dep in f.dependency) + ".", ""]
            for i in range(len(f.service)):
                lines += self.render_service(f, i, comment)
            for name, message, path in self.messages(f):
                lines += self.render_message(f, name, message, path, comment)
            for name, enum, path in self.enums(f):
                lines += self.render_enum(f, name, enum, path, comment)
        return lines


def grpc_page(files: Sequence[d.FileDescriptorProto]) -> str:
    lines = [
        "# gRPC API reference",
        "",
        f"<!-- Generated by scripts/gen_docs.py; do not edit. Regenerate: {COMMAND} -->",
        "",
        "Generated from the protos under `protos/`, comments included. Send the API key as",
        "`authorization: Bearer <key>` or `x-api-key: <key>` metadata.",
        "",
        *[f"- [`{f.name}`](#{f.name})" for f in files],
        "",
    ]
    lines += ProtoPage(files).render()
    return "\n".join(lines).rstrip() + "\n"


# --- main ----------------------------------------------------------------------------------


def pages() -> dict[Path, str]:
    from gateway import openapi as gateway_openapi
    from ingestion import openapi as ingestion_openapi

    try:
        files = proto_files()
    except StaleStubsError as exc:
        raise SystemExit(f"gen_docs: {exc}") from None
    comments = comments_by_name(files)
    gateway, ingestion = gateway_openapi.generate(comments), ingestion_openapi.generate(comments)
    return {
        gateway_openapi.DOCUMENT_PATH.relative_to(ROOT): openapi_text(gateway),
        ingestion_openapi.DOCUMENT_PATH.relative_to(ROOT): openapi_text(ingestion),
        HTTP_DOC: http_page(gateway, ingestion),
        GRPC_DOC: grpc_page(files),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the files on disk are not up to date"
    )
    args = parser.parse_args(argv)
    stale = []
    for relative, text in pages().items():
        path = ROOT / relative
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale.append(relative)
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), f"{relative} (on disk)",
                f"{relative} (generated)", lineterm="", n=1,
            )  # fmt: skip
            print("\n".join(list(diff)[:40]), file=sys.stderr)
        else:
            path.write_text(text, encoding="utf-8", newline="\n")
            print(f"gen_docs: wrote {relative}")
    if stale:
        names = ", ".join(str(s) for s in stale)
        print(f"gen_docs: {names} out of date; run {COMMAND}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
