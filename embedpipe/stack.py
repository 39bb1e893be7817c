"""`python -m embedpipe.stack` (or `make up`): the whole stack on embedded defaults.

Starts a private redis-server (append-only, each write on disk before it is answered) and a
private PostgreSQL with pgvector, data under `EMBEDPIPE_DATA_DIR` (else the user's data
folder: embedpipe/data_dir.py), unless `REDIS_URL` / `DATABASE_URL` are set; then the embedding
server, `EMBEDDING_WORKERS` workers, the HTTP gateway, the ingestion API and
`INGESTION_WORKERS` ingestion workers, all on the bundled local model: no vendor key, no
network. Unless API keys are
configured, it makes a dev key for tenant "default" (kept in the data folder, so it stays
the same across starts). It waits until every service is ready, prints where things are
and the key, restarts a service that dies, and on Ctrl-C or SIGTERM stops everything
gracefully (workers finish the batch in hand before they exit).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embedpipe.auth import SERVICE_TENANT, hash_key, new_key
from embedpipe.data_dir import VARIABLE as DATA_DIR_VARIABLE
from embedpipe.data_dir import data_dir
from embedpipe.envconfig import read_env, settings_or_exit, variable
from embedpipe.logs import configure_logging
from embedpipe.postgres_server import PostgresServer
from embedpipe.redis_server import RedisServer, free_port

log = logging.getLogger("embedpipe.stack")

STOP_TIMEOUT_S = 15.0
DEV_TENANT = "default"


@dataclass
class Service:
    """One supervised child process."""

    name: str
    args: list[str]
    #: Settings of this service alone (e.g. the port of one of several servers).
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        # Own session: a Ctrl-C reaches only the stack, which then stops children in order.
        self.process = subprocess.Popen(
            [sys.executable, *self.args], env={**env, **self.env}, start_new_session=True
        )
        log.info("started service=%s pid=%d", self.name, self.process.pid)


def _wait_serving(port: int, timeout_s: float) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return True
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return False


def _wait_http_ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _kept_key(data_dir: Path, name: str) -> str:
    """An API key made once and kept (owner-readable only) in `data_dir/name`."""
    path = data_dir / name
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = new_key()
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return key


#: Services that serve `GET /metrics` on a port of their own (the gateway and the
#: ingestion API serve it on theirs).
_OWN_METRICS_PORT = ("embedding-server", "embedding-worker", "ingestion-worker")


def _services(grpc_ports: list[int], workers: int, ingestion_workers: int) -> list[Service]:
    return [
        *(
            Service(
                f"embedding-server-{i + 1}" if len(grpc_ports) > 1 else "embedding-server",
                ["-m", "embedding", "serve"],
                {"EMBEDDING_GRPC_PORT": str(port)},
            )
            for i, port in enumerate(grpc_ports)
        ),
        *(
            Service(f"embedding-worker-{i + 1}", ["-m", "embedding", "worker"])
            for i in range(workers)
        ),
        Service("gateway", ["-m", "gateway"]),
        Service("ingestion-api", ["-m", "ingestion", "api"]),
        *(
            Service(f"ingestion-worker-{i + 1}", ["-m", "ingestion", "worker"])
            for i in range(ingestion_workers)
        ),
    ]


def _assign_metrics_ports(services: list[Service], first: int) -> None:
    """METRICS_PORT of each service without an HTTP front: `first`, `first` + 1, ... (0:
    free ports)."""
    own = [s for s in services if s.name.startswith(_OWN_METRICS_PORT)]
    for number, service in enumerate(own):
        service.env["METRICS_PORT"] = str(first + number if first else free_port())


def _metrics_urls(services: list[Service], env: dict[str, str]) -> list[str]:
    urls = [
        f"gateway http://127.0.0.1:{env['GATEWAY_PORT']}/metrics",
        f"ingestion-api http://127.0.0.1:{env['INGESTION_PORT']}/metrics",
    ]
    urls += [
        f"{s.name} http://127.0.0.1:{s.env['METRICS_PORT']}/metrics"
        for s in services
        if "METRICS_PORT" in s.env
    ]
    return urls


def _banner(
    env: dict[str, str], data_dir: Path, dev_key: str | None, own_pg: bool, metrics: list[str]
) -> str:
    """What a user needs to start using the stack."""
    keys = (
        f'{dev_key}  (tenant "{DEV_TENANT}"; kept in {data_dir / "dev-api-key"})'
        if dev_key
        else "from EMBEDPIPE_API_KEYS / EMBEDPIPE_API_KEYS_FILE"
    )
    postgres = f"private, data in {data_dir / 'postgres'}" if own_pg else "DATABASE_URL"
    rows = [
        ("ingestion API", f"http://127.0.0.1:{env['INGESTION_PORT']}"),
        ("web console", f"http://127.0.0.1:{env['INGESTION_PORT']}/console"),
        ("HTTP gateway", env["EMBEDDING_SERVICE_URL"]),
        ("gRPC IngestionService", f"127.0.0.1:{env['INGESTION_GRPC_PORT']}"),
        ("gRPC EmbeddingService", env["EMBEDDING_GRPC_TARGET"]),
        ("API key", keys),
        ("Redis", env["REDIS_URL"]),
        ("PostgreSQL", postgres),
    ]
    rows += [("metrics" if n == 0 else "", url) for n, url in enumerate(metrics)]
    lines = [f"  {name:<22} {value}" for name, value in rows]
    return "\nembedpipe is up\n" + "\n".join(lines) + "\nCtrl-C stops everything.\n"


def _stop_all(services: list[Service]) -> None:
    for service in services:
        if service.process and service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for service in services:
        if service.process is None:
            continue
        try:
            service.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("service=%s did not stop in time; killing it", service.name)
            service.process.kill()
            service.process.wait()


@dataclass(frozen=True)
class StackSettings:
    """What `make up` itself reads; every service reads its own settings too."""

    data_dir: Annotated[Path, variable(DATA_DIR_VARIABLE)] = field(
        default_factory=lambda: data_dir({})
    )
    redis_port: Annotated[int, variable("EMBEDPIPE_REDIS_PORT", ge=0, le=65535)] = 0
    embedding_workers: Annotated[int, variable("EMBEDDING_WORKERS", ge=1)] = 1
    embedding_servers: Annotated[int, variable("EMBEDDING_SERVERS", ge=1)] = 1
    grpc_port: Annotated[int, variable("EMBEDDING_GRPC_PORT", ge=1, le=65535)] = 50051
    gateway_port: Annotated[int, variable("GATEWAY_PORT", ge=1, le=65535)] = 8080
    ingestion_port: Annotated[int, variable("INGESTION_PORT", ge=1, le=65535)] = 8090
    ingestion_grpc_port: Annotated[int, variable("INGESTION_GRPC_PORT", ge=1, le=65535)] = 50061
    ingestion_workers: Annotated[int, variable("INGESTION_WORKERS", ge=1)] = 1
    #: The first of the ports the embedding servers and the workers serve metrics on, one
    #: after the other (0: free ports).
    metrics_port: Annotated[int, variable("EMBEDPIPE_METRICS_PORT", ge=0, le=65535)] = 9100
    log_level: Annotated[str, variable("LOG_LEVEL")] = "INFO"


def _start_infrastructure(
    env: dict[str, str], data_dir: Path, redis_port: int
) -> tuple[RedisServer | None, PostgresServer | None, str | None]:
    """Private Redis and PostgreSQL unless configured, and dev keys unless configured;
    `env` is updated for the children."""
    redis: RedisServer | None = None
    postgres: PostgresServer | None = None
    if not env.get("REDIS_URL"):
        # Durable accepts: an accepted job is on disk before the gateway answers 202, so it
        # outlives a machine crash too (README, Guarantees).
        redis = RedisServer(data_dir / "redis", port=redis_port, appendfsync="always")
        redis.start()
        env["REDIS_URL"] = redis.url
        log.info("private redis-server url=%s data=%s", redis.url, redis.data_dir)
    if not env.get("DATABASE_URL"):
        postgres = PostgresServer(data_dir / "postgres")
        postgres.start()
        env["DATABASE_URL"] = postgres.url
        log.info("private PostgreSQL with pgvector data=%s", data_dir / "postgres")
    dev_key = None
    if not env.get("EMBEDPIPE_API_KEYS") and not env.get("EMBEDPIPE_API_KEYS_FILE"):
        dev_key = _kept_key(data_dir, "dev-api-key")
        service_key = _kept_key(data_dir, "service-api-key")
        env["EMBEDPIPE_API_KEYS"] = (
            f"{DEV_TENANT}:{hash_key(dev_key)},{SERVICE_TENANT}:{hash_key(service_key)}"
        )
        env["INGESTION_SERVICE_KEY"] = service_key
    return redis, postgres, dev_key


def main() -> int:
    env = dict(os.environ)
    settings = settings_or_exit(lambda: read_env(StackSettings, env))
    configure_logging(settings.log_level)
    folder = settings.data_dir.resolve()
    servers, grpc_port = settings.embedding_servers, settings.grpc_port
    gateway_port, ingestion_port = settings.gateway_port, settings.ingestion_port

    stopping = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("received %s; stopping the stack", signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    try:
        redis, postgres, dev_key = _start_infrastructure(env, folder, settings.redis_port)
    except FileNotFoundError as exc:  # no redis-server: how to get one
        log.error("%s", exc)
        return 1
    env["EMBEDDING_GRPC_PORT"] = str(grpc_port)
    # Several embedding servers (EMBEDDING_SERVERS) listen on consecutive ports; the gateway
    # spreads its calls over them round-robin.
    grpc_ports = [grpc_port + i for i in range(servers)]
    env["EMBEDDING_GRPC_TARGET"] = (
        f"127.0.0.1:{grpc_port}"
        if servers == 1
        else "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in grpc_ports)
    )
    env["GATEWAY_PORT"] = str(gateway_port)
    env["INGESTION_PORT"] = str(ingestion_port)
    env["INGESTION_GRPC_PORT"] = str(settings.ingestion_grpc_port)
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    ingestion_url = f"http://127.0.0.1:{ingestion_port}"
    env["EMBEDDING_SERVICE_URL"] = gateway_url
    services = _services(grpc_ports, settings.embedding_workers, settings.ingestion_workers)
    _assign_metrics_ports(services, settings.metrics_port)
    try:
        for service in services:
            service.start(env)
        if not (
            all(_wait_serving(port, 120) for port in grpc_ports)
            and _wait_http_ready(gateway_url + "/readyz", 60)
            and _wait_http_ready(ingestion_url + "/readyz", 60)
        ):
            log.error("the stack did not become ready; see the logs above")
            return 1
        banner = _banner(env, folder, dev_key, postgres is not None, _metrics_urls(services, env))
        print(banner, flush=True)
        while not stopping:
            for service in services:
                code = service.process.poll() if service.process else None
                if code is not None and not stopping:
                    log.error("service=%s exited code=%s; restarting it", service.name, code)
                    service.start(env)
            time.sleep(0.5)
    finally:
        _stop_all(services)
        if postgres is not None:
            postgres.stop()
        if redis is not None:
            redis.stop()
        log.info("stack stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
