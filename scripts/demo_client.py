"""The client half of ``make demo``: post every sample film to the running service and show the answer.

    python -m scripts.demo_client --url http://127.0.0.1:8000 --header-file H --out runs/demo

Standard library only (urllib), so it runs in the lean serving environment of ``make setup-serve``.
For each film in ``samples/samples.json`` it prints the class, the probabilities, the triage level and
whether it is what the sample's README expects; for chest films it saves the Grad-CAM overlay; the
non-chest images must come back refused (422 with the manifest's ``refusal_code``, by default
``out_of_distribution``); a real film without a recorded diagnosis ("accepted") must get an answer,
whichever class. Exit status 1 when any film
does not get its expected answer, so CI notices a released model that no longer does.
"""

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
_TIMEOUT_S = 120.0  # a 2k DICOM on a loaded 2-core machine: seconds, not minutes


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """One-file multipart/form-data body and its content type (what ``curl -F file=@...`` sends)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post_film(url: str, headers: dict[str, str], path: Path) -> Answer:
    body, content_type = multipart("file", path.name, path.read_bytes())
    request = urllib.request.Request(
        f"{url}/v1/predict", data=body, method="POST", headers={**headers, "Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            return Answer(response.status, json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return Answer(error.code, json.loads(error.read() or b"{}"))


def route_exists(url: str, headers: dict[str, str], path: str) -> bool:
    """True unless the service answers 404 for ``path`` (it may still want a key: that is not 404)."""
    request = urllib.request.Request(f"{url}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S):
            return True
    except urllib.error.HTTPError as error:
        return error.code != 404


def read_header_file(path: Path) -> dict[str, str]:
    name, _, value = path.read_text(encoding="utf-8").strip().partition(":")
    return {name.strip(): value.strip()}


def describe(sample: dict[str, str], answer: Answer, overlay_dir: Path) -> tuple[str, bool]:
    """One line for the terminal and whether the answer is the expected one."""
    expected = sample["expected"]
    if answer.status == 200:
        body = answer.body
        probabilities = ", ".join(f"p({k})={v:.3f}" for k, v in body["probabilities"].items())
        triage = body["triage"]["level"] if body.get("triage") else "-"
        overlay = ""
        if body.get("gradcam"):
            target = overlay_dir / (Path(sample["file"]).stem + "-gradcam.png")
            target.write_bytes(base64.b64decode(body["gradcam"]["png_base64"]))
            overlay = f"  overlay: {target}"
        image = body["image"]
        got = body["predicted_class"]
        text = (
            f"{got:<10} {probabilities}  triage={triage}  ({image['source_format']} "
            f"{image['width']}x{image['height']}, {body['inference_ms']:.0f} ms){overlay}"
        )
    else:
        reason = sample.get("refusal_code", "out_of_distribution")
        got = "refused" if answer.body.get("code") == reason else f"error {answer.status}"
        text = f"REFUSED    {answer.status} {answer.body.get('code')}: {answer.body.get('detail')}"
    # "accepted": a real film without a recorded diagnosis; any answer passes, a refusal does not.
    ok = got == expected or (expected == "accepted" and answer.status == 200)
    return f"{'ok ' if ok else 'BAD'} {sample['file']:<36} {text}" + (
        "" if ok else f"  (expected {expected})"
    ), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument(
        "--header-file", type=Path, required=True, help="one 'Authorization: Bearer ...' line"
    )
    parser.add_argument("--out", type=Path, required=True, help="where the overlays are saved")
    parser.add_argument("--samples", type=Path, default=SAMPLES)
    args = parser.parse_args(argv)
    headers = read_header_file(args.header_file)
    overlay_dir = args.out / "overlays"
    overlay_dir.mkdir(parents=True, exist_ok=True)
    samples = json.loads((args.samples / "samples.json").read_text(encoding="utf-8"))
    failures = 0
    for sample in samples:
        line, ok = describe(sample, post_film(args.url, headers, args.samples / sample["file"]), overlay_dir)
        print(line, flush=True)
        failures += not ok
    if route_exists(args.url, headers, "/ui"):
        print(f"\nReview page: {args.url}/ui")
    if failures:
        print(
            f"\n{failures} sample film(s) did not get the answer samples/README.md expects", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
