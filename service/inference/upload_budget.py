"""Upload bytes the service holds at once, across requests: the uploads' own budget, beside the
prediction slots (``admission``). Every upload reserves its bytes - its Content-Length up front, or a
chunked body as it arrives - and hands them back when its request ends; past the budget
(``CXR_UPLOAD_BYTES_IN_FLIGHT``) a request is refused at once with 503 + Retry-After."""

from types import TracebackType

from service.errors import ServiceError
from service.inference.admission import RETRY_AFTER_S
from service.observability.metrics import Metrics


class UploadBudget:
    """Upload bytes the service holds at once, across requests (one event loop: no lock needed)."""

    def __init__(self, max_bytes: int, metrics: Metrics | None = None) -> None:
        self.max_bytes = max_bytes
        self.reserved = 0
        self._metrics = metrics

    def add(self, size: int) -> None:
        self.reserved += size
        if self._metrics is not None:
            self._metrics.upload_bytes_in_flight.set(self.reserved)

    def lease(self) -> "UploadLease":
        return UploadLease(self)


class UploadLease:
    """One request's share of the budget: grows as its body does, handed back when the request ends."""

    def __init__(self, budget: UploadBudget) -> None:
        self._budget = budget
        self.held = 0

    def cover(self, size: int) -> None:
        """Make the lease at least ``size`` bytes, or refuse the request (503) if the budget is spent."""
        extra = size - self.held
        if extra <= 0:
            return
        if self._budget.reserved + extra > self._budget.max_bytes:
            raise ServiceError(
                "overloaded",
                "Too many uploads in progress (CXR_UPLOAD_BYTES_IN_FLIGHT); retry after Retry-After.",
                503,
                headers={"Retry-After": str(RETRY_AFTER_S), "Connection": "close"},
            )
        self._budget.add(extra)
        self.held = size

    async def __aenter__(self) -> "UploadLease":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._budget.add(-self.held)
        self.held = 0
