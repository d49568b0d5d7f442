"""Writing an evaluation to a folder: ``report.json``, ``report.md`` and the figures beside them."""

import logging
from pathlib import Path

from training.evaluation.figures import plot_confusion, plot_reliability, plot_roc
from training.evaluation.gallery import plot_gallery
from training.evaluation.markdown import (
    CONFUSION_PNG,
    GALLERY_PNG,
    RELIABILITY_PNG,
    ROC_PNG,
    render_markdown,
)
from training.evaluation.results import EvaluationReport

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"

__all__ = ["REPORT_JSON", "REPORT_MD", "EvaluationReport", "read_report", "write_report"]


def write_report(report: EvaluationReport, out_dir: Path) -> list[Path]:
    """Write every file of the report into ``out_dir`` (created) and return their paths.

    The gallery needs the films' pixels, which ``report.json`` leaves out: a report read back from
    JSON is re-rendered without ``gradcam_gallery.png``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / REPORT_JSON, out_dir / REPORT_MD]
    written[0].write_text(report.model_dump_json(indent=2))
    written[1].write_text(render_markdown(report))
    for name, plot in (
        (ROC_PNG, plot_roc),
        (CONFUSION_PNG, plot_confusion),
        (RELIABILITY_PNG, plot_reliability),
    ):
        plot(report, out_dir / name)
        written.append(out_dir / name)
    if report.gallery_films is not None:
        plot_gallery(report.gallery, report.gallery_films, out_dir / GALLERY_PNG)
        written.append(out_dir / GALLERY_PNG)
    else:
        log.info("no film pixels attached to the report: %s not drawn", GALLERY_PNG)
    log.info("evaluation report written to %s", out_dir)
    return written


def read_report(out_dir: Path) -> EvaluationReport:
    return EvaluationReport.model_validate_json((out_dir / REPORT_JSON).read_text())
