"""One spooled film through the same contract, runtime and result builders as ``POST /v1/predict``."""

import io
from dataclasses import dataclass

import pydicom

from service.contract import InputError
from service.inference.runtime import ModelRuntime
from service.outputs.dicom_results import build_secondary_capture, build_structured_report
from service.outputs.overlay import blend_overlay, overlay_background
from service.pacs.uids import result_uid, series_uid, stamp


@dataclass(frozen=True)
class Triaged:
    predicted_class: str
    probability: float  # of the positive class when the model has an operating point, else of the call
    triage_level: str | None
    model_name: str
    model_version: str
    sr: bytes
    sc: bytes
    sr_instance_uid: str
    sc_instance_uid: str
    ood_score: float | None = None  # None for a model without an out-of-distribution detector
    ood_threshold: float | None = None


def triage_film(data: bytes, runtime: ModelRuntime, *, max_pixels: int, overlay_max_side: int) -> Triaged:
    """Classify one DICOM film and build its SR and SC (blocking: run it on a worker thread).

    Raises ``InputError`` for a film the contract refuses (a poison film: dead-letter it).
    """
    tensor, decoded = runtime.prepare(data, max_pixels)
    if decoded.dicom is None:
        raise InputError("not_dicom", "The spooled instance is not a DICOM film.", 422)
    background = overlay_background(decoded.pixels, overlay_max_side, tensor[0])
    del decoded
    inference = runtime.submit(tensor).result()  # joins the service's micro-batches
    if runtime.is_out_of_distribution(inference):
        raise InputError(
            "out_of_distribution",
            "The image does not resemble the frontal chest radiographs this model was trained on.",
            422,
        )
    names = runtime.class_names
    predicted = runtime.decide(inference.probabilities)
    probabilities = {name: float(p) for name, p in zip(names, inference.probabilities, strict=True)}
    threshold = runtime.threshold
    card = runtime.card
    png = blend_overlay(background, inference.cams[names.index(predicted)])
    sc = build_secondary_capture(
        data, png, model_name=card.name, model_version=card.version, class_name=predicted
    )
    level = runtime.triage_level(predicted)
    sr = build_structured_report(
        data,
        probabilities=probabilities,
        predicted_class=predicted,
        triage_level=level,
        threshold=threshold.value if threshold else None,
        positive_class=threshold.positive_class if threshold else None,
        model_name=card.name,
        model_version=card.version,
    )
    source = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    sop_uid, study_uid = str(source.SOPInstanceUID), str(source.StudyInstanceUID)
    number = int(source.get("InstanceNumber", 1) or 1)
    stamped = {}
    for kind, built in (("sr", sr), ("sc", sc)):
        uid = result_uid(kind, sop_uid, card.name, card.version)
        series = series_uid(kind, study_uid, card.name, card.version)
        stamped[kind] = (
            uid,
            stamp(built, sop_instance_uid=uid, series_instance_uid=series, instance_number=number),
        )
    return Triaged(
        predicted_class=predicted,
        probability=probabilities[threshold.positive_class if threshold else predicted],
        triage_level=level,
        model_name=card.name,
        model_version=card.version,
        sr=stamped["sr"][1],
        sc=stamped["sc"][1],
        sr_instance_uid=stamped["sr"][0],
        sc_instance_uid=stamped["sc"][0],
        ood_score=inference.ood_score if card.ood else None,
        ood_threshold=card.ood.threshold if card.ood else None,
    )
