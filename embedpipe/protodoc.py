"""The protos with their comments, for what is generated from them at build time (the gRPC
and HTTP references, the OpenAPI documents; scripts/gen_docs.py).

The generated `*_pb2` modules carry no comments, so the protos are compiled again by
grpc_tools' protoc (the one that generated the stubs) with --include_source_info, and
checked against the stubs: nothing is described that the stubs do not match.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from google.protobuf import descriptor_pb2 as d

ROOT = Path(__file__).resolve().parent.parent
STUBS_PACKAGES = ("embedpipe.embedding.v1", "embedpipe.ingestion.v1")

# Field numbers of descriptor.proto, the steps of SourceCodeInfo.Location.path.
MESSAGE_TYPE, ENUM_TYPE, SERVICE = 4, 5, 6  # in FileDescriptorProto
FIELD, NESTED_TYPE, NESTED_ENUM = 2, 3, 4  # in DescriptorProto
ENUM_VALUE = 2  # in EnumDescriptorProto
METHOD = 2  # in ServiceDescriptorProto


class StaleStubsError(Exception):
    """The generated stubs do not match protos/."""


def generated_files() -> list[d.FileDescriptorProto]:
    """The FileDescriptorProto of every generated `*_pb2` module, by proto file name."""
    files = []
    for package_name in STUBS_PACKAGES:
        package = importlib.import_module(package_name)
        for found in pkgutil.iter_modules(package.__path__):
            if found.name.endswith("_pb2"):
                module = importlib.import_module(f"{package_name}.{found.name}")
                files.append(d.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb))
    return sorted(files, key=lambda f: f.name)


def compiled_files(names: Sequence[str]) -> list[d.FileDescriptorProto]:
    """The protos compiled with their comments (SourceCodeInfo) by grpc_tools' protoc."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "protos.binpb"
        subprocess.run(
            [
                sys.executable, "-m", "grpc_tools.protoc", "-Iprotos", "--include_source_info",
                f"--descriptor_set_out={out}", *names,
            ],
            cwd=ROOT,
            check=True,
        )  # fmt: skip
        files = d.FileDescriptorSet.FromString(out.read_bytes()).file
    return sorted(files, key=lambda f: f.name)


def proto_files() -> list[d.FileDescriptorProto]:
    """The generated modules' protos with comments; StaleStubsError if the stubs differ."""
    generated = generated_files()
    compiled = compiled_files([f.name for f in generated])
    for built, shipped in zip(compiled, generated, strict=True):
        bare = d.FileDescriptorProto()
        bare.CopyFrom(built)
        bare.ClearField("source_code_info")
        if bare != shipped:
            raise StaleStubsError(
                f"the stubs of {built.name} differ from protos/; run scripts/gen_protos.sh first"
            )
    return compiled


def comment_text(text: str) -> str:
    """A comment without its leading space per line and surrounding blank lines."""
    lines = [line.removeprefix(" ").rstrip() for line in text.splitlines()]
    return "\n".join(lines).strip("\n")


def _named_paths(f: d.FileDescriptorProto) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(full name, source path) of every service, method, message, field and enum."""

    def message(
        prefix: str, m: d.DescriptorProto, path: tuple[int, ...]
    ) -> Iterator[tuple[str, tuple[int, ...]]]:
        name = f"{prefix}.{m.name}"
        yield name, path
        for i, field in enumerate(m.field):
            yield f"{name}.{field.name}", (*path, FIELD, i)
        for i, nested in enumerate(m.nested_type):
            yield from message(name, nested, (*path, NESTED_TYPE, i))
        for i, enum in enumerate(m.enum_type):
            yield f"{name}.{enum.name}", (*path, NESTED_ENUM, i)

    for i, m in enumerate(f.message_type):
        yield from message(f.package, m, (MESSAGE_TYPE, i))
    for i, enum in enumerate(f.enum_type):
        yield f"{f.package}.{enum.name}", (ENUM_TYPE, i)
    for i, service in enumerate(f.service):
        name = f"{f.package}.{service.name}"
        yield name, (SERVICE, i)
        for j, method in enumerate(service.method):
            yield f"{name}.{method.name}", (SERVICE, i, METHOD, j)


def comments_by_name(files: Sequence[d.FileDescriptorProto]) -> dict[str, str]:
    """The comment of every described element by full name (`pkg.Message.field`,
    `pkg.Service.Method`): leading and trailing comments, paragraphs apart."""
    found: dict[str, str] = {}
    for f in files:
        by_path = {
            tuple(loc.path): "\n\n".join(
                comment_text(c) for c in (loc.leading_comments, loc.trailing_comments) if c.strip()
            )
            for loc in f.source_code_info.location
        }
        for name, path in _named_paths(f):
            if text := by_path.get(path):
                found[name] = text
    return found
