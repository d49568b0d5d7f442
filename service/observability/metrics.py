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
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
INFERENCE_ERROR_KINDS = ("runtime", "output")  # ORT raised / the outputs failed their checks
RELOAD_OUTCOMES = ("succeeded", "refused")
AUTH_FAILURE_REASONS = ("missing_api_key", "invalid_api_key", "forbidden")
DEADLINE_STEPS = ("queue", "upload", "processing")
# Where a prediction's time goes, in the order it passes them (docs/performance.md). A *_wait stage
# is time queued: for a slot, for a worker thread, for a batch to start, for the event loop to
# resume the request once its batch is done.
PREDICT_STAGES = (
    "upload",  # the body received and its multipart parsed
    "admission_wait",
    "decode_wait",
    "decode",  # decode, model input and overlay background, on a worker thread
    "batch_wait",  # from joining the batch queue to its session.run starting
    "inference",  # the session.run of its batch
    "result_wait",
    "overlay_wait",
    "colour_blend",  # CAM normalised, resized, colour-mapped and blended over the film
    "png_encode",
    "base64",
    "json",  # the response model built and serialised
)
_STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


def method_label(method: str) -> str:
    return method if method in _KNOWN_METHODS else "OTHER"


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app, so tests can run many)."""

    def __init__(self) -> None:
        """Declares every metric, one statement each: long, but a flat list is where an operator
        looks up a metric's name, help text, labels and buckets, so it is kept in one place."""
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
            "ONNX Runtime session.run time of the batch that served each prediction (decoding and overlay "
            "excluded).",
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
        self.inference_batch_size = Histogram(
            "cxr_inference_batch_size",
            "Films in the ONNX Runtime run that served each prediction (dynamic micro-batching).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.predict_stage = Histogram(
            "cxr_predict_stage_seconds",
            "Time each successful prediction spent in each stage of the request path (upload, queues, "
            "decode, batch, inference, overlay, PNG, JSON); the rest of a request is HTTP and routing.",
            ("stage",),
            buckets=_STAGE_BUCKETS,
            registry=self.registry,
        )
        # Bound once: a labels() lookup per observation would cost more than the observation.
        self.predict_stages = {stage: self.predict_stage.labels(stage) for stage in PREDICT_STAGES}
        self.model_info = Gauge(
            "cxr_model_info",
            "The loaded model (value is always 1).",
            ("name", "version", "onnx_sha256", "execution_provider"),
            registry=self.registry,
        )
        # Access control and admission (service/security/access.py, service/inference/admission.py).
        self.auth_failures = Counter(
            "cxr_auth_failures",
            "Requests refused by access control: 401 missing/invalid key, 403 key without the scope.",
            ("reason",),
            registry=self.registry,
        )
        self.admission_running = Gauge(
            "cxr_admission_running",
            "Predictions holding a slot: decoding, running the model or building the answer.",
            registry=self.registry,
        )
        self.admission_waiting = Gauge(
            "cxr_admission_waiting",
            "Predictions queued for a slot, their upload read.",
            registry=self.registry,
        )
        self.upload_bytes_in_flight = Gauge(
            "cxr_upload_bytes_in_flight",
            "Upload bytes reserved by requests receiving their body or waiting for a slot.",
            registry=self.registry,
        )
        self.admission_rejected = Counter(
            "cxr_admission_rejected",
            "Predictions refused at once with 503 + Retry-After because the queue was full.",
            registry=self.registry,
        )
        self.deadline_exceeded = Counter(
            "cxr_deadline_exceeded",
            "Predictions past CXR_REQUEST_TIMEOUT_S, by step: queue (503), upload (408), processing (504).",
            ("step",),
            registry=self.registry,
        )
        for reason in AUTH_FAILURE_REASONS:
            self.auth_failures.labels(reason)
        for step in DEADLINE_STEPS:
            self.deadline_exceeded.labels(step)
        self.execution_provider_fallback = Gauge(
            "cxr_execution_provider_fallback",
            "1 when CXR_EXECUTION_PROVIDER=auto did not get CUDA and runs on the CPU (see /readyz for why).",
            registry=self.registry,
        )
        self.inference_errors = Counter(
            "cxr_inference_errors",
            "Predictions answered 500 inference_failed: ONNX Runtime raised, or returned unusable outputs.",
            ("kind",),
            registry=self.registry,
        )
        self.model_reloads = Counter(
            "cxr_model_reloads", "Hot reloads, by outcome.", ("outcome",), registry=self.registry
        )
        for kind in INFERENCE_ERROR_KINDS:
            self.inference_errors.labels(kind)
        for outcome in RELOAD_OUTCOMES:
            self.model_reloads.labels(outcome)

    def model_loaded(
        self,
        name: str,
        version: str,
        sha256: str,
        provider: str,
        class_names: list[str],
        *,
        provider_fallback: bool = False,
    ) -> None:
        # One series only: after a hot reload the previous model's labels must not linger as "loaded".
        self.model_info.clear()
        self.model_info.labels(name, version, sha256, provider).set(1)
        self.execution_provider_fallback.set(1 if provider_fallback else 0)
        for class_name in class_names:  # export zeros, so rate() works before the first positive
            self.predictions.labels(class_name)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method_label(method), str(status))
        self.http_requests.labels(*labels).inc()
        self.http_duration.labels(*labels).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
