"""``report.md``: every table puts the majority-class baseline beside the model, so no number is read
without what predicting the training split's most frequent class would have scored."""

from collections.abc import Sequence

from training.evaluation.results import ClassScores, EvaluationReport, Scores
from training.stats.metrics import format_metric

ROC_PNG = "roc.png"
CONFUSION_PNG = "confusion_matrix.png"
RELIABILITY_PNG = "reliability.png"
GALLERY_PNG = "gradcam_gallery.png"

_DASH = "-"
# Table order and wording; a metric a report lacks (e.g. sensitivity of a multi-class model) is skipped.
_METRIC_LABELS = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy (macro recall)",
    "auc": "ROC AUC (binary; macro one-vs-rest for N classes)",
    "macro_f1": "Macro F1 (= macro Dice)",
    "macro_precision": "Macro precision",
    "macro_recall": "Macro recall",
    "macro_specificity": "Macro specificity",
    "sensitivity": "Sensitivity (positive, at the decision rule)",
    "specificity": "Specificity (positive, at the decision rule)",
    "precision": "Precision (positive, at the decision rule)",
    "f1": "F1 (positive, at the decision rule)",
    "cross_entropy": "Cross-entropy",
    "ece": "ECE, top-class confidence",
    "ece_positive": "ECE, p(positive)",
    "distinct_predicted_classes": "Distinct predicted classes",
}


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _value(metrics: dict[str, float | None], key: str) -> str:
    if key == "distinct_predicted_classes":
        value = metrics.get(key)
        return _DASH if value is None else str(int(value))
    return format_metric(metrics.get(key)) if key in metrics else _DASH


def _banner(report: EvaluationReport) -> list[str]:
    if not report.collapsed:
        return []
    return [
        "> [!CAUTION]",
        "> # COLLAPSED MODEL - DO NOT USE",
        f"> **{report.collapse_message}**",
        "",
    ]


def _identity(report: EvaluationReport) -> list[str]:
    model = report.model
    per_class = ", ".join(f"{c.name} {c.support}" for c in report.scores.per_class)
    if report.threshold is not None:
        rule = f"{report.positive_class} if p({report.positive_class}) >= {report.threshold:.4f}"
    else:
        rule = "argmax of the probabilities"
    rows: list[tuple[str, object]] = [
        ("Model", f"{model.architecture or '?'} ({model.kind})"),
        ("Source", f"`{model.source}`"),
        ("Name / version", f"{model.name} / {model.version}" if model.name else _DASH),
        ("Softmax temperature", _DASH if model.temperature is None else f"{model.temperature:.4f}"),
        ("Split", report.split),
        ("Films", f"{report.n} ({per_class})"),
        ("Decision rule", rule),
        ("Majority baseline", _baseline_rule(report)),
        ("Runtime", report.timing.runtime),
        ("Created", report.created_at.isoformat(timespec="seconds")),
    ]
    return _table(["", ""], rows)


def _baseline_rule(report: EvaluationReport) -> str:
    prior = ", ".join(f"{n} {p:.3f}" for n, p in zip(report.class_names, report.baseline_prior, strict=True))
    majority = report.class_names[
        max(range(len(report.baseline_prior)), key=report.baseline_prior.__getitem__)
    ]
    return f"always {majority}, with the training-split frequencies ({prior}) as probabilities"


def _metrics(report: EvaluationReport) -> list[str]:
    level = f"{100 * report.bootstrap.level:g}%"
    header = ["Metric", "Model", f"{level} CI low", f"{level} CI high", "Majority baseline"]
    rows = []
    positive = report.positive_class or "positive"
    for key, wording in _METRIC_LABELS.items():
        if key not in report.scores.metrics:
            continue
        label = wording.replace("positive", positive)
        interval = report.confidence_intervals.get(key)
        rows.append(
            [
                label,
                _value(report.scores.metrics, key),
                _DASH if interval is None else f"{interval.low:.4f}",
                _DASH if interval is None else f"{interval.high:.4f}",
                _value(report.baseline.metrics, key),
            ]
        )
    note = (
        f"Intervals: {report.bootstrap.method}; {report.bootstrap.resamples} resamples, seed "
        f"{report.bootstrap.seed}."
        if report.bootstrap.resamples
        else "No confidence intervals (bootstrap disabled)."
    )
    return ["## Metrics", "", *_table(header, rows), note, ""]


def _per_class(model: Sequence[ClassScores], baseline: Sequence[ClassScores]) -> list[str]:
    header = ["Class", "Support", "Predicted", "Precision", "(baseline)", "Recall = sensitivity",
              "(baseline)", "Specificity", "(baseline)", "F1 = Dice", "(baseline)", "AUC one-vs-rest",
              "(baseline)"]  # fmt: skip
    rows = []
    for ours, theirs in zip(model, baseline, strict=True):
        row: list[object] = [ours.name, ours.support, f"{ours.predicted} ({theirs.predicted})"]
        for field in ("precision", "recall", "specificity", "f1", "auc_ovr"):
            row += [format_metric(getattr(ours, field)), format_metric(getattr(theirs, field))]
        rows.append(row)
    return [
        "## Per-class classification report",
        "",
        "Each class against the rest, at the decision rule above; Dice = 2TP / (2TP + FP + FN), which "
        "for one label per film is the same number as F1. *Predicted* gives the baseline's in brackets.",
        "",
        *_table(header, rows),
    ]


def _confusion(title: str, scores: Scores, class_names: Sequence[str]) -> list[str]:
    header = ["true \\ predicted", *class_names]
    rows = [[name, *counts] for name, counts in zip(class_names, scores.confusion_matrix, strict=True)]
    return [f"### {title}", "", *_table(header, rows)]


def _cost(report: EvaluationReport) -> list[str]:
    complexity = report.complexity
    flops = _DASH if complexity.flops_per_image is None else f"{complexity.flops_per_image:,}"
    training = _DASH if report.training_seconds is None else f"{report.training_seconds:.1f}"
    rows = [
        ["Parameters", f"{complexity.parameters:,}", "0"],
        ["FLOPs per image", flops, "0"],
        ["Inference ms per image", f"{report.timing.ms_per_image:.3f}", _DASH],
        ["Training seconds", training, "0"],
    ]
    return [
        "## Cost",
        "",
        *_table(["", "Model", "Majority baseline"], rows),
        f"Parameters: {complexity.parameters_counted}. FLOPs: {complexity.flops_note}. Timing: "
        f"{report.timing.images_timed} films in batches of {report.timing.batch_size} after one warm-up "
        f"batch, {report.timing.runtime}.",
        "",
    ]


def _gallery(report: EvaluationReport) -> list[str]:
    if not report.gallery:
        return []
    rows = [
        [
            c.index,
            "correct" if c.correct else "**wrong**",
            c.true_class,
            c.predicted_class,
            f"{c.confidence:.4f}",
        ]
        for c in report.gallery
    ]
    lines = ["## Grad-CAM gallery", ""]
    if report.gallery_films is not None:
        lines += [f"![Grad-CAM gallery]({GALLERY_PNG})", ""]
    return [*lines, *_table(["Film #", "Call", "True", "Predicted", "Confidence"], rows)]


def _per_source(report: EvaluationReport) -> list[str]:
    if not report.per_source:
        return []
    rows = [
        [name, m.films, m.positives, _f(m.auc), _f(m.sensitivity), _f(m.specificity)]
        for name, m in report.per_source.items()
    ]
    return [
        "## Per source",
        "",
        "Each source's films alone, at the same operating point: a pooled figure can hide a source the "
        "model serves badly.",
        "",
        *_table(["Source", "Films", "Positives", "AUC", "Sensitivity", "Specificity"], rows),
        "",
    ]


def _f(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def render_markdown(report: EvaluationReport) -> str:
    model = report.model.architecture or report.model.kind
    lines = [
        f"# Evaluation: {model} ({report.model.kind}) on the {report.split} split",
        "",
        *_banner(report),
        *_identity(report),
        *_metrics(report),
        *_per_source(report),
        *_per_class(report.scores.per_class, report.baseline.per_class),
        "## Confusion matrices",
        "",
        *_confusion("Model", report.scores, report.class_names),
        *_confusion("Majority baseline", report.baseline, report.class_names),
        *_cost(report),
        "## Figures",
        "",
        f"![ROC]({ROC_PNG}) ![Confusion matrix]({CONFUSION_PNG}) ![Reliability]({RELIABILITY_PNG})",
        "",
        *_gallery(report),
    ]
    return "\n".join(lines).rstrip() + "\n"
