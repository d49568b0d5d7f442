"""Serve a study's exported model as it is and post films to it over HTTP: the check each study's
``served/served.json`` records (``reports/studies/<study>/served/``).

    python -m scripts.serve_study --model /tmp/w18/models/covid19-radiography/1 \\
        --run reports/studies/covid19-radiography/runs/<cell> --per-class 10 \\
        --other ../shared/data/leukemia-all224 --other-count 20 \\
        --out reports/studies/covid19-radiography/served/served.json

The service runs as a deployment runs it (``python -m service`` on loopback, authentication on:
``bench.service_process``). ``--per-class`` films of each class are drawn (seeded) from the run's
test split and posted; each answer's probabilities, predicted class, operating point and triage,
Grad-CAM class and OOD score are kept, and the summary counts what was right. Then ``--other-count``
images of another study's folder are posted: the OOD gate fitted on the model's own films should
refuse them (422 ``out_of_distribution``), and the summary counts the answers by status and code.
"""

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.service_process import running_service

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm"}
_TIMEOUT_S = 120.0  # one film on a loaded 2-core machine: seconds, not minutes


@dataclass(frozen=True)
class Film:
    path: Path
    label: str  # the true class; for another study's image, its folder there


def drawn_test_films(run_dir: Path, per_class: int, seed: int = 0) -> list[Film]:
    """``per_class`` films of each class from the run's test split (``split.csv``), drawn with ``seed``."""
    from training.fit.run_folder import read_split  # torch-free, but keep the CLI's start cheap

    rows = [row for row in read_split(run_dir) if row.split == "test"]
    rng = np.random.default_rng(seed)
    films: list[Film] = []
    for label in sorted({row.label for row in rows}):
        paths = sorted(row.path for row in rows if row.label == label)
        if len(paths) < per_class:
            raise ValueError(f"the test split holds {len(paths)} {label} films, fewer than {per_class}")
        films += [Film(paths[i], label) for i in sorted(rng.choice(len(paths), per_class, replace=False))]
    return films


def other_images(root: Path, count: int, seed: int = 0) -> list[Film]:
    """``count`` images drawn with ``seed`` from a ``<root>/<class>/`` folder of another study."""
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) < count:
        raise ValueError(f"{root} holds {len(paths)} images, fewer than {count}")
    rng = np.random.default_rng(seed)
    return [
        Film(paths[i], paths[i].parent.name) for i in sorted(rng.choice(len(paths), count, replace=False))
    ]


def post(client: httpx.Client, film: Film) -> httpx.Response:
    files = {"file": (film.path.name, film.path.read_bytes(), "application/octet-stream")}
    return client.post("/v1/predict", files=files)


def film_record(film: Film, response: httpx.Response) -> dict[str, Any]:
    """What one own-study film got: the answer as served, or its refusal."""
    body = response.json()
    if response.status_code != 200:
        return {
            "film": film.path.name,
            "true": film.label,
            "status": response.status_code,
            "code": body.get("code"),
        }
    gate = body["out_of_distribution"]
    return {
        "film": film.path.name,
        "true": film.label,
        "predicted": body["predicted_class"],
        "probabilities": {name: round(p, 4) for name, p in body["probabilities"].items()},
        "threshold": body["threshold"],
        "triage": body["triage"],
        "gradcam_class": body["gradcam"]["class_name"] if body["gradcam"] else None,
        "ood_score": round(gate["score"], 3) if gate else None,
        "ood_threshold": round(gate["threshold"], 3) if gate else None,
    }


def summarise(
    info: dict[str, Any], films: list[dict[str, Any]], other: list[dict[str, Any]], other_root: Path
) -> dict[str, Any]:
    served = [f for f in films if "predicted" in f]
    detector = info["out_of_distribution"]
    return {
        "model": f"{info['name']}/{info['version']}",
        "architecture": info["architecture"],
        "class_names": info["class_names"],
        "decision_threshold": info["decision_threshold"],
        "ood_threshold": detector["threshold"] if detector else None,
        "own_test_films_posted": len(films),
        "own_test_films_refused_as_ood_or_error": len(films) - len(served),
        "served": len(served),
        "correct": sum(f["predicted"] == f["true"] for f in served),
        "predicted_class_is_argmax": sum(
            f["predicted"] == max(f["probabilities"], key=f["probabilities"].__getitem__) for f in served
        ),
        "gradcam_is_of_predicted_class": sum(f["gradcam_class"] == f["predicted"] for f in served),
        f"other_study_films_posted ({other_root.name})": len(other),
        "other_study_films_answers": dict(Counter(f"{o['status']} {o['code'] or 'answered'}" for o in other)),
    }


def serve_study(
    model_dir: Path, run_dir: Path, other_root: Path, *, per_class: int, other_count: int, seed: int = 0
) -> dict[str, Any]:
    """Start the service on ``model_dir``, post the films, stop it; the report ``served.json`` holds."""
    own = drawn_test_films(run_dir, per_class, seed)
    strangers = other_images(other_root, other_count, seed)
    with (
        running_service(model_dir) as service,
        httpx.Client(base_url=service.url, headers=dict(service.headers), timeout=_TIMEOUT_S) as client,
    ):
        info = client.get("/v1/models").raise_for_status().json()
        films = [film_record(film, post(client, film)) for film in own]
        other = []
        for film in strangers:
            response = post(client, film)
            code = None if response.status_code == 200 else response.json().get("code")
            other.append(
                {"film": film.path.name, "folder": film.label, "status": response.status_code, "code": code}
            )
    return {"summary": summarise(info, films, other, other_root), "films": films, "other_study_films": other}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="models/<name>/<version>: the exported model"
    )
    parser.add_argument(
        "--run", type=Path, required=True, help="the run it was exported from (its split.csv)"
    )
    parser.add_argument("--per-class", type=int, default=10, help="test films posted per class")
    parser.add_argument("--other", type=Path, required=True, help="another study's <class>/ image folder")
    parser.add_argument("--other-count", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="served.json")
    args = parser.parse_args(argv)
    report = serve_study(
        args.model,
        args.run,
        args.other,
        per_class=args.per_class,
        other_count=args.other_count,
        seed=args.seed,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    json.dump(report["summary"], sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
