"""Graceful shutdown on SIGTERM: stop being ready, keep serving for a while, then stop.

Kubernetes sends SIGTERM and, at about the same time, starts removing the pod from the Service's
endpoints; for a few seconds load balancers and kube-proxy still route new connections here. So on
the first SIGTERM the server only marks the app as draining (``/readyz`` answers 503) and goes on
serving everything, including requests that arrive late. After ``CXR_DRAIN_SECONDS`` uvicorn's own
graceful shutdown runs: the listener closes, idle keep-alive connections are closed, in-flight
requests finish. A second SIGTERM skips the rest of the drain; SIGINT (Ctrl-C) does not drain.

The process then exits 0: a drained shutdown is a success, and uvicorn would otherwise re-raise
the SIGTERM after shutting down, so the exit status would say "killed".
"""

import logging
import signal
import time
from collections.abc import Callable
from types import FrameType

import uvicorn

logger = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self._on_drain = on_drain
        self._drain_deadline: float | None = None
        self._drain_logged = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        if self._drain_deadline is not None or not self.started:
            # Second SIGTERM, or one before the model was even loaded: nothing to drain, stop now.
            self.should_exit = True
            return
        # Only flag setting here (this runs between two bytecodes of the event loop's thread);
        # readiness flips at once, the log line waits for the next tick.
        self._drain_deadline = time.monotonic() + self.drain_seconds
        self._on_drain()

    async def on_tick(self, counter: int) -> bool:
        # Called every 0.1 s by uvicorn's main loop, which stops when this returns True.
        if self._drain_deadline is not None and not self._drain_logged:
            self._drain_logged = True
            logger.info("SIGTERM: draining; /readyz answers 503", extra={"drain_seconds": self.drain_seconds})
        if self._drain_deadline is not None and time.monotonic() >= self._drain_deadline:
            if not self.should_exit:
                logger.info("drain period over: closing the listener and finishing in-flight requests")
            self.should_exit = True
        return await super().on_tick(counter)
