"""The flame benchmark's table is read from py-spy's collapsed stacks; without py-spy it skips."""

from pathlib import Path

import pytest

from bench.flame import main, table


def test_table_gives_each_sample_to_the_most_specific_part() -> None:
    collapsed = "\n".join(
        [
            "run (uvicorn/server.py:1);data_received (uvicorn/protocols/http/h11_impl.py:2) 30",
            "worker (threading.py:3);_prepare (service/api/routes/predict.py:4);open (PIL/Image.py:5) 50",
            "worker (threading.py:3);run (onnxruntime/capi/session.py:6) 20",
        ]
    )
    shares = table(collapsed)
    assert shares["http: uvicorn + h11"] == 30.0
    assert shares["decode + preprocess (worker thread)"] == 50.0 and shares["  of which PIL"] == 50.0
    assert shares["inference: onnxruntime"] == 20.0
    assert shares["event loop + thread hand-offs"] == 0.0  # every worker stack starts there
    assert sum(v for k, v in shares.items() if not k.startswith("  ")) == 100.0
    assert table("") == dict.fromkeys(shares, 0.0)


def test_without_py_spy_it_skips(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--model",
        str(tiny_model_dir),
        "--py-spy",
        str(tmp_path / "no-py-spy"),
        "--out",
        str(tmp_path / "f"),
    ]
    assert main(argv) == 0
    assert "SKIPPED" in capsys.readouterr().err
