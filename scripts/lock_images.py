"""Regenerate the hash-pinned lock files the container images install (``requirements/*.lock``).

    python scripts/lock_images.py             # all four lock files
    python scripts/lock_images.py serve-gpu   # one of them

Each image gets its own resolution because each runs on its own interpreter and platform (the GPU
image uses Ubuntu's Python 3.12, the others python:3.11), and the GPU image needs ``onnxruntime-gpu``
where the serve extra says ``onnxruntime`` (both install the module ``onnxruntime``; with both
present one overwrites the other). ``uv pip compile`` does the resolving because it can resolve for
an interpreter and platform other than the one running it, which pip-compile cannot.

Every resolution is constrained by requirements.lock (``make lock``), so an image runs the very
versions CI tested; only packages CI never installs (onnxruntime-gpu, setuptools) float to their
newest release. Needs ``uv`` (dev extra) and access to the package index; the Docker build needs
neither, it installs these files with ``pip --require-hashes``.
"""

import argparse
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCK_DIR = REPO_ROOT / "requirements"
DEV_LOCK = REPO_ROOT / "requirements.lock"
COMMAND = "python scripts/lock_images.py"

# The base images the Dockerfile's ARGs default to. tests/docker checks the Dockerfile agrees, so
# a base-image bump without a re-lock (new Python, new glibc) fails CI instead of the build.
PYTHON_IMAGE = "python:3.11-slim-trixie"
CUDA_IMAGE = "nvidia/cuda:13.2.1-cudnn-runtime-ubuntu24.04"


def _name(requirement: str) -> str:
    """PEP 503 normalised project name of a requirement string."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


@dataclass(frozen=True)
class LockTarget:
    name: str  # requirements/<name>.lock
    image: str  # the base image it is installed on
    python_version: str  # that image's interpreter
    platform: str  # uv's platform tag for that image's glibc: only wheels that load there
    requirements: Callable[[dict[str, object]], list[str]]  # from pyproject.toml

    @property
    def path(self) -> Path:
        return LOCK_DIR / f"{self.name}.lock"


def _project(pyproject: dict[str, object]) -> dict[str, list[str]]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    return {"core": list(project["dependencies"]), **{key: list(value) for key, value in extras.items()}}


def build_requirements(pyproject: dict[str, object]) -> list[str]:
    """What building the project's own wheel needs (``--no-build-isolation`` in the image)."""
    build_system = pyproject["build-system"]
    assert isinstance(build_system, dict)
    return list(build_system["requires"])


def serve_requirements(pyproject: dict[str, object]) -> list[str]:
    project = _project(pyproject)
    return project["core"] + project["serve"]


def serve_gpu_requirements(pyproject: dict[str, object]) -> list[str]:
    """The serve extra with ``onnxruntime`` swapped for ``onnxruntime-gpu`` under the same bounds."""
    return [
        "onnxruntime-gpu" + requirement.strip()[len("onnxruntime") :]
        if _name(requirement) == "onnxruntime"
        else requirement
        for requirement in serve_requirements(pyproject)
    ]


def train_requirements(pyproject: dict[str, object]) -> list[str]:
    project = _project(pyproject)
    return project["core"] + project["train"]


TARGETS = (
    # Debian trixie has glibc 2.41 (uv's newest tag is 2_40), Ubuntu 24.04 has 2.39.
    LockTarget("build", PYTHON_IMAGE, "3.11", "x86_64-manylinux_2_40", build_requirements),
    LockTarget("serve-cpu", PYTHON_IMAGE, "3.11", "x86_64-manylinux_2_40", serve_requirements),
    LockTarget("serve-gpu", CUDA_IMAGE, "3.12", "x86_64-manylinux_2_39", serve_gpu_requirements),
    LockTarget("train", PYTHON_IMAGE, "3.11", "x86_64-manylinux_2_40", train_requirements),
)


def uv_command(target: LockTarget, upgrade: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uv",
        "pip",
        "compile",
        "-",  # the requirements come on stdin: computed from pyproject.toml, never a second copy
        "--no-config",  # a developer's uv.toml must not change what the images install
        "--generate-hashes",  # the Dockerfile installs with pip --require-hashes
        "--only-binary",
        ":all:",  # the images have no compiler; an sdist-only pin must fail here, not in the build
        "--python-version",
        target.python_version,
        "--python-platform",
        target.platform,
        "--constraints",
        str(DEV_LOCK.relative_to(REPO_ROOT)),
        "--custom-compile-command",
        COMMAND,
        "--no-progress",
        "--quiet",
        "--output-file",
        str(target.path.relative_to(REPO_ROOT)),
        *(["--upgrade"] if upgrade else []),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    names = [target.name for target in TARGETS]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"any of {names}; default: all")
    parser.add_argument(
        "--upgrade",
        action="store_true",
        help="ignore the current pins of packages requirements.lock does not constrain",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.targets) - set(names))
    if unknown:
        parser.error(f"unknown target(s) {unknown}; choose from {names}")
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    LOCK_DIR.mkdir(exist_ok=True)
    for target in TARGETS:
        if args.targets and target.name not in args.targets:
            continue
        requirements = "\n".join(target.requirements(pyproject)) + "\n"
        print(f"{target.path.relative_to(REPO_ROOT)}: Python {target.python_version}, {target.platform}")
        result = subprocess.run(
            uv_command(target, args.upgrade), input=requirements, text=True, cwd=REPO_ROOT, check=False
        )
        if result.returncode != 0:
            print(f"{COMMAND}: uv failed for {target.name} (exit {result.returncode})", file=sys.stderr)
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
