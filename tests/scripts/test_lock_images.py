"""scripts/lock_images.py: what it asks uv to resolve for each image (resolving itself needs the
package index, so the lock files' contents are checked in tests/docker instead)."""

import tomllib

import pytest

from scripts import lock_images

PYPROJECT = tomllib.loads((lock_images.REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_gpu_requirements_swap_onnxruntime_for_onnxruntime_gpu_under_the_same_bounds() -> None:
    cpu = lock_images.serve_requirements(PYPROJECT)
    gpu = lock_images.serve_gpu_requirements(PYPROJECT)
    changed = [(before, after) for before, after in zip(cpu, gpu, strict=True) if before != after]
    assert len(changed) == 1
    before, after = changed[0]
    assert before.startswith("onnxruntime") and after == "onnxruntime-gpu" + before[len("onnxruntime") :]


def test_serving_never_resolves_the_train_extra() -> None:
    serve = {lock_images._name(r) for r in lock_images.serve_requirements(PYPROJECT)}
    assert "torch" not in serve and "torchvision" not in serve
    assert "fastapi" in serve and "pydicom" in serve  # serve extra and core dependencies both


@pytest.mark.parametrize("target", lock_images.TARGETS, ids=lambda target: target.name)
def test_uv_is_asked_for_a_hashed_binary_only_lock_constrained_by_the_dev_lock(
    target: lock_images.LockTarget,
) -> None:
    command = lock_images.uv_command(target, upgrade=False)
    assert command[1:5] == ["-m", "uv", "pip", "compile"]
    for flag, value in [
        ("--only-binary", ":all:"),
        ("--python-version", target.python_version),
        ("--python-platform", target.platform),
        ("--constraints", "requirements.lock"),
        ("--output-file", f"requirements/{target.name}.lock"),
    ]:
        assert command[command.index(flag) + 1] == value
    assert "--generate-hashes" in command and "--no-config" in command and "--upgrade" not in command
    assert "--upgrade" in lock_images.uv_command(target, upgrade=True)


def test_an_unknown_target_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        lock_images.main(["serve-tpu"])
    assert exit_info.value.code == 2
    assert "serve-tpu" in capsys.readouterr().err
