"""The committed sample films are exactly what scripts/make_samples.py builds from the shared data."""

import json
from pathlib import Path

import pytest

from scripts.make_samples import DEFAULT_DATA, DEFAULT_OUT, MANIFEST, build


@pytest.mark.skipif(
    not DEFAULT_DATA.is_dir(), reason="needs ../shared/data (absent outside this environment)"
)
def test_a_rebuild_gives_the_committed_bytes(tmp_path: Path) -> None:
    rows = build(DEFAULT_DATA, tmp_path)
    assert rows == json.loads((DEFAULT_OUT / MANIFEST).read_text(encoding="utf-8"))
    for row in rows:
        assert (tmp_path / row["file"]).read_bytes() == (DEFAULT_OUT / row["file"]).read_bytes(), row["file"]
