"""How each OOD gate treats whole films framed oddly: wider borders, tighter crops, tilts, padding.

A dated measurement, not part of the package. Run from the repository root:
    python reports/ood/framing_sweep.py --run runs/20261206T040337Z-default \
        --model previous=/tmp/old --model released=models/cxr-pneumonia/<version> ...
(the previous release: git show 096880c:models/cxr-pneumonia/20261206T040337Z/{model.onnx,model_card.json}).
100 validation films (every 24th of the run's split), each framed, sent through the contract as a PNG.
"""

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.contract import ModelCard, decode_image
from training.data.shifts import Plane, border, rotate, to_unit, zoom_crop
from training.fit import run_folder
from training.ood.report import _png, _scores


def _pad(plane: Plane, fraction: float, axis: int) -> Plane:
    """The film on a canvas ``1 + 2 * fraction`` times as long along ``axis``, dark on both sides."""
    shape = list(plane.shape)
    margin = int(shape[axis] * fraction)
    shape[axis] += 2 * margin
    out = np.zeros(shape, np.float32)
    index = [slice(None), slice(None)]
    index[axis] = slice(margin, margin + plane.shape[axis])
    out[tuple(index)] = plane
    return out


CONDITIONS: list[tuple[str, Callable[[Plane, float], Plane], float]] = [
    *[("border", border, f) for f in (0.14, 0.2, 0.25, 0.3)],
    *[("zoom-crop", zoom_crop, f) for f in (0.12, 0.16, 0.2, 0.25)],
    *[("rotate", rotate, d) for d in (14.0, 20.0, 30.0)],
    *[("pad-sides", lambda p, f: _pad(p, f, 1), f) for f in (0.1, 0.2, 0.3)],
    *[("pad-top-bottom", lambda p, f: _pad(p, f, 0), f) for f in (0.1, 0.2, 0.3)],
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--model", action="append", required=True, help="label=<model folder>")
    args = parser.parse_args()
    rows = [r.path for r in run_folder.read_split(args.run) if r.split == "validation"]
    planes = [to_unit(decode_image(path.read_bytes()).pixels) for path in rows[::24][:100]]
    gates = {}
    for item in args.model:
        label, folder = item.split("=", 1)
        card = ModelCard.model_validate_json((Path(folder) / "model_card.json").read_text())
        session = ort.InferenceSession(str(Path(folder) / "model.onnx"), providers=["CPUExecutionProvider"])
        gates[label] = (card, session)
    print(f"{len(planes)} validation films; share accepted by each gate")
    print(f"{'framing':<24}" + "".join(f"{label:>12}" for label in gates))
    for name, frame, amount in CONDITIONS:
        pngs = [_png(frame(p, amount)) for p in planes]
        cells = []
        for card, session in gates.values():
            assert card.ood is not None
            cells.append(f"{float(np.mean(_scores(session, card, pngs) <= card.ood.threshold)):>12.2f}")
        print(f"{name + ' ' + str(amount):<24}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
