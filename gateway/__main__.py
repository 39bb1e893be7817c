"""`python -m gateway` runs the HTTP gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import os

from embedpipe.grpc_engine import GRPC_EXPERIMENTS

os.environ.setdefault("GRPC_EXPERIMENTS", GRPC_EXPERIMENTS)  # before gRPC loads

import logging
import sys

from aiohttp import web

from embedpipe.envconfig import settings_or_exit
from embedpipe.heap import freeze_heap_once_started
from embedpipe.logs import configure_logging
from embedpipe.tracing import traced_process
from gateway.app import create_app
from gateway.settings import GatewaySettings

log = logging.getLogger("gateway")


def main() -> int:
    settings = settings_or_exit(GatewaySettings.from_env)
    configure_logging(settings.log_level)
    log.info(
        "gateway listening host=%s port=%d upstream=%s keys_checked_here=%s",
        settings.host, settings.port, settings.embedding_target, settings.keys.enabled,
    )  # fmt: skip
    # aiohttp's runner handles SIGTERM/SIGINT: stop accepting, finish requests, clean up.
    with traced_process("embedpipe-gateway"):
        web.run_app(
            freeze_heap_once_started(create_app(settings)),
            host=settings.host,
            port=settings.port,
            access_log=None,
            print=None,
            shutdown_timeout=10,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
