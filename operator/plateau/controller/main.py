"""`plateau-operator`: run the Kopf operator with settings from flags and environment."""

from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

import kopf
from prometheus_client import start_http_server

from plateau.controller import health
from plateau.controller.config import parse_settings
from plateau.controller.runtime import Runtime, api_client


def main(argv: Optional[Sequence[str]] = None) -> int:
    settings = parse_settings(argv)
    configure_logging(settings.log_level, settings.log_format)
    import plateau.controller.handlers  # noqa: F401  (registers the handlers with kopf)

    start_http_server(settings.metrics_port)
    runtime = Runtime(settings, api_client())
    health.serve(runtime.heartbeat, settings.metrics_port + 1)  # /healthz: cycles end (not kopf's, which only answers)
    kopf.run(
        standalone=True,  # no kopf peering: the Lease in plateau.controller.leader decides who acts
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        memo=kopf.Memo(runtime=runtime),
    )
    return 0


def configure_logging(level: str, log_format: str) -> None:
    """The root logger at `level`, writing text lines or (kopf's formatter) one JSON object a line."""
    if log_format == "json":
        kopf.configure(debug=level == "debug", log_format=kopf.LogFormat.JSON)
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(level.upper())
    # One line per watch event is noise, except when debugging.
    logging.getLogger("kopf.objects").setLevel(logging.NOTSET if level == "debug" else logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
