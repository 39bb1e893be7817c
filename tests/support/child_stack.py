"""Our services started one by one as child processes, each with a log and a pid of its
own, so a benchmark can measure each apart (the one-command stack is tests/support/stack.py).

`start_child_stack` starts the services asked for on free ports, with the targets and URLs
that tie them together, and returns once each is ready: embedding servers SERVING, the
gateway and the ingestion API answering /readyz 200, workers consuming.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from embedpipe.redis_server import free_port
from tests.support.processes import Child, Children, grpc_serving, http_ready, wait_ready

#: What a worker logs once it consumes, model loaded.
_CONSUMING = {"embedding": b"worker started", "ingestion": b"callback consumer started"}


@dataclass
class ChildStack:
    children: Children
    embedding_servers: list[Child]
    grpc_target: str
    gateway_url: str = ""
    ingestion_url: str = ""

    def named(self, name: str) -> Child:
        return next(child for child in self.children.started if child.name == name)


def _logged(child: Child, line: bytes) -> bool:
    return line in child.log.read_bytes()


def start_child_stack(
    children: Children,
    env: dict[str, str],
    *,
    embedding_servers: int = 1,
    embedding_workers: int = 0,
    gateway: bool = False,
    ingestion: bool = False,
) -> ChildStack:
    """Start the services asked for with `env` (REDIS_URL, DATABASE_URL for ingestion, keys,
    ...), each ready when this returns. Several embedding servers get a port each and are
    reached round-robin through one target."""
    ports = [free_port() for _ in range(embedding_servers)]
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports) if ports else ""
    gateway_port, ingestion_port = free_port(), free_port()
    env = {
        **env,
        "EMBEDDING_GRPC_TARGET": target,
        "GATEWAY_PORT": str(gateway_port),
        "EMBEDDING_SERVICE_URL": f"http://127.0.0.1:{gateway_port}",
        "INGESTION_PORT": str(ingestion_port),
        "INGESTION_GRPC_PORT": str(free_port()),
    }
    servers = [
        children.start(
            f"embedding-serve-{n + 1}",
            ["-m", "embedding", "serve"],
            {**env, "EMBEDDING_GRPC_PORT": str(port)},
        )
        for n, port in enumerate(ports)
    ]
    workers = [
        children.start(f"embedding-worker-{n + 1}", ["-m", "embedding", "worker"], env)
        for n in range(embedding_workers)
    ]
    stack = ChildStack(children, servers, target)
    if gateway:
        stack.gateway_url = f"http://127.0.0.1:{gateway_port}"
        children.start("gateway", ["-m", "gateway"], env)
    if ingestion:
        stack.ingestion_url = f"http://127.0.0.1:{ingestion_port}"
        children.start("ingestion-api", ["-m", "ingestion", "api"], env)
        children.start("ingestion-worker", ["-m", "ingestion", "worker"], env)
    for server, port in zip(servers, ports, strict=True):
        serving = functools.partial(grpc_serving, f"127.0.0.1:{port}")
        wait_ready(server, serving, "gRPC health SERVING")
    for worker in workers:
        wait_ready(worker, functools.partial(_logged, worker, _CONSUMING["embedding"]), "consuming")
    if gateway:
        ready = functools.partial(http_ready, stack.gateway_url + "/readyz")
        wait_ready(stack.named("gateway"), ready, "GET /readyz 200")
    if ingestion:
        ready = functools.partial(http_ready, stack.ingestion_url + "/readyz")
        wait_ready(stack.named("ingestion-api"), ready, "GET /readyz 200")
        worker = stack.named("ingestion-worker")
        wait_ready(worker, functools.partial(_logged, worker, _CONSUMING["ingestion"]), "consuming")
    return stack
