"""The committed sample films are exactly what scripts/make_samples.py builds from the shared data."""

import json
from pathlib import Path

import pytest

from scripts.make_samples import DEFAULT_DATA, DEFAULT_OUT, MANIFEST, REAL_FILMS, build


@pytest.mark.skipif(
    not DEFAULT_DATA.is_dir(), reason="needs ../shared/data (absent outside this environment)"
)
def test_a_rebuild_gives_the_committed_bytes(tmp_path: Path) -> None:
    # The real NEMA films are copied unchanged from pydicom-data (not a dependency): stand the
    # committed copies in for its folder, so the rows and the copy step are still checked.
    nema = tmp_path / "nema"
    nema.mkdir()
    for film in REAL_FILMS:
        (nema / film.source).write_bytes((DEFAULT_OUT / film.name).read_bytes())
    out = tmp_path / "out"
    rows = build(DEFAULT_DATA, out, nema)
    assert rows == json.loads((DEFAULT_OUT / MANIFEST).read_text(encoding="utf-8"))
    for row in rows:
        assert (out / row["file"]).read_bytes() == (DEFAULT_OUT / row["file"]).read_bytes(), row["file"]
