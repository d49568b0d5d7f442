"""What each stage of a prediction costs in CPU, one film at a time, in this process, on real films.

    python -m bench.stages --model models/cxr-pneumonia/<version> --out reports/bench/stages

For each kind of film (224 px grey PNG, 2048 px 12-bit DICOM) every stage of the request path is
timed alone, with the service's own functions: decode, model input (resize + percentile stretch),
the overlay's background, the CAM colour map and blend, the PNG encode, base64 and the JSON response.
The stages that issue 20 replaced are timed beside the code they replaced (kept below as
``_before_*``, verbatim, and ``plain_overlay_pixels``), so each change is measured on its own, in the
same run. Inference is timed per film at batch 1 and at the service's batch. CPU figures are
``time.thread_time`` (the CPU this thread used), so another process on the machine distorts them less
than wall time would; inference uses several threads and is given in wall time.

Where the time goes under load (queues, the thread hops, HTTP) is what ``bench.load`` reports from the
service's own stage metrics, and ``bench.flame`` samples with py-spy.
"""

import argparse
import base64
import io
import json
import sys
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from bench.films import RASTER_SUFFIXES, film_paths, full_size_dicom, grey_png
from bench.load import DEFAULT_FILMS
from bench.output import command_line, machine, publish
from service.api.schemas import GradCam, ImageInfo, ModelRef, PredictionResponse
from service.contract import ModelCard, decode_image
from service.contract.model_card import CAM_OUTPUT, CARD_FILENAME, ONNX_FILENAME
from service.contract.preprocess import HIGH_PERCENTILE, LOW_PERCENTILE, resize_plane, stretch_contrast
from service.inference.cpus import available_cpus
from service.outputs.overlay import DEFAULT_ALPHA, normalise_cam, overlay_background, overlay_pixels
from service.outputs.png import encode_png

OVERLAY_MAX_SIDE = 512  # the service's default (CXR_OVERLAY_MAX_SIDE)


def plain_overlay_pixels(
    background: npt.NDArray[np.float32], cam: npt.NDArray[np.float32], alpha: float = DEFAULT_ALPHA
) -> npt.NDArray[np.uint8]:
    """The colour map and blend as first written (before issue 20): plain numpy expressions, a
    temporary per step. What this benchmark times as "before", and the reference the faster
    ``overlay_pixels`` must reproduce bit for bit (tests/service/outputs/test_overlay.py)."""
    height, width = background.shape
    heat = resize_plane(normalise_cam(cam), height, width)
    v = np.clip(heat, 0.0, 1.0)[..., np.newaxis]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)
    colours = np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0).astype(np.float32)
    gray = np.repeat(background[..., np.newaxis], 3, axis=2)
    weight = (alpha * heat)[..., np.newaxis]
    blended = (1.0 - weight) * gray + weight * colours
    rgb: npt.NDArray[np.uint8] = np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)
    return rgb


def _before_encode_png(rgb: npt.NDArray[np.uint8]) -> bytes:
    """The PNG encode before issue 20: Pillow at zlib level 1 (adaptive row filters)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _before_stretch_contrast(pixels: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The contrast stretch before 2026-12-06's request-path work: the same formula with a fresh
    temporary per step (service.contract.preprocess now computes it in one buffer, bit for bit)."""
    low, high = np.percentile(pixels, [LOW_PERCENTILE, HIGH_PERCENTILE])
    scaled = (pixels.astype(np.float64) - low) / (high - low)
    out: npt.NDArray[np.float32] = np.clip(scaled, 0.0, 1.0).astype(np.float32)
    return out


def _mean_ms(step: Callable[[], object], seconds: float, clock: Callable[[], float]) -> float:
    """Mean ms of ``step`` on ``clock``, repeated for about ``seconds`` (at least 3 runs) after one
    warm-up call."""
    step()
    runs, start = 0, clock()
    while (used := clock() - start) < seconds or runs < 3:
        step()
        runs += 1
    return used / runs * 1000.0


def cpu_ms(step: Callable[[], object], seconds: float) -> float:
    """Mean thread CPU ms of ``step``: what this stage costs the process, whatever else runs."""
    return _mean_ms(step, seconds, time.thread_time)


def wall_ms(step: Callable[[], object], seconds: float) -> float:
    """Mean wall ms of ``step``: for inference, whose work runs on ONNX Runtime's own threads."""
    return _mean_ms(step, seconds, time.perf_counter)


def _cam(size: int) -> npt.NDArray[np.float32]:
    """A smooth map with one hot region, the shape a real CAM has."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.asarray(np.exp(-((yy - size / 3) ** 2 + (xx - size / 2) ** 2) / size), dtype=np.float32)


def _response(png_base64: str, width: int, height: int) -> PredictionResponse:
    return PredictionResponse(
        request_id="0" * 32,
        model=ModelRef(name="cxr-pneumonia", version="v"),
        probabilities={"NORMAL": 0.25, "PNEUMONIA": 0.75},
        predicted_class="PNEUMONIA",
        threshold=None,
        triage=None,
        out_of_distribution=None,
        image=ImageInfo(source_format="png", width=width, height=height),
        dicom=None,
        execution_provider="CPUExecutionProvider",
        inference_ms=3.0,
        gradcam=GradCam(class_name="PNEUMONIA", width=width, height=height, png_base64=png_base64),
    )


def kind_stages(data: bytes, card: ModelCard, cam_size: int, seconds: float) -> dict[str, Any]:
    """CPU ms of every per-film stage for one uploaded film, before and after where it changed."""
    contract = card.pixel_contract
    decoded = decode_image(data)
    background = overlay_background(decoded.pixels, OVERLAY_MAX_SIDE)
    cam = _cam(cam_size)
    rgb = overlay_pixels(background, cam)
    if not np.array_equal(rgb, plain_overlay_pixels(background, cam)):
        raise AssertionError("the overlay's pixels changed")  # the tests say so too; never report it
    plane = resize_plane(decoded.pixels, contract.height, contract.width)
    if stretch_contrast(plane).tobytes() != _before_stretch_contrast(plane).tobytes():
        raise AssertionError("the model input changed")
    png, png_before = encode_png(rgb), _before_encode_png(rgb)
    png_base64 = base64.b64encode(png).decode("ascii")
    response = _response(png_base64, background.shape[1], background.shape[0])
    serializer = PredictionResponse.__pydantic_serializer__
    stages = {
        "decode": cpu_ms(lambda: decode_image(data), seconds),
        "model_input_before": cpu_ms(
            lambda: _before_stretch_contrast(resize_plane(decoded.pixels, contract.height, contract.width)),
            seconds,
        ),
        "model_input": cpu_ms(
            lambda: stretch_contrast(resize_plane(decoded.pixels, contract.height, contract.width)), seconds
        ),
        "overlay_background": cpu_ms(lambda: overlay_background(decoded.pixels, OVERLAY_MAX_SIDE), seconds),
        "colour_blend_before": cpu_ms(lambda: plain_overlay_pixels(background, cam), seconds),
        "colour_blend": cpu_ms(lambda: overlay_pixels(background, cam), seconds),
        "png_encode_before": cpu_ms(lambda: _before_encode_png(rgb), seconds),
        "png_encode_zlib": cpu_ms(lambda: encode_png(rgb, deflate=zlib.compress), seconds),
        "png_encode": cpu_ms(lambda: encode_png(rgb), seconds),
        "base64": cpu_ms(lambda: base64.b64encode(png).decode("ascii"), seconds),
        "json_response": cpu_ms(lambda: serializer.to_json(response, by_alias=True), seconds),
        "json_response_stdlib": cpu_ms(lambda: json.dumps(response.model_dump(mode="json")), seconds),
    }
    return {
        "upload_bytes": len(data),
        "decoded": [decoded.width, decoded.height],
        "overlay": [background.shape[1], background.shape[0]],
        "png_bytes": len(png),
        "png_bytes_before": len(png_before),
        "png_bytes_zlib": len(encode_png(rgb, deflate=zlib.compress)),
        "cpu_ms": {name: round(value, 3) for name, value in stages.items()},
    }


def inference_ms(
    model_dir: Path, card: ModelCard, batches: tuple[int, ...], seconds: float
) -> dict[str, float]:
    """Wall ms per film of session.run on blank films at each batch, with the service's options."""
    from service.inference.providers import session_options
    from service.settings import Settings

    contract = card.pixel_contract
    options = session_options(Settings(intra_op_threads=available_cpus()))
    session = ort.InferenceSession(
        str(model_dir / ONNX_FILENAME), options, providers=["CPUExecutionProvider"]
    )
    out: dict[str, float] = {}
    for batch in batches:
        films = np.random.default_rng(batch).random(
            (batch, 1, contract.height, contract.width), dtype=np.float32
        )
        ms = wall_ms(partial(session.run, None, {contract.input_name: films}), seconds)
        out[f"b{batch}"] = round(ms / batch, 3)
    return out


def run(model_dir: Path, films_dir: Path, seconds: float, batches: tuple[int, ...]) -> dict[str, Any]:
    card = ModelCard.model_validate_json((model_dir / CARD_FILENAME).read_text())
    paths = film_paths(films_dir, 1, RASTER_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no films under {films_dir}")
    source = paths[0].read_bytes()
    kinds = {"png-224": grey_png(source), "dicom-full": full_size_dicom(source)}
    # The model's CAM grid, from one run (its size is the last convolution's, not in the card).
    started = datetime.now(UTC)
    infer = inference_ms(model_dir, card, batches, seconds)
    session = ort.InferenceSession(str(model_dir / ONNX_FILENAME), providers=["CPUExecutionProvider"])
    contract = card.pixel_contract
    blank = np.zeros((1, 1, contract.height, contract.width), np.float32)
    cam_shape = session.run([CAM_OUTPUT], {contract.input_name: blank})[0].shape
    return {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "model": f"{card.name} {card.version} ({contract.height} x {contract.width} px input)",
        "cam_grid": list(cam_shape[2:]),
        "inference_wall_ms_per_film": infer,
        "kinds": {kind: kind_stages(data, card, int(cam_shape[-1]), seconds) for kind, data in kinds.items()},
    }


def format_report(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"stages {report['started_at']} | {report['model']} | onnxruntime {machine['onnxruntime']} | "
        f"{machine['cpus']} CPUs | 1-min load at the end {machine['load_average_1min']}",
        f"command: {report.get('command', '(library call)')}",
        "inference, wall ms per film: "
        + ", ".join(f"{b} {ms}" for b, ms in report["inference_wall_ms_per_film"].items()),
        f"CAM grid {report['cam_grid']}",
    ]
    kinds = report["kinds"]
    names = list(next(iter(kinds.values()))["cpu_ms"])
    lines.append(f"{'CPU ms per film':<24}" + "".join(f"{k:>14}" for k in kinds))
    for name in names:
        lines.append(f"{name:<24}" + "".join(f"{kinds[k]['cpu_ms'][name]:>14}" for k in kinds))
    for key in ("upload_bytes", "decoded", "overlay", "png_bytes", "png_bytes_zlib", "png_bytes_before"):
        lines.append(f"{key:<24}" + "".join(f"{kinds[k][key]!s:>14}" for k in kinds))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a store version folder")
    parser.add_argument("--films", type=Path, default=DEFAULT_FILMS)
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per stage")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--out", type=Path, help="writes OUT.json and OUT.txt")
    args = parser.parse_args(argv)
    if not args.films.is_dir():
        print(f"SKIPPED: film folder {args.films} is absent", file=sys.stderr)
        return 0
    report = run(args.model, args.films, args.seconds, tuple(args.batches))
    report["command"] = command_line("bench.stages", argv)
    publish(report, format_report(report), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
