"""`python -m gateway` runs the HTTP gateway until SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import sys

from aiohttp import web

from embedpipe.envconfig import ConfigError
from embedpipe.logs import configure_logging
from gateway.app import create_app
from gateway.settings import GatewaySettings

log = logging.getLogger("gateway")


def main() -> int:
    try:
        settings = GatewaySettings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    log.info(
        "gateway listening host=%s port=%d upstream=%s",
        settings.host, settings.port, settings.embedding_target,
    )  # fmt: skip
    # aiohttp's runner handles SIGTERM/SIGINT: stop accepting, finish requests, clean up.
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        access_log=None,
        print=None,
        shutdown_timeout=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
