"""A burst of films from modalities into the PACS gateway, results back into a real Orthanc.

    python -m bench.pacs_burst --model models/cxr-pneumonia/6 --films 500 --out reports/bench/pacs_burst

``--senders`` DCMTK ``storescu`` processes (modalities) send ``--films`` 12-bit DX films (Kermany's
224 px films, ``--per-study`` to a study) at once to ``python -m service`` with its DICOM port
open, which sends each film's SR and SC back to Orthanc by C-STORE. Measured: the intake rate (films
acknowledged per second, first association to last acknowledgement), the queue's peak depth, the
film-to-result latency (an instance's receipt to both results at the PACS) p50/p95/max, and the
checks: zero lost (every film a job, every job delivered) and nothing twice (Orthanc holds exactly
two results per film). Without films or without Orthanc/DCMTK it prints SKIPPED and exits 0.
"""

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from pydicom.uid import generate_uid

from bench.films import RASTER_SUFFIXES, film_paths
from bench.orthanc import PACS_TOOLS, Orthanc, missing_tools
from bench.service_process import REPO_ROOT, free_port, latency_percentiles, running_service
from training.data.chest_dicom import chest_dataset, part10_bytes

DEFAULT_FILMS = REPO_ROOT.parent / "shared" / "data" / "kermany224" / "train"
SERVICE_AE = "CXR-TRIAGE"
MODALITY_AE = "MODALITY"
_WAIT_S = 3600.0


@dataclass(frozen=True)
class BurstConfig:
    model_dir: Path
    films: tuple[bytes, ...]  # raster films; each becomes one DX instance
    per_study: int = 5
    senders: int = 2
    workers: int = 4


def dx_instance(raster: bytes, study_uid: str, series_uid: str, number: int) -> bytes:
    """A 12-bit DX-for-presentation chest PA film of ``raster``, with nothing that names a patient."""
    plane = np.asarray(Image.open(io.BytesIO(raster)).convert("L"), dtype=np.float64) / 255.0
    header = {"InstanceNumber": number, "PatientName": "", "PatientID": "", "StudyDate": ""}
    ds = chest_dataset(plane, study_uid=study_uid, series_uid=series_uid, header=header)
    return part10_bytes(ds)


def _write_films(config: BurstConfig, folder: Path) -> list[Path]:
    paths = []
    study = series = ""
    for index, raster in enumerate(config.films):
        if index % config.per_study == 0:
            study, series = generate_uid(), generate_uid()
        path = folder / f"film-{index:05d}.dcm"
        path.write_bytes(dx_instance(raster, study, series, index % config.per_study + 1))
        paths.append(path)
    return paths


def _send(port: int, files: list[Path], results: list[subprocess.CompletedProcess[str]]) -> None:
    command = ["storescu", "-aet", MODALITY_AE, "-aec", SERVICE_AE, "127.0.0.1", str(port), *map(str, files)]
    results.append(subprocess.run(command, capture_output=True, text=True, check=False, timeout=_WAIT_S))


def _jobs(client: httpx.Client) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = client.get("/v1/studies", params={"limit": 500, "offset": offset}).json()
        jobs += [instance for study in page["studies"] for instance in study["instances"]]
        offset += len(page["studies"])
        if offset >= page["total"] or not page["studies"]:
            return jobs


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def run_burst(config: BurstConfig) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cxr-pacs-burst-") as scratch_name:
        scratch = Path(scratch_name)
        films_dir = scratch / "films"
        films_dir.mkdir()
        paths = _write_films(config, films_dir)
        pacs = Orthanc(scratch / "orthanc", modalities={"cxr": (SERVICE_AE, 104)}).start()
        dicom_port = free_port()
        env = {
            "CXR_EXECUTION_PROVIDER": "cpu",
            "CXR_DICOM_PORT": str(dicom_port),
            "CXR_DICOM_AE_TITLE": SERVICE_AE,
            "CXR_DICOM_ALLOWED_AES": MODALITY_AE,
            "CXR_PACS_SPOOL_DIR": str(scratch / "spool"),
            "CXR_PACS_WORKERS": str(config.workers),
            "CXR_PACS_DEST_HOST": "127.0.0.1",
            "CXR_PACS_DEST_PORT": str(pacs.dicom_port),
            "CXR_PACS_DEST_AE_TITLE": pacs.aet,
        }
        try:
            with running_service(config.model_dir, env) as service:
                return _measure(
                    config, paths, port=dicom_port, url=service.url, headers=dict(service.headers), pacs=pacs
                )
        finally:
            pacs.stop()


def _measure(
    config: BurstConfig, paths: list[Path], *, port: int, url: str, headers: dict[str, str], pacs: Orthanc
) -> dict[str, Any]:
    n = len(paths)
    shares = [paths[i :: config.senders] for i in range(config.senders)]
    results: list[subprocess.CompletedProcess[str]] = []
    peak_depth = 0.0
    with httpx.Client(base_url=url, headers=headers, timeout=60.0) as client:
        started = time.monotonic()
        senders = [threading.Thread(target=_send, args=(port, share, results)) for share in shares if share]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        intake_s = time.monotonic() - started
        deadline = time.monotonic() + _WAIT_S
        while True:
            metrics = client.get("/metrics").text
            depth = next(
                float(line.split()[1])
                for line in metrics.splitlines()
                if line.startswith("cxr_pacs_queue_depth ")
            )
            peak_depth = max(peak_depth, depth)
            jobs = _jobs(client)
            if len(jobs) >= n and all(job["state"] in ("done", "dead") for job in jobs):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        drained_s = time.monotonic() - started
    delivered = [job for job in jobs if job["delivery_state"] == "delivered"]
    latencies = [(_seconds(j["delivered_at"]) - _seconds(j["received_at"])) * 1000.0 for j in delivered]
    received = sorted(_seconds(job["received_at"]) for job in jobs)
    held = pacs.instance_count()
    return {
        "command": " ".join([Path(sys.executable).name, "-m", "bench.pacs_burst", *sys.argv[1:]]),
        "films": n,
        "per_study": config.per_study,
        "senders": config.senders,
        "workers": config.workers,
        "model": json.loads((config.model_dir / "model_card.json").read_text())["version"],
        "model_dir": str(config.model_dir),
        "senders_ok": all(result.returncode == 0 for result in results),
        "intake": {
            "seconds": round(intake_s, 2),
            "films_per_s": round(n / intake_s, 1) if intake_s else None,
            "receipt_span_s": round(received[-1] - received[0], 2) if received else None,
        },
        "queue_peak_depth_sampled": peak_depth,
        "drained_after_s": round(drained_s, 1),
        "film_to_result_ms": latency_percentiles(latencies),
        "jobs": len(jobs),
        "delivered": len(delivered),
        "dead": sum(1 for job in jobs if job["state"] == "dead"),
        "results_in_pacs": held,
        "checks": {
            "zero_lost": len(jobs) == n and len(delivered) == n,
            "nothing_twice": held == 2 * n,
        },
    }


def format_report(report: dict[str, Any]) -> str:
    latency = report["film_to_result_ms"]
    return "\n".join(
        [
            f"command: {report['command']}",
            f"films: {report['films']} ({report['per_study']} per study), senders: {report['senders']}, "
            f"workers: {report['workers']}, model version: {report['model']}",
            f"intake: {report['films']} films acknowledged in {report['intake']['seconds']} s = "
            f"{report['intake']['films_per_s']} films/s",
            f"queue: peak depth {report['queue_peak_depth_sampled']:.0f} (sampled every 0.5 s), "
            f"drained {report['drained_after_s']} s after the first film",
            f"film-to-result (receipt -> SR and SC in Orthanc), ms: p50 {latency.get('p50')} "
            f"p95 {latency.get('p95')} max {latency.get('max')}",
            f"jobs {report['jobs']}, delivered {report['delivered']}, dead {report['dead']}, "
            f"results in the PACS {report['results_in_pacs']}",
            f"checks: {report['checks']}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="model version directory")
    parser.add_argument("--films-dir", type=Path, default=DEFAULT_FILMS)
    parser.add_argument("--films", type=int, default=500)
    parser.add_argument("--per-study", type=int, default=5)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench" / "pacs_burst")
    args = parser.parse_args(argv)
    missing = missing_tools(*PACS_TOOLS)
    sources = film_paths(args.films_dir, args.films, RASTER_SUFFIXES) if args.films_dir.is_dir() else []
    if missing or not sources:
        why = f"not installed: {', '.join(missing)}" if missing else f"no films under {args.films_dir}"
        print(f"SKIPPED: {why}")
        return 0
    films = tuple(sources[i % len(sources)].read_bytes() for i in range(args.films))
    config = BurstConfig(args.model, films, args.per_study, args.senders, args.workers)
    report = run_burst(config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = format_report(report)
    args.out.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if all(report["checks"].values()) and report["senders_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
