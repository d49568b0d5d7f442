"""Hospital DICOMs (CR/DX, MONOCHROME1, 12-16 bit, JPEG 2000 / JPEG-LS, 2-3k px) built in code from
ordinary films pass the out-of-distribution gate: with the tiny session model always (the mechanics:
decode, window, invert, downscale to the same model input), and with the released default model on
adult films where the data and the model are present."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.contract import (
    DecodedImage,
    ModelCard,
    SourceFormat,
    decode_image,
    load_model_input,
    to_model_input,
)
from service.contract.model_card import CARD_FILENAME, ONNX_FILENAME
from tests.factories import SHARED_DATA
from training.data.dicom_films import HOSPITAL_FILMS, DicomFilm, hospital_dicom
from training.fit.checkpoint import load_split, load_trained_model

REPO = Path(__file__).resolve().parents[3]
ADULT = SHARED_DATA / "covid19-radiography224"


def _gate(model_dir: Path) -> tuple[ort.InferenceSession, ModelCard]:
    card = ModelCard.model_validate_json((model_dir / CARD_FILENAME).read_text())
    assert card.ood is not None
    return ort.InferenceSession(str(model_dir / ONNX_FILENAME), providers=["CPUExecutionProvider"]), card


def _score(session: ort.InferenceSession, card: ModelCard, data: bytes) -> float:
    contract = card.pixel_contract
    tensor, _ = load_model_input(data, contract.height, contract.width)
    return float(session.run(["ood_score"], {"image": tensor[np.newaxis]})[0][0])


@pytest.mark.parametrize("film", HOSPITAL_FILMS, ids=lambda f: f.label.replace(" ", "-"))
def test_hospital_dicoms_decode_to_the_films_model_input(film: DicomFilm) -> None:
    rng = np.random.default_rng(0)
    source = np.clip(np.linspace(0.1, 0.9, 64)[None, :] + 0.05 * rng.standard_normal((64, 64)), 0, 1)
    small = DicomFilm(film.modality, film.photometric, film.bits_stored, 240, film.transfer_syntax)
    data = hospital_dicom(source, small)
    decoded = decode_image(data)
    assert decoded.dicom is not None
    assert decoded.dicom.photometric_interpretation == film.photometric
    assert decoded.dicom.bits_stored == film.bits_stored
    assert decoded.dicom.transfer_syntax_uid == str(film.transfer_syntax)
    assert decoded.pixels.shape == (240, 200)
    dicom_input, _ = load_model_input(data, 64, 64)
    plain = to_model_input(DecodedImage(source.astype(np.float32), SourceFormat.PNG), 64, 64)
    # MONOCHROME1 inverted back, window and rescale undone by the percentile stretch: the same input
    assert float(np.abs(dicom_input - plain).mean()) < 0.03


def test_hospital_dicoms_of_training_films_go_through_the_tiny_models_gate(
    tiny_ood_model_dir: Path, tiny_run_dir: Path
) -> None:
    """The mechanics: each hospital storage of a training film reaches the graph as (nearly) the same
    model input as its PNG and gets a finite OOD score. Whether it passes is judged with the released
    model below: the tiny model's Gaussians, fitted on a few dozen synthetic films, are far too tight
    for the faint smoothing an upscale to detector size and back leaves."""
    session, card = _gate(tiny_ood_model_dir)
    _, _, summary = load_trained_model(tiny_run_dir)
    films = load_split(tiny_run_dir, summary.class_names, 64).train.samples[:4]
    for index, sample in enumerate(films):
        png = sample.path.read_bytes()
        plane = decode_image(png).pixels / 255.0
        film = HOSPITAL_FILMS[index % len(HOSPITAL_FILMS)]
        stored = DicomFilm(film.modality, film.photometric, film.bits_stored, 600, film.transfer_syntax)
        data = hospital_dicom(plane, stored)
        png_input, _ = load_model_input(png, 64, 64)
        dicom_input, decoded = load_model_input(data, 64, 64)
        assert decoded.dicom is not None
        assert decoded.dicom.photometric_interpretation == film.photometric
        # these synthetic films carry 5% pixel noise, which the bicubic upscale and the antialiased
        # downscale smooth a little (a real adult film differs by 0.003 this way)
        assert float(np.abs(dicom_input - png_input).mean()) < 0.06, film.label
        assert np.isfinite(_score(session, card, data))


def _released_model() -> Path:
    released = REPO / "models" / "cxr-pneumonia" / "RELEASED"
    if not released.is_file():
        pytest.skip("no released model (models/cxr-pneumonia/RELEASED) in this checkout")
    return released.parent / released.read_text().strip()


def test_hospital_dicoms_of_adult_films_pass_the_released_models_gate() -> None:
    if not ADULT.is_dir():
        pytest.skip(f"adult films not found at {ADULT} (see ../shared/data/README.md)")
    session, card = _gate(_released_model())
    assert card.ood is not None
    films = sorted((ADULT / "Normal").glob("*.jpeg"))[:2] + sorted((ADULT / "COVID").glob("*.jpeg"))[:1]
    refused = []
    for index, (path, film) in enumerate(zip(films, HOSPITAL_FILMS[:3], strict=True)):
        plane = decode_image(path.read_bytes()).pixels / 255.0
        data = hospital_dicom(plane, film, seed=index)
        assert 2048 <= decode_image(data).height <= 3000
        if _score(session, card, data) > card.ood.threshold:
            refused.append(f"{path.name} as {film.label}")
    assert not refused, refused
