"""What every written evaluation folder must hold, checked the same way by every test."""

import io
import json
from pathlib import Path

from PIL import Image

PNGS = ("roc.png", "confusion_matrix.png", "reliability.png", "gradcam_gallery.png")


def assert_report_files(out_dir: Path) -> str:
    """report.json parses, every PNG is non-empty and decodes; returns report.md, which must show the
    majority baseline."""
    for name in PNGS:
        data = (out_dir / name).read_bytes()
        assert data, name
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.size[0] > 100 and image.size[1] > 100, name
    json.loads((out_dir / "report.json").read_text())
    markdown = (out_dir / "report.md").read_text()
    assert "Majority baseline" in markdown
    return markdown
