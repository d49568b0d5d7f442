"""``python -m service`` / ``cxr-serve``: validate settings, configure logging, run uvicorn."""

import logging
import os
import sys

from pydantic import ValidationError

from service.lifecycle.drain import DrainingServer
from service.lifecycle.state import context_of
from service.main import create_app
from service.observability.audit import AuditKeyError
from service.observability.logs import setup_logging
from service.security.access import AccessConfigError
from service.server import uvicorn_config
from service.settings import PacsSettings, Settings, is_loopback, unknown_cxr_variables

logger = logging.getLogger(__name__)

EXIT_BAD_SETTINGS = 2
EXIT_STARTUP_FAILED = 3


def main() -> int:
    try:
        settings = Settings()
        pacs_settings = PacsSettings()
    except ValidationError as exc:
        # Before logging is set up, and about environment variables only: plain text to stderr.
        print(f"cxr-serve: invalid CXR_* configuration:\n{exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    setup_logging(settings.log_level)
    unknown = unknown_cxr_variables(os.environ)
    if unknown:  # names only: values are not logged
        logger.warning("ignoring unknown CXR_* environment variables", extra={"variables": unknown})
    try:
        app = create_app(settings, pacs_settings)
    except (AccessConfigError, AuditKeyError) as exc:
        # Our own messages: paths and line numbers, never key material.
        logger.critical("refusing to start: %s", exc)
        return EXIT_BAD_SETTINGS
    if not is_loopback(settings.host):
        logger.warning("listening on a non-loopback address (CXR_HOST)", extra={"host": settings.host})
    config = uvicorn_config(app, host=settings.host, port=settings.port, log_level=settings.log_level)
    context = context_of(app)

    def begin_drain() -> None:
        context.draining = True

    server = DrainingServer(config, settings.drain_seconds, on_drain=begin_drain)
    server.run()  # raises SystemExit(3) itself if the lifespan (model validation) fails
    if not server.started:
        logger.critical("server did not start")
        return EXIT_STARTUP_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
