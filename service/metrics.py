"""Prometheus metrics, in a registry owned by one app (several apps can coexist in a process).

Label values come from closed sets only - route templates, known methods, status codes, class names,
error codes - so no client input can create new time series.
"""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

UNMATCHED_ROUTE = "unmatched"
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def method_label(method: str) -> str:
    return method if method in _KNOWN_METHODS else "OTHER"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("route", "method", "status")
        self.http_requests = Counter(
            "cxr_http_requests", "HTTP requests served.", labels, registry=self.registry
        )
        self.http_duration = Histogram(
            "cxr_http_request_duration_seconds",
            "Time from request start to the end of the response.",
            labels,
            buckets=_HTTP_BUCKETS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            "cxr_inference_duration_seconds",
            "ONNX Runtime session.run time for one film (decoding and overlay excluded).",
            buckets=_INFERENCE_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "cxr_predictions",
            "Predictions returned, by predicted class.",
            ("class_name",),
            registry=self.registry,
        )
        self.rejected_inputs = Counter(
            "cxr_rejected_inputs",
            "Uploads refused with a 4xx, by error code.",
            ("reason",),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "cxr_model_info",
            "The loaded model (value is always 1).",
            ("name", "version", "onnx_sha256", "execution_provider"),
            registry=self.registry,
        )

    def model_loaded(
        self, name: str, version: str, sha256: str, provider: str, class_names: list[str]
    ) -> None:
        self.model_info.labels(name, version, sha256, provider).set(1)
        for class_name in class_names:  # export zeros, so rate() works before the first positive
            self.predictions.labels(class_name)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method_label(method), str(status))
        self.http_requests.labels(*labels).inc()
        self.http_duration.labels(*labels).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
