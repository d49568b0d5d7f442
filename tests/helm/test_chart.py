"""The Helm chart (helm/cxr-triage), linted and rendered by real Helm for the default values and every
ci/*.yaml scenario, its manifests validated against Kubernetes' own JSON schemas, and the properties
the service depends on asserted on what Helm actually rendered.

Tools: helm-sdkpy (Helm's Go library; rendering is a real install against tests/helm/fake_cluster.py)
and kubernetes-validate (the Kubernetes API schemas, shipped in the package). Without either, the
tests that need it skip and say why.
"""

import base64
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml

from tests.helm.chart_tools import (
    CHART,
    LINT_WARNING,
    NAMESPACE,
    Helm,
    Manifest,
    Release,
    coalesce,
    scenario_values,
    scenarios,
)
from tests.helm.fake_cluster import KUBE_VERSION, FakeApiServer
from tests.tools import import_tool, missing_tool

sdk: ModuleType = import_tool(
    "helm_sdkpy",
    "helm-sdkpy is not installed (it declares Python >= 3.12: "
    "pip install --ignore-requires-python helm-sdkpy)",
)

SCENARIOS = scenarios()
GPU = "nvidia.com/gpu"
SERVER_CONTAINER = "cxr-triage"
# Kinds without a schema in kubernetes-validate: it ships the Kubernetes API's own schemas only,
# and the Prometheus Operator's CRD schema is not available offline. Checked structurally below.
CRD_KINDS = {"ServiceMonitor"}
# Fields of a ServiceMonitor endpoint the chart may set (monitoring.coreos.com/v1 Endpoint).
SERVICE_MONITOR_ENDPOINT_FIELDS = {"port", "path", "scheme", "interval", "scrapeTimeout", "authorization"}


# --- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Helm]:
    try:
        sdk.Configuration()  # loads the bundled Go library
    except sdk.HelmLibraryNotFound as exc:
        missing_tool(f"helm-sdkpy's bundled Helm library does not load on this machine: {exc}")
    with FakeApiServer().serving() as kubeconfig:
        yield Helm(sdk, kubeconfig, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def releases(helm: Helm) -> dict[str, Release]:
    return {name: helm.render(scenario_values(name)) for name in SCENARIOS}


@pytest.fixture(scope="session")
def defaults() -> dict[str, Any]:
    loaded = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def server_pod(release: Release) -> dict[str, Any]:
    return pod_spec(release.one("Deployment"))


def server_container(release: Release) -> dict[str, Any]:
    (container,) = [c for c in server_pod(release)["containers"] if c["name"] == SERVER_CONTAINER]
    found: dict[str, Any] = container
    return found


def settings_env(release: Release) -> dict[str, str]:
    """The CXR_* variables the service container gets (its ConfigMap, via envFrom)."""
    container = server_container(release)
    (source,) = container["envFrom"]
    config_map = release.one("ConfigMap")
    assert source["configMapRef"]["name"] == config_map["metadata"]["name"]
    data: dict[str, str] = config_map["data"]
    return data


def http_service(release: Release) -> Manifest:
    """The HTTP Service (with pacs.enabled a second one, "<fullname>-dicom", exposes the DICOM port)."""
    (service,) = [s for s in release.of_kind("Service") if not s["metadata"]["name"].endswith("-dicom")]
    return service


def volumes(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in pod.get("volumes", [])}


def mount_at(container: dict[str, Any], path: str) -> dict[str, Any]:
    found = [m for m in container.get("volumeMounts", []) if m["mountPath"] == path]
    assert len(found) == 1, f"{container['name']}: expected one mount at {path}, found {found}"
    mount: dict[str, Any] = found[0]
    return mount


def workloads(release: Release) -> list[Manifest]:
    return [m for m in release.manifests if m["kind"] in {"Deployment", "CronJob", "Job"}]


# --- Helm lint ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_reports_no_warnings_or_errors(helm: Helm, scenario: str) -> None:
    messages = helm.lint(scenario_values(scenario))
    problems = [str(m) for m in messages if m.severity >= LINT_WARNING]
    assert not problems, f"helm lint ({scenario}): {problems} (render the scenario to see the message)"


def test_lint_catches_a_broken_value(helm: Helm) -> None:
    """The lint above is live: the same call reports an error for a value the schema refuses."""
    messages = helm.lint({"replicaCount": -1})
    assert any(m.severity > LINT_WARNING and m.path == "values.yaml" for m in messages), messages


# --- Kubernetes schemas ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kubernetes_validate() -> ModuleType:
    module: ModuleType = import_tool("kubernetes_validate", "kubernetes-validate is not installed")
    return module


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_manifests_match_the_kubernetes_schemas(
    releases: dict[str, Release], kubernetes_validate: ModuleType, scenario: str
) -> None:
    validated = []
    for manifest in releases[scenario].manifests:
        if manifest["kind"] in CRD_KINDS:
            continue
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(part) for part in exc.path)
            pytest.fail(
                f"{scenario}: {name} is invalid for Kubernetes {KUBE_VERSION} at {path}: {exc.message}"
            )
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{scenario}: {name}: {exc.message}")
        validated.append(manifest["kind"])
    assert {"Deployment", "Service", "ConfigMap"} <= set(validated)


def test_schema_validation_is_strict(releases: dict[str, Release], kubernetes_validate: ModuleType) -> None:
    """The validation above is live: a misspelt field or a wrong type in a rendered Deployment fails."""
    deployment = releases["default"].one("Deployment")
    misspelt = json.loads(json.dumps(deployment))
    pod_spec(misspelt)["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    wrong_type = json.loads(json.dumps(deployment))
    pod_spec(wrong_type)["terminationGracePeriodSeconds"] = "forty-five"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("scenario", ["autoscaling-values", "metrics-open-values"])
def test_service_monitor_scrapes_the_service_port(releases: dict[str, Release], scenario: str) -> None:
    """Structural check of the one CRD (no schema offline): it selects the Service, scrapes its named
    port at /metrics, and sends a bearer token exactly when the service requires a metrics key."""
    release = releases[scenario]
    monitor, service = release.one("ServiceMonitor"), release.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) == {"namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= SERVICE_MONITOR_ENDPOINT_FIELDS
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert (endpoint["path"], endpoint["scheme"]) == ("/metrics", "http")
    metrics_auth = settings_env(release)["CXR_METRICS_AUTH"]
    if metrics_auth == "required":
        assert endpoint["authorization"] == {
            "type": "Bearer",
            "credentials": {"name": "cxr-triage-metrics-token", "key": "token"},
        }
    else:
        assert metrics_auth == "disabled" and "authorization" not in endpoint


# --- what the service needs from its pod -------------------------------------------------------------


def test_the_probed_paths_are_routes_of_the_service() -> None:
    from service.api.routes.health import router

    assert {"/healthz", "/readyz"} <= {getattr(route, "path", None) for route in router.routes}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_hit_healthz_and_readyz_on_the_container_port(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    container = server_container(release)
    env = settings_env(release)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == int(env["CXR_PORT"])
    assert set(ports) - {"http"} <= {"dicom"}  # the DICOM port with pacs.enabled, probed by nobody
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The startup probe, not liveness, waits for the model load.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    (service_port,) = http_service(release)["spec"]["ports"]
    assert service_port["targetPort"] == "http"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_is_hardened(releases: dict[str, Release], scenario: str) -> None:
    checked = 0
    for workload in workloads(releases[scenario]):
        pod = pod_spec(workload)
        context = pod["securityContext"]
        assert context["runAsNonRoot"] is True
        assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{workload['kind']}/{container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert isinstance(security["runAsUser"], int) and security["runAsUser"] > 0, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where
            # With a read-only root, /tmp is an emptyDir.
            tmp = mount_at(container, "/tmp")
            assert "emptyDir" in volumes(pod)[tmp["name"]], where
            checked += 1
    assert checked >= 1


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_gpu_is_requested_only_in_the_gpu_scenario(releases: dict[str, Release], scenario: str) -> None:
    release = releases[scenario]
    deployment_text = json.dumps(release.one("Deployment"))
    resources = server_container(release)["resources"]
    provider = settings_env(release)["CXR_EXECUTION_PROVIDER"]
    if scenario == "gpu-values":
        assert resources["limits"][GPU] == 1 and resources["requests"][GPU] == 1
        pod = server_pod(release)
        assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        assert pod["runtimeClassName"] == "nvidia"
        assert server_container(release)["image"].endswith(":0.1.0-gpu")
        assert provider == "cuda"  # no silent fall-back to the CPU on a GPU node
    else:
        assert GPU not in deployment_text
        assert server_container(release)["image"].endswith(":0.1.0-cpu")
        assert provider == "cpu"


def test_only_the_retrain_job_gets_a_gpu_in_the_retrain_scenario(releases: dict[str, Release]) -> None:
    release = releases["retrain-values"]
    for kind in ("CronJob", "Job"):
        (container,) = pod_spec(release.one(kind))["containers"]
        assert container["resources"]["limits"][GPU] == 1
    assert GPU not in json.dumps(release.one("Deployment"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_settings_are_valid_for_the_service(
    releases: dict[str, Release], scenario: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every CXR_* variable the chart sets is a real setting, and together they pass the service's
    own validation (a float-formatted integer or a watched pinned version would stop the pod)."""
    from service.settings import (
        PacsSettings,
        Settings,
        is_loopback,
        pacs_variable_names,
        unknown_cxr_variables,
    )

    release = releases[scenario]
    env = settings_env(release)
    for name in list(os.environ):
        if name.upper().startswith("CXR_"):
            monkeypatch.delenv(name)
    assert env["CXR_HOST"] == "0.0.0.0" and not is_loopback(env["CXR_HOST"])
    assert unknown_cxr_variables(env) == []
    pacs_names = pacs_variable_names()
    settings = Settings.model_validate(
        {name.removeprefix("CXR_").lower(): value for name, value in env.items() if name not in pacs_names}
    )
    PacsSettings.model_validate(
        {name.removeprefix("CXR_").lower(): value for name, value in env.items() if name in pacs_names}
    )
    assert settings.port == server_container(release)["ports"][0]["containerPort"]
    # The store is the image's released model at /models, or a volume mounted over it.
    assert str(settings.model_store) == "/models"
    assert settings.max_upload_bytes == 32 * 1024 * 1024


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_grace_period_outlasts_prestop_drain_and_longest_request(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    env = settings_env(release)
    pre_stop = (
        server_container(release).get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    )
    drain, longest = float(env["CXR_DRAIN_SECONDS"]), float(env["CXR_REQUEST_TIMEOUT_S"])
    assert drain > 0 and longest > 0
    assert server_pod(release)["terminationGracePeriodSeconds"] > pre_stop + drain + longest


@pytest.mark.parametrize(("grace", "renders"), [(38, False), (39, True)])
def test_render_refuses_a_grace_period_that_cuts_the_drain_short(
    helm: Helm, grace: int, renders: bool
) -> None:
    values = {"terminationGracePeriodSeconds": grace}  # defaults: 3 s preStop + 5 s drain + 30 s timeout
    if renders:
        assert server_pod(helm.render(values))["terminationGracePeriodSeconds"] == grace
    else:
        with pytest.raises(sdk.HelmError, match=r"terminationGracePeriodSeconds \(38\) must exceed"):
            helm.render(values)


EXPECTED_KEY_SECRET = {
    "default": "cxr-triage-api-keys",
    "gpu-values": "cxr-api-keys-prod",
    "cpu-values": "cxr-triage-api-keys",
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_api_key_secret_is_mounted_where_the_setting_points(
    releases: dict[str, Release], scenario: str
) -> None:
    release = releases[scenario]
    keys_file = PurePosixPath(settings_env(release)["CXR_API_KEYS_FILE"])
    container = server_container(release)
    mount = mount_at(container, str(keys_file.parent))
    # A whole-directory mount: a subPath mount would never see a rotated Secret.
    assert mount.get("readOnly") is True and "subPath" not in mount
    secret = volumes(server_pod(release))[mount["name"]]["secret"]
    assert secret["items"] == [{"key": "api_keys", "path": keys_file.name}]
    assert secret["defaultMode"] & stat.S_IROTH == 0, "the key file must not be world-readable"
    assert secret["secretName"] == EXPECTED_KEY_SECRET.get(scenario, "cxr-triage-api-keys")
    created = release.of_kind("Secret")
    assert [s["metadata"]["name"] for s in created] == (
        [secret["secretName"]] if scenario == "cpu-values" else []
    )


def test_a_created_key_file_is_read_by_the_service(releases: dict[str, Release]) -> None:
    from service.security.api_keys import parse_key_file

    secret = releases["cpu-values"].one("Secret")
    text = base64.b64decode(secret["data"]["api_keys"]).decode("ascii")
    keys = {key.key_id: sorted(key.scopes) for key in parse_key_file(text)}
    assert keys == {
        "pacs-router": ["predict"],
        "prometheus": ["metrics"],
        "ops": ["admin", "metrics", "predict"],
    }


def test_auth_disabled_mounts_no_keys(helm: Helm) -> None:
    release = helm.render({"config": {"auth": "disabled"}})
    env = settings_env(release)
    assert env["CXR_AUTH"] == "disabled" and "CXR_API_KEYS_FILE" not in env
    assert "api-keys" not in volumes(server_pod(release))
    assert "WARNING: config.auth=disabled" in release.notes


def test_a_config_change_rolls_the_pods(helm: Helm, releases: dict[str, Release]) -> None:
    def checksum(release: Release) -> str:
        annotations = release.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    baseline = checksum(releases["default"])
    assert re.fullmatch(r"[0-9a-f]{64}", baseline)
    assert checksum(helm.render({})) == baseline
    assert checksum(helm.render({"config": {"logLevel": "debug"}})) != baseline


# --- values.schema.json and the cross-value checks ---------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": -1},
        {"replicaCount": "two"},
        {"replicas": 3},  # unknown key
        {"config": {"drainSecond": 5}},  # unknown nested key (typo)
        {"config": {"auth": "optional"}},
        {"config": {"executionProvider": "rocm"}},
        {"config": {"modelVersion": "../other-model"}},
        {"config": {"maxUploadBytes": 1.5}},
        {"config": {"modelWatchS": 0.01}},
        {"securityContext": {"runAsUser": 0}},
        {"apiKeys": {"create": True, "keys": [{"id": "pacs", "secret": "contains:a-colon-0123456789"}]}},
        {"apiKeys": {"create": True, "keys": [{"id": "pacs", "secret": "short"}]}},
        {
            "apiKeys": {
                "create": True,
                "keys": [{"id": "pacs", "secret": "0123456789abcdefgh", "scopes": ["root"]}],
            }
        },
        {"modelStore": {"source": "s3"}},
        {"retrain": {"enabled": "yes"}},
    ],
    ids=lambda values: json.dumps(values, separators=(",", ":"))[:60],
)
def test_values_schema_rejects_bad_values(helm: Helm, values: dict[str, Any]) -> None:
    with pytest.raises(sdk.HelmError, match="schema"):
        helm.render(values)


def test_values_schema_accepts_good_values(helm: Helm) -> None:
    """The control for the rejections above: the same keys with valid values render."""
    release = helm.render(
        {
            "replicaCount": 3,
            "config": {"drainSeconds": 2.5, "modelWatchS": 0.5, "decisionThreshold": 0.42},
            "securityContext": {"runAsUser": 2000},
            "apiKeys": {
                "create": True,
                "keys": [{"id": "pacs", "secret": "0123456789abcdefgh", "scopes": ["admin"]}],
            },
        }
    )
    assert release.one("Deployment")["spec"]["replicas"] == 3
    env = settings_env(release)
    assert (env["CXR_DRAIN_SECONDS"], env["CXR_MODEL_WATCH_S"], env["CXR_DECISION_THRESHOLD"]) == (
        "2.5",
        "0.5",
        "0.42",
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"config": {"executionProvider": "cuda"}}, "refuse to start without a GPU"),
        ({"config": {"executionProvider": "tensorrt"}}, "tensorrt but gpu.enabled is false"),
        ({"gpu": {"enabled": True}, "config": {"executionProvider": "cpu"}}, "never uses"),
        ({"config": {"modelVersion": "5"}}, "pinned version"),
        ({"apiKeys": {"create": True}}, "at least one entry"),
        ({"modelStore": {"source": "initContainer"}}, "initContainer.image.repository"),
        ({"serviceMonitor": {"enabled": True}}, "bearerTokenSecret.name"),
        ({"retrain": {"enabled": True}}, "it needs modelStore.source=pvc"),  # not the image's model
        ({"retrain": {"enabled": True}, "modelStore": {"source": "pvc"}}, "retrain.data.existingClaim"),
        ({"pacs": {"enabled": True}, "replicaCount": 2}, "one pod owns the spool"),
        ({"pacs": {"enabled": True}, "autoscaling": {"enabled": True}}, "one pod owns the spool"),
        ({"pacs": {"enabled": True, "tls": {"requireClientCert": True}}}, "requireClientCert needs"),
        (
            {
                "retrain": {"enabled": True, "data": {"existingClaim": "films"}},
                "modelStore": {"source": "pvc"},
                "config": {"modelVersion": "latest"},
            },
            "publish has judged it",
        ),
    ],
)
def test_render_refuses_inconsistent_values(helm: Helm, values: dict[str, Any], message: str) -> None:
    with pytest.raises(sdk.HelmError, match=re.escape(message)):
        helm.render(values)


# --- model store, scaling, network -------------------------------------------------------------------


def test_default_store_is_the_released_model_the_image_carries(releases: dict[str, Release]) -> None:
    """Nothing to mount or fill: the image's /models holds the released version and its ACTIVE
    pointer (Dockerfile), which the default CXR_MODEL_VERSION names."""
    release = releases["default"]
    assert release.of_kind("PersistentVolumeClaim") == []
    pod = server_pod(release)
    assert "models" not in volumes(pod)
    assert "initContainers" not in pod
    assert not [m for m in server_container(release).get("volumeMounts", []) if m["mountPath"] == "/models"]
    assert settings_env(release)["CXR_MODEL_VERSION"] == "active"


def test_a_store_claim_is_created_and_mounted_read_only_over_the_image(releases: dict[str, Release]) -> None:
    release = releases["pvc-store-values"]
    claim = release.one("PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    models = volumes(server_pod(release))["models"]["persistentVolumeClaim"]
    assert models == {"claimName": claim["metadata"]["name"], "readOnly": True}
    assert mount_at(server_container(release), "/models")["readOnly"] is True


def test_retrain_publishes_into_the_servers_claim_read_write(releases: dict[str, Release]) -> None:
    release = releases["retrain-values"]
    assert release.of_kind("PersistentVolumeClaim") == []  # existingClaim
    server_claim = volumes(server_pod(release))["models"]["persistentVolumeClaim"]
    assert server_claim == {"claimName": "cxr-models", "readOnly": True}
    for kind in ("CronJob", "Job"):
        pod = pod_spec(release.one(kind))
        assert pod["restartPolicy"] == "Never"
        assert volumes(pod)["models"]["persistentVolumeClaim"] == {"claimName": "cxr-models"}
        (container,) = pod["containers"]
        assert not mount_at(container, "/models").get("readOnly", False)
        assert mount_at(container, "/data")["readOnly"] is True
        assert container["image"] == "registry.example.org/radiology/cxr-triage-train:0.1.0"
    cron = release.one("CronJob")["spec"]
    assert (cron["schedule"], cron["concurrencyPolicy"]) == ("30 2 * * 0", "Forbid")
    # The server's selector never picks up a retrain pod.
    selector = release.one("Deployment")["spec"]["selector"]["matchLabels"]
    retrain_labels = release.one("Job")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= retrain_labels.items()


def test_init_container_fills_an_emptydir_store(releases: dict[str, Release]) -> None:
    release = releases["init-model-values"]
    assert release.of_kind("PersistentVolumeClaim") == []
    pod = server_pod(release)
    assert "emptyDir" in volumes(pod)["models"]
    (init,) = pod["initContainers"]
    assert init["command"] == ["cp", "-R", "/bundle/.", "/models/"]
    assert not mount_at(init, "/models").get("readOnly", False)
    assert mount_at(server_container(release), "/models")["readOnly"] is True


def test_autoscaling_owns_the_replica_count(releases: dict[str, Release]) -> None:
    release = releases["autoscaling-values"]
    hpa, deployment = release.one("HorizontalPodAutoscaler"), release.one("Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert "replicas" not in deployment["spec"]
    for name in SCENARIOS:
        if name != "autoscaling-values":
            assert releases[name].of_kind("HorizontalPodAutoscaler") == []
            assert isinstance(releases[name].one("Deployment")["spec"]["replicas"], int)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_disruption_budget_and_network_policy_select_the_server_pods(
    releases: dict[str, Release], defaults: dict[str, Any], scenario: str
) -> None:
    release = releases[scenario]
    selector = release.one("Deployment")["spec"]["selector"]["matchLabels"]
    assert release.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
    policy = release.one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == selector
    assert policy["policyTypes"] == ["Ingress"]
    rule, *others = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]  # the container port's name
    assert [other["ports"] for other in others] in ([], [[{"port": "dicom", "protocol": "TCP"}]])
    expected_from = coalesce(defaults, scenario_values(scenario))["networkPolicy"]["from"]
    assert rule["from"] == expected_from and expected_from


def test_ingress_routes_to_the_service_with_tls(releases: dict[str, Release]) -> None:
    release = releases["ingress-values"]
    ingress = release.one("Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    (rule,) = ingress["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {
        "name": release.one("Service")["metadata"]["name"],
        "port": {"name": "http"},
    }
    assert ingress["tls"] == [{"secretName": "cxr-triage-tls", "hosts": [rule["host"]]}]
    # Large films must get through the controller: at least CXR_MAX_UPLOAD_BYTES.
    annotations = release.one("Ingress")["metadata"]["annotations"]
    body_mib = int(annotations["nginx.ingress.kubernetes.io/proxy-body-size"].removesuffix("m"))
    assert body_mib * 1024 * 1024 >= int(settings_env(release)["CXR_MAX_UPLOAD_BYTES"])


# --- the retrain script, run -------------------------------------------------------------------------


def _run_retrain_script(
    container: dict[str, Any], tmp_path: Path, fail_step: str = ""
) -> tuple[int, list[list[str]]]:
    """Run the Job's shell command with a stand-in ``python`` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    stub = bin_dir / "python"
    stub.write_text(
        "#!/bin/sh\n"
        f'"{sys.executable}" -c \'import json, sys; print(json.dumps(sys.argv[1:]))\' "$@" >> "{calls}"\n'
        f'[ "$3" = "{fail_step}" ] && exit 3\n'
        "exit 0\n",
        encoding="utf-8",
    )
    stub.chmod(0o755)
    env = {item["name"]: item["value"] for item in container["env"]}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    result = subprocess.run(
        [*container["command"], *container.get("args", [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    invocations = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return result.returncode, invocations


def test_retrain_job_trains_into_a_run_folder_then_publishes(
    releases: dict[str, Release], tmp_path: Path
) -> None:
    from service.settings import is_plain_name

    (container,) = pod_spec(releases["retrain-values"].one("Job"))["containers"]
    code, calls = _run_retrain_script(container, tmp_path)
    assert code == 0
    run, publish = calls
    version = run[run.index("--version") + 1]
    assert re.fullmatch(r"\d{8}T\d{6}Z", version) and is_plain_name(version)
    assert run == [
        "-m", "training", "run",
        "--data", "/data/kermany/train", "--output-dir", "/runs", "--run-name", version,
        "--store", "/models", "--name", "cxr-pneumonia", "--version", version,
        "--backbone", "efficientnet_lite0", "--patient-pattern", r"(?P<patient>person\d+)",
    ]  # fmt: skip
    assert publish == [
        "-m", "training", "publish",
        "--store", "/models", "--name", "cxr-pneumonia", "--version", version,
        "--eval-data", "/data/kermany/test",
    ]  # fmt: skip


def test_a_failed_training_run_publishes_nothing(releases: dict[str, Release], tmp_path: Path) -> None:
    (container,) = pod_spec(releases["retrain-values"].one("CronJob"))["containers"]
    code, calls = _run_retrain_script(container, tmp_path, fail_step="run")
    assert code == 3
    assert [call[2] for call in calls] == ["run"]


def test_retrain_without_eval_data_publishes_on_the_runs_validation_split(helm: Helm, tmp_path: Path) -> None:
    release = helm.render(
        {"retrain": {"enabled": True, "data": {"existingClaim": "films"}}, "modelStore": {"source": "pvc"}}
    )
    (container,) = pod_spec(release.one("CronJob"))["containers"]
    assert release.of_kind("Job") == []  # runNow is off by default
    code, calls = _run_retrain_script(container, tmp_path)
    assert code == 0
    assert "--eval-data" not in calls[1] and calls[0][calls[0].index("--data") + 1] == "/data/train"


def test_the_training_cli_accepts_the_jobs_arguments(
    releases: dict[str, Release],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The real `python -m training` parser takes both invocations the Job makes (nothing is trained:
    the train and publish steps are replaced once the arguments are parsed and validated)."""
    import training.cli
    import training.fit.engine
    import training.release.publish

    (container,) = pod_spec(releases["retrain-values"].one("Job"))["containers"]
    _, (run, publish) = _run_retrain_script(container, tmp_path)

    class StopAfterParsingError(Exception):
        pass

    seen: dict[str, Any] = {}

    def fake_train(config: Any) -> Any:
        seen["train"] = config
        raise StopAfterParsingError

    def fake_publish(store: Path, name: str, version: str, **options: Any) -> Any:
        seen["publish"] = (store, name, version, options)
        raise StopAfterParsingError

    monkeypatch.setattr(training.fit.engine, "train", fake_train)
    monkeypatch.setattr(training.release.publish, "publish", fake_publish)
    for argv in (run, publish):
        with pytest.raises(StopAfterParsingError):
            training.cli.main(argv[2:])  # without "-m training"
    config = seen["train"]
    assert (str(config.data_dir), str(config.output_dir), config.backbone) == (
        "/data/kermany/train",
        "/runs",
        "efficientnet_lite0",
    )
    store, name, version, options = seen["publish"]
    assert (str(store), name, str(options["eval_data"])) == ("/models", "cxr-pneumonia", "/data/kermany/test")
    assert version == config.run_name
    capsys.readouterr()


# --- PACS integration ---------------------------------------------------------------------------------


def test_pacs_scenario_exposes_the_dicom_port_and_keeps_the_spool_on_its_claim(
    releases: dict[str, Release],
) -> None:
    from service.settings import PacsSettings

    release = releases["pacs-values"]
    env = settings_env(release)
    pacs = PacsSettings.model_validate(
        {
            name.removeprefix("CXR_").lower(): value
            for name, value in env.items()
            if "_PACS_" in name or "_DICOM_" in name
        }
    )
    container = server_container(release)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["dicom"] == pacs.dicom_port != ports["http"]
    (dicom_service,) = [s for s in release.of_kind("Service") if s["metadata"]["name"].endswith("-dicom")]
    assert dicom_service["spec"]["ports"][0]["targetPort"] == "dicom"
    assert dicom_service["spec"]["type"] == "LoadBalancer"
    assert dicom_service["spec"]["selector"] == release.one("Deployment")["spec"]["selector"]["matchLabels"]
    # The spool lives in a folder of the claim's mount (the service makes it 0700 itself).
    assert pacs.pacs_spool_dir is not None
    mount = mount_at(container, str(pacs.pacs_spool_dir.parent))
    claim = volumes(server_pod(release))[mount["name"]]["persistentVolumeClaim"]["claimName"]
    (pvc,) = [c for c in release.of_kind("PersistentVolumeClaim") if c["metadata"]["name"] == claim]
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not mount.get("readOnly", False)
    # One pod owns the job table, and a roll-out stops the old pod first.
    deployment = release.one("Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    # TLS material is mounted where the settings point.
    assert pacs.dicom_tls_cert is not None and pacs.dicom_tls_ca is not None
    tls = mount_at(container, str(pacs.dicom_tls_cert.parent))
    assert volumes(server_pod(release))[tls["name"]]["secret"]["secretName"] == "cxr-dicom-tls"
    # The NetworkPolicy lets modalities reach the DICOM port.
    rules = release.one("NetworkPolicy")["spec"]["ingress"]
    assert any(rule["ports"][0]["port"] == "dicom" for rule in rules)
    assert pacs.allowed_aes == ["CR-ROOM-1", "DX-ROOM-2", "ORTHANC"]


def test_pacs_off_by_default(releases: dict[str, Release]) -> None:
    release = releases["cpu-values"]
    assert not any(name.startswith(("CXR_DICOM", "CXR_PACS")) for name in settings_env(release))
    assert not [s for s in release.of_kind("Service") if s["metadata"]["name"].endswith("-dicom")]
