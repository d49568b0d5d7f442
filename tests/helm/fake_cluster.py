"""A stand-in Kubernetes API server on loopback, so that real Helm can render the chart offline.

helm-sdkpy exposes Helm's install action but no ``helm template`` (no client-only dry run): an
install first asks the cluster for its version and API groups, maps every rendered kind to a REST
resource, looks each object up, then creates it. This server answers exactly that much: discovery
for the kinds the chart uses, 404 for every lookup, an empty list for every list, and an echo for
every create or update. The templates are rendered by Helm's own engine, schema checks included;
nothing here interprets a template.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

# The Kubernetes version the server reports (Helm's .Capabilities.KubeVersion); the manifests are
# validated against the schemas of the same version.
KUBE_VERSION = "1.33.0"


@dataclass(frozen=True)
class Resource:
    group: str  # "" = the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def base_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


RESOURCES = (
    Resource("", "v1", "configmaps", "ConfigMap"),
    Resource("", "v1", "secrets", "Secret"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "serviceaccounts", "ServiceAccount"),
    Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim"),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("batch", "v1", "jobs", "Job"),
    Resource("batch", "v1", "cronjobs", "CronJob"),
    Resource("networking.k8s.io", "v1", "ingresses", "Ingress"),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
    Resource("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Resource("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor"),
)
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _discovery(path: str) -> dict[str, Any] | None:
    """The discovery document at ``path`` (legacy, non-aggregated format), or None."""
    if path == "/version":
        major, minor, _ = KUBE_VERSION.split(".")
        return {"major": major, "minor": minor, "gitVersion": f"v{KUBE_VERSION}", "platform": "linux/amd64"}
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        group_versions = sorted({(r.group, r.version) for r in RESOURCES if r.group})
        groups = []
        for group, version in group_versions:
            entry = {"groupVersion": f"{group}/{version}", "version": version}
            groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
    listed = [r for r in RESOURCES if r.base_path == path]
    if listed:
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": listed[0].group_version,
            "resources": [
                {
                    "name": r.plural,
                    "singularName": "",
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": _VERBS,
                }
                for r in listed
            ],
        }
    return None


def _collection_kind(path: str) -> str | None:
    """The kind of the collection ``path`` names (…/<plural> without an object name), or None."""
    for resource in RESOURCES:
        prefix = resource.base_path + "/"
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        if parts == [resource.plural] or (
            len(parts) == 3 and parts[0] == "namespaces" and parts[2] == resource.plural
        ):
            return resource.kind
    return None


@dataclass
class FakeApiServer:
    """Records what Helm created; ``requests`` helps when a render fails in an unexpected place."""

    created: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                self._send_raw(status, json.dumps(body).encode(), "application/json")

            def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _echo(self, status: int) -> None:
                """Answer a create or update with the object as sent (JSON, or protobuf for the
                Secret that Helm's default storage driver keeps the release in)."""
                path = self.path.split("?", 1)[0]
                server.requests.append(f"{self.command} {path}")
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                content_type = self.headers.get("Content-Type", "application/json")
                if self.command == "POST" and content_type.startswith("application/json"):
                    server.created.append(json.loads(data))
                self._send_raw(status, data, content_type)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                server.requests.append(f"GET {path}")
                document = _discovery(path)
                if document is not None:
                    self._send(200, document)
                    return
                kind = _collection_kind(path)
                if kind is not None:
                    self._send(200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {}, "items": []})
                    return
                self._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "NotFound",
                        "code": 404,
                    },
                )

            def do_POST(self) -> None:
                self._echo(201)

            def do_PUT(self) -> None:
                self._echo(200)

            def do_PATCH(self) -> None:
                self._echo(200)

        return Handler

    @contextmanager
    def serving(self) -> Iterator[str]:
        """Serve on an ephemeral loopback port; yield a kubeconfig (YAML text) that points at it.

        helm-sdkpy takes kubeconfig *content* with an in-memory discovery cache (a kubeconfig file
        would leave client-go's disk cache under ~/.kube/cache, keyed by this port)."""
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        thread = threading.Thread(target=httpd.serve_forever, name="fake-apiserver", daemon=True)
        thread.start()
        host, port = httpd.server_address[:2]
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://{host!s}:{port}"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "nobody"}}],
            "current-context": "fake",
            "users": [{"name": "nobody", "user": {}}],
        }
        try:
            # helm-sdkpy recognises content (not a path) by its leading "apiVersion:".
            yield yaml.safe_dump(kubeconfig, sort_keys=False)
        finally:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)
