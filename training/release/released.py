"""The released model: the one store version committed in git, that a fresh clone serves at once.

``models/<name>/RELEASED`` names it (one line); beside the usual store files its folder holds
``RELEASE.json`` (the record below) and ``RELEASE.md`` (the same, for people). Replacing it is one
deliberate step, ``python -m training release`` (``make release``), never a side effect of training:

1. the candidate passes the service's own load checks (card, sha256, graph contract, warm-up), with a
   card whose name and version match its folder - exactly what ``publish`` checks;
2. its provenance is complete: the exact command, a fingerprint of every data source, and each
   source's licence and attribution (a release without them is refused);
3. it is copied into the repository's store through a staging folder and checked again there;
4. the previous released folder is removed, ``RELEASED`` is replaced atomically, and the managed
   blocks of ``.gitignore`` and ``.dockerignore`` are rewritten, so git tracks (and the serving image
   carries) exactly this version while every locally trained version stays out.

What it does not do is commit: it prints the git commands, so a person reviews the diff first.
"""

import hashlib
import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME, ModelCard
from service.inference.runtime import verify_model_dir
from service.store.active_version import is_version_name
from service.store.errors import ModelLoadError
from service.store.verify import load_card

RELEASED_FILENAME = "RELEASED"
RECORD_FILENAME = "RELEASE.json"
NOTES_FILENAME = "RELEASE.md"
BLOCK_BEGIN = "# >>> the released model: written by `python -m training release`; do not edit by hand"
BLOCK_END = "# <<< the released model"
# Files of a store version that belong in the release (run folders, logs and caches do not).
_RELEASED_SUFFIXES = (".onnx", ".json", ".yaml", ".md", ".png", ".csv")


class ReleaseError(RuntimeError):
    """The candidate may not be released; the message says why. Nothing was changed."""


class DataSource(BaseModel):
    """One training data source, as the release records it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str = Field(description="where it was read from when the model was trained")
    files: int | None = Field(None, description="files in the fingerprint")
    sha256: str | None = Field(
        None, description="fingerprint: sha256 over sorted '<relative path> <sha256>' lines"
    )
    licence: str = Field(min_length=1)
    attribution: str = Field(min_length=1)
    redistribution: str = Field(
        "", description="what the licence lets us ship (the model derived from it, or the films themselves)"
    )


class Provenance(BaseModel):
    """What produced the candidate: given by whoever trained it (a file beside the release command)."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1, description="the exact command line that trained and exported it")
    data: list[DataSource] = Field(min_length=1)
    figures: dict[str, Any] = Field(
        default_factory=dict, description="per-source, withheld-style and shift figures, as measured"
    )
    notes: list[str] = Field(default_factory=list)


class ReleaseRecord(BaseModel):
    """``RELEASE.json``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: str
    released_at: datetime
    precision: str = Field(description="fp32, or the card's quantisation (int8, fp16)")
    files: dict[str, str] = Field(description="file name -> sha256 of every released file")
    provenance: Provenance
    validation_metrics: dict[str, float | None]
    majority_baseline: dict[str, float | None]
    decision_threshold: dict[str, Any] | None
    precision_choice: dict[str, Any] | None = Field(
        None, description="fp32 against int8 on CPU (load time, latency, agreement) and why this one"
    )


def fingerprint_folder(root: Path) -> tuple[int, str]:
    """(files, sha256) of a data folder: a hash over its sorted relative paths and file hashes."""
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        lines.append(f"{path.relative_to(root).as_posix()} {_sha256(path)}\n")
    return len(lines), hashlib.sha256("".join(lines).encode()).hexdigest()


def released_version(name_dir: Path) -> str | None:
    """The version ``RELEASED`` names, or None when nothing is released yet."""
    try:
        version = (name_dir / RELEASED_FILENAME).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    if not is_version_name(version):
        raise ReleaseError(
            f"{name_dir / RELEASED_FILENAME} holds {version[:60]!r}, not a version folder name"
        )
    return version


def check_released(name_dir: Path) -> tuple[ModelCard, ReleaseRecord]:
    """The released version's card and record, after the service's load checks and a hash of every
    file against ``RELEASE.json``; ``ReleaseError`` on any mismatch."""
    version = released_version(name_dir)
    if version is None:
        raise ReleaseError(f"{name_dir / RELEASED_FILENAME} does not exist: nothing is released")
    model_dir = name_dir / version
    card = verify_folder(model_dir, name_dir.name, version)
    try:
        record = ReleaseRecord.model_validate_json((model_dir / RECORD_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{model_dir / RECORD_FILENAME} cannot be read: {exc}") from None
    if (record.name, record.version) != (card.name, card.version):
        raise ReleaseError(f"{model_dir / RECORD_FILENAME} describes {record.name} {record.version}")
    for file_name, digest in record.files.items():
        path = model_dir / file_name
        if not path.is_file() or _sha256(path) != digest:
            raise ReleaseError(f"{path} is missing or differs from its sha256 in {RECORD_FILENAME}")
    return card, record


def verify_folder(model_dir: Path, name: str, version: str) -> ModelCard:
    """The folder's card if the service would serve it as ``name`` ``version``; else ``ReleaseError``."""
    try:
        card = verify_model_dir(model_dir)
    except ModelLoadError as exc:
        raise ReleaseError(f"{model_dir} fails the service's checks: {exc}") from None
    if (card.name, card.version) != (name, version):
        raise ReleaseError(f"{model_dir} holds a card for {card.name} {card.version}, not {name} {version}")
    return card


def release(
    candidate: Path,
    models: Path,
    provenance: Provenance,
    *,
    repo_root: Path,
    precision_choice: dict[str, Any] | None = None,
) -> Path:
    """Release the store version folder ``candidate`` into the repository store ``models``.

    Returns the released folder ``models/<name>/<version>``. The previous released version (if
    another) is removed; ``RELEASED`` and the managed blocks of ``.gitignore`` and ``.dockerignore``
    (under ``repo_root``) are rewritten.
    """
    card = load_candidate_card(candidate)
    if candidate.name != card.version:
        # Replicas report the card's version: a folder named otherwise would make it untraceable.
        raise ReleaseError(f"{candidate} holds a card for {card.name} {card.version}, not {candidate.name}")
    name_dir = models / card.name
    target = name_dir / card.version
    verify_folder(candidate, card.name, card.version)
    provenance = complete_provenance(provenance)
    previous = released_version(name_dir) if name_dir.is_dir() else None
    if target.exists() and target.resolve() != candidate.resolve():
        raise ReleaseError(
            f"{target} already exists and is not the candidate: versions are immutable, release another "
            "version name (or remove that local folder first)"
        )
    name_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".release-{card.version}-", dir=name_dir))
    try:
        files = _copy_release_files(candidate, staging)
        record = ReleaseRecord(
            name=card.name,
            version=card.version,
            released_at=datetime.now(UTC).replace(microsecond=0),
            precision="fp32" if card.quantisation is None else _precision_of(card),
            files=files,
            provenance=provenance,
            validation_metrics=card.validation_metrics,
            majority_baseline=card.majority_baseline,
            decision_threshold=None
            if card.decision_threshold is None
            else card.decision_threshold.model_dump(mode="json"),
            precision_choice=precision_choice,
        )
        (staging / RECORD_FILENAME).write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
        (staging / NOTES_FILENAME).write_text(render_notes(card, record), encoding="utf-8")
        verify_folder(staging, card.name, card.version)  # the copy, not only the source, must load
        if target.exists():  # the candidate was the repository store's own folder: replace it by its copy
            shutil.rmtree(target)
        staging.chmod(0o755)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if previous is not None and previous != card.version:
        shutil.rmtree(name_dir / previous, ignore_errors=True)
    _write_atomically(name_dir / RELEASED_FILENAME, card.version + "\n")
    write_ignore_blocks(repo_root, models, card.name, card.version)
    return target


def load_candidate_card(candidate: Path) -> ModelCard:
    try:
        return load_card(candidate)
    except ModelLoadError as exc:
        raise ReleaseError(str(exc)) from None


def write_ignore_blocks(repo_root: Path, models: Path, name: str, version: str) -> None:
    """Rewrite the managed blocks at the end of ``.gitignore`` and ``.dockerignore``: git tracks, and the
    image build context holds, ``<name>/RELEASED`` and ``<name>/<version>/`` of the store and nothing
    else of it (``*.onnx``, ignored elsewhere, included)."""
    prefix = f"{models.resolve().relative_to(repo_root.resolve()).as_posix()}/{name}"
    released = [f"!{prefix}/{RELEASED_FILENAME}", f"!{prefix}/{version}/"]
    write_block(
        repo_root / ".gitignore", [f"!{prefix}/", f"{prefix}/*", *released, f"!{prefix}/{version}/**"]
    )
    write_block(repo_root / ".dockerignore", released)


def write_block(path: Path, rules: list[str]) -> None:
    """Replace (or append) the managed block of an ignore file with ``rules``."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if BLOCK_BEGIN in lines and BLOCK_END in lines:
        start, end = lines.index(BLOCK_BEGIN), lines.index(BLOCK_END)
        lines = lines[:start] + lines[end + 1 :]
    while lines and not lines[-1].strip():
        lines.pop()
    _write_atomically(path, "\n".join([*lines, "", BLOCK_BEGIN, *rules, BLOCK_END]) + "\n")


def render_notes(card: ModelCard, record: ReleaseRecord) -> str:
    """``RELEASE.md``: the record, for a person reading the repository."""
    provenance = record.provenance
    lines = [
        f"# Released model: {record.name} {record.version}",
        "",
        f"Released {record.released_at.isoformat()} ({record.precision}); architecture {card.architecture}, "
        f"input {card.pixel_contract.height}x{card.pixel_contract.width}, "
        f"classes {', '.join(card.class_names)}.",
        "Written by `python -m training release`; the same facts, machine-readable, are in RELEASE.json.",
        "",
        "## How it was made",
        "",
        "```",
        provenance.command,
        "```",
        "",
        "| data source | files | fingerprint (sha256) | licence |",
        "| --- | --- | --- | --- |",
    ]
    for source in provenance.data:
        lines.append(
            f"| {source.name} (`{source.path}`) | {source.files} | `{source.sha256}` | {source.licence} |"
        )
    lines += ["", "Attribution:", ""]
    for source in provenance.data:
        lines.append(f"- **{source.name}**: {source.attribution}")
        if source.redistribution:
            lines.append(f"  Redistribution: {source.redistribution}")
    lines += [
        "",
        "## Figures",
        "",
        "Validation split (patient-level, the run's own), at the card's operating point:",
        "",
    ]
    lines += _metric_table(
        {"model": record.validation_metrics, "majority baseline": record.majority_baseline}
    )
    if record.decision_threshold is not None:
        threshold = record.decision_threshold
        lines += [
            "",
            f"Operating point: p({threshold['positive_class']}) >= {threshold['value']:.4f} "
            f"({threshold['method']}).",
        ]
    if provenance.figures:
        lines += [
            "",
            "Further figures (as measured by whoever trained it):",
            "",
            "```json",
            json.dumps(provenance.figures, indent=2),
            "```",
        ]
    if record.precision_choice:
        lines += ["", "## fp32 or int8", "", "```json", json.dumps(record.precision_choice, indent=2), "```"]
    if provenance.notes:
        lines += ["", "## Notes", ""] + [f"- {note}" for note in provenance.notes]
    lines += ["", "## Files", "", "| file | sha256 |", "| --- | --- |"]
    lines += [f"| {name} | `{digest}` |" for name, digest in sorted(record.files.items())]
    return "\n".join(lines) + "\n"


def _metric_table(columns: dict[str, dict[str, float | None]]) -> list[str]:
    keys = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity")
    lines = ["| metric | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for key in keys:
        values = [columns[c].get(key) for c in columns]
        lines.append(f"| {key} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in values) + " |")
    return lines


def complete_provenance(provenance: Provenance) -> Provenance:
    """Fingerprint every data source that has none yet and whose folder is here; refuse the rest."""
    sources = []
    for source in provenance.data:
        if not source.sha256 or source.files is None:
            folder = Path(source.path)
            if not folder.is_dir():
                raise ReleaseError(
                    f"data source {source.name!r} has no fingerprint (files, sha256) and {folder} is not "
                    "here to compute one"
                )
            files, digest = fingerprint_folder(folder)
            sources.append(source.model_copy(update={"files": files, "sha256": digest}))
        else:
            sources.append(source)
    return provenance.model_copy(update={"data": sources})


def _copy_release_files(candidate: Path, staging: Path) -> dict[str, str]:
    """Copy the version's own files (not an older RELEASE record) and return their hashes."""
    files: dict[str, str] = {}
    for path in sorted(candidate.iterdir()):
        if not path.is_file() or path.name in (RECORD_FILENAME, NOTES_FILENAME):
            continue
        if path.suffix not in _RELEASED_SUFFIXES:
            continue
        shutil.copy2(path, staging / path.name)
        files[path.name] = _sha256(staging / path.name)
    for required in (ONNX_FILENAME, CARD_FILENAME):
        if required not in files:
            raise ReleaseError(f"{candidate} has no {required}")
    return files


def _precision_of(card: ModelCard) -> str:
    quantisation = card.quantisation
    assert quantisation is not None
    return "int8" if quantisation.calibration_films > 0 else "fp16"  # fp16 calibrates nothing


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
