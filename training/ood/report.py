"""Measure an exported model's out-of-distribution rejection: the OOD set (``training.ood.film_set``) must
be refused, real validation films must not. Runs the real ONNX graph on inputs made by the contract."""

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.contract import ModelCard, load_model_input
from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from training.fit import run_folder
from training.ood.film_set import OodCase, build_ood_set

REPORT_JSON = "ood_report.json"
NON_FRONTAL_FILMS = 10


def _scores(session: ort.InferenceSession, card: ModelCard, payloads: list[bytes]) -> np.ndarray:
    detector = card.ood
    if detector is None:
        raise ValueError(f"model {card.name} {card.version} has no out-of-distribution detector")
    contract = card.pixel_contract
    scores = []
    for data in payloads:
        tensor, _ = load_model_input(data, contract.height, contract.width)
        (score,) = session.run([detector.output_name], {contract.input_name: tensor[np.newaxis]})[0]
        scores.append(float(score))
    return np.array(scores)


def ood_report(model_dir: Path, run_dir: Path) -> dict[str, Any]:
    card = ModelCard.model_validate_json((model_dir / CARD_FILENAME).read_text())
    assert card.ood is not None, "export the model with an OOD detector first"
    session = ort.InferenceSession(str(model_dir / ONNX_FILENAME), providers=["CPUExecutionProvider"])
    rows = [row for row in run_folder.read_split(run_dir) if row.split == "validation"]
    if any(row.item is not None for row in rows):
        raise ValueError(
            f"run {run_dir} read its films from an array file; the OOD report builds its test films "
            "from image files (a folder or CSV manifest run)"
        )
    validation = [row.path for row in rows]
    cases: list[OodCase] = build_ood_set(
        validation[:: max(1, len(validation) // NON_FRONTAL_FILMS)][:NON_FRONTAL_FILMS]
    )
    ood_scores = _scores(session, card, [case.png for case in cases])
    val_scores = _scores(session, card, [path.read_bytes() for path in validation])
    threshold = card.ood.threshold
    by_category: dict[str, list[bool]] = defaultdict(list)
    for case, score in zip(cases, ood_scores, strict=True):
        by_category[case.category].append(bool(score > threshold))
    missed = [
        f"{case.category}: {case.name}" for case, s in zip(cases, ood_scores, strict=True) if s <= threshold
    ]
    return {
        "model": f"{card.name} {card.version}",
        "threshold": threshold,
        "ood_images": len(cases),
        "ood_rejected_rate": float(np.mean(ood_scores > threshold)),
        "per_category": {
            k: {"images": len(v), "rejected_rate": float(np.mean(v))} for k, v in by_category.items()
        },
        "validation_films": len(validation),
        "validation_rejected_rate": float(np.mean(val_scores > threshold)),
        "ood_not_rejected": missed,
    }


def format_report(report: dict[str, Any]) -> str:
    rows = [(name, row["images"], row["rejected_rate"]) for name, row in report["per_category"].items()]
    rows.append(("all out-of-distribution images", report["ood_images"], report["ood_rejected_rate"]))
    rows.append(
        ("real validation chest films", report["validation_films"], report["validation_rejected_rate"])
    )
    lines = [
        f"model {report['model']}, OOD threshold {report['threshold']:.3f}",
        f"{'set':<50}{'images':>8}{'rejected':>10}",
    ]
    lines += [f"{name:<50}{count:>8}{100 * rate:>9.1f}%" for name, count, rate in rows]
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2))
