"""The review page at /ui, in a real headless Chromium against a real ``python -m service`` on
loopback with the tiny model (with its out-of-distribution detector): what a radiologist sees for a
pneumonia-like film, a normal film, a DICOM film, a refused image and a wrong key; the CSP header;
and that no request leaves the service's origin and no key is kept anywhere but in memory.

With CXR_UI_SCREENSHOTS=<folder> each state is also saved there as a PNG (docs/img holds them).
"""

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bench.service_process import free_port
from service.api.routes.ui import CONTENT_SECURITY_POLICY
from service.inference.runtime import ModelRuntime
from service.settings import Settings
from tests.factories import dicom_bytes, dicom_dataset
from tests.service.api.browser import (
    CHROMIUM_ARGS,
    DESKTOP,
    TABLET,
    WAIT_MS,
    PageLog,
    chromium_executable,
    screenshot_dir,
)
from tests.service.live import (
    AUTH_HEADERS,
    TEST_API_KEY,
    post_file,
    service_env,
    service_process,
    strict_json,
)
from training.ood.film_set import noise_images

OVERLAY_SIDE = 512  # above the test films' size: the overlay is the film's own size


@dataclass(frozen=True)
class Film:
    png: bytes
    dicom: bytes  # the same pixels in a DX object of its own study


@dataclass(frozen=True)
class Films:
    pneumonia: Film
    normal: Film


@dataclass(frozen=True)
class Server:
    url: str
    log: Path


def _as_film(path: Path) -> Film:
    with Image.open(path) as image:
        plane = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    return Film(png=path.read_bytes(), dicom=dicom_bytes(dicom_dataset(plane)))


@pytest.fixture(scope="module")
def films(tiny_ood_model_dir: Path, tiny_dataset: Path) -> Films:
    """The training film the model calls most surely urgent, and the most surely routine one, among
    those its out-of-distribution gate lets through, as PNG and as DICOM alike (the tiny model's
    margins are thin). Fitted on 64 px training films, the gate refuses the same films enlarged, so
    they are sent at their size."""
    runtime = ModelRuntime.load(Settings(model_dir=tiny_ood_model_dir, execution_provider="cpu"))
    threshold, ood = runtime.threshold, runtime.card.ood
    assert threshold is not None and ood is not None
    positive = runtime.card.class_names.index(threshold.positive_class)

    def score(data: bytes) -> tuple[bool, float]:
        inference = runtime.infer(runtime.prepare(data, 10_000_000)[0])
        assert inference.ood_score is not None
        return inference.ood_score <= ood.threshold, float(inference.probabilities[positive])

    urgent: list[tuple[float, Film]] = []
    routine: list[tuple[float, Film]] = []
    for path in sorted(tiny_dataset.glob("*/*.png")):
        film = _as_film(path)
        (png_ok, p), (dicom_ok, p_dicom) = score(film.png), score(film.dicom)
        if png_ok and dicom_ok and (p >= threshold.value) == (p_dicom >= threshold.value):
            (urgent if p >= threshold.value else routine).append((p, film))
    assert urgent and routine, "the tiny model must call some accepted films urgent and some routine"
    return Films(pneumonia=max(urgent, key=lambda s: s[0])[1], normal=min(routine, key=lambda s: s[0])[1])


@pytest.fixture(scope="module")
def server(
    tiny_ood_model_dir: Path, api_keys_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log_path = tmp_path_factory.mktemp("ui-server") / "service.log"
    env = service_env(
        model_dir=str(tiny_ood_model_dir),
        api_keys_file=str(api_keys_file),
        port=str(free_port()),
        execution_provider="cpu",
        overlay_max_side=str(OVERLAY_SIDE),
    )
    with log_path.open("wb") as log, service_process(env, log) as url:
        yield Server(url, log_path)


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0, headers=AUTH_HEADERS) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_executable()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        yield launched
        launched.close()


@dataclass
class Session:
    page: Page
    log: PageLog
    origin: str

    def assert_clean(self) -> None:
        """Nothing left the origin, the page kept to its own CSP and raised no error."""
        assert self.log.foreign_requests(self.origin) == []
        assert self.log.csp_violations() == []
        assert self.log.page_errors == []


def _open(browser: Browser, server: Server, viewport: dict[str, int]) -> Session:
    context = browser.new_context(viewport=viewport, service_workers="block")  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    log = PageLog()
    context.on("request", lambda request: log.requests.append(request.url))
    page.on("console", lambda message: log.console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    page.goto(f"{server.url}/ui")
    expect(page.get_by_test_id("ready")).to_be_attached()
    return Session(page, log, server.url)


@pytest.fixture
def session(browser: Browser, server: Server) -> Iterator[Session]:
    opened = _open(browser, server, DESKTOP)
    yield opened
    opened.page.context.close()


def _shot(page: Page, name: str) -> None:
    folder = screenshot_dir()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _unlock(page: Page, key: str = TEST_API_KEY) -> None:
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Open").click()


def _upload(page: Page, data: bytes, name: str, mime: str) -> None:
    page.locator("#file-input").set_input_files({"name": name, "mimeType": mime, "buffer": data})


def _percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def _figure(value: float | None) -> str:
    """A card metric as the page writes it: 3 decimals, whole numbers above 1 as counts."""
    if value is None:
        return "n/a"
    return str(int(value)) if float(value).is_integer() and abs(value) > 1 else f"{value:.3f}"


def _expect_prediction_shown(page: Page, body: dict[str, Any]) -> None:
    """Every figure of the API's answer for this film is on the page, as the API gave it."""
    result = page.get_by_test_id("result")
    expect(result).to_be_visible()
    triage = body["triage"]
    expect(page.get_by_test_id("triage-level")).to_have_text(triage["level"].upper())
    positive = triage["positive_class"]
    expect(page.get_by_test_id("triage-reason")).to_contain_text(
        f"p({positive}) = {_percent(body['probabilities'][positive])}"
    )
    meaning = page.get_by_test_id("triage-meaning")
    expect(meaning).to_contain_text(f"p({positive}) ≥ {triage['threshold']:.4f}")
    expect(meaning).to_contain_text(_percent(triage["validation_sensitivity"]))
    expect(meaning).to_contain_text(_percent(triage["validation_specificity"]))
    for name, p in body["probabilities"].items():
        row = page.get_by_test_id("probabilities").locator(f'li[data-class="{name}"]')
        expect(row).to_contain_text(_percent(p))
    ood = body["out_of_distribution"]
    expect(page.get_by_test_id("ood")).to_contain_text(f"score {ood['score']:.3f}")
    expect(page.get_by_test_id("ood")).to_contain_text(f"above {ood['threshold']:.3f}")
    for layer in ("film", "overlay"):
        image = page.get_by_test_id(layer)
        expect(image).to_be_visible()
        size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert size == [body["gradcam"]["width"], body["gradcam"]["height"]]


def test_the_page_is_served_openly_under_a_strict_csp(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30.0) as anonymous:
        redirect = anonymous.get("/ui")
        assert redirect.status_code == 308 and redirect.headers["location"] == "ui/"
        page = anonymous.get("/ui/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert csp == CONTENT_SECURITY_POLICY
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'self'"
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
        assert "unsafe" not in csp and "http" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        # Scripts and styles come from files, never inline; no other origin is named.
        html = page.text
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None
        assert "<style" not in html and " style=" not in html
        assert "//" not in html
        for name, media in (("app.js", "text/javascript"), ("app.css", "text/css")):
            asset = anonymous.get(f"/ui/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(media)
        # Only the page's own files: nothing else of the package, and no data, without a key.
        for path in ("/ui/routes.py", "/ui/..%2Fmain.py", "/ui/static", "/ui/%2e%2e/settings.py"):
            assert anonymous.get(path).status_code == 404, path
        assert anonymous.get("/v1/models").status_code == 401


def test_a_wrong_key_gets_a_clear_message_and_no_data(session: Session) -> None:
    page = session.page
    _unlock(page, "not-the-key")
    expect(page.locator("#key-message")).to_have_text(
        "This API key was not accepted. Check it, or ask whoever runs the service for a valid one."
    )
    expect(page.locator("#views")).to_be_hidden()
    expect(page.locator("#view-film")).to_be_hidden()
    assert page.get_by_label("API key").input_value() == ""
    _shot(page, "wrong-key")
    session.assert_clean()


def test_pneumonia_and_normal_films_show_what_the_api_says(
    session: Session, films: Films, api: httpx.Client
) -> None:
    page = session.page
    _shot(page, "key")
    _unlock(page)
    expect(page.locator("#view-film")).to_be_visible()
    expected = {}
    for name, data in (("pneumonia", films.pneumonia.png), ("normal", films.normal.png)):
        response = post_file(api, data, params={"film": "true"})
        assert response.status_code == 200, response.text
        expected[name] = strict_json(response)
    assert expected["pneumonia"]["triage"]["level"] == "urgent"
    assert expected["normal"]["triage"]["level"] == "routine"

    _upload(page, films.pneumonia.png, "pneumonia.png", "image/png")
    _expect_prediction_shown(page, expected["pneumonia"])
    _shot(page, "urgent")
    overlay = page.get_by_test_id("overlay")
    page.get_by_label("Heat-map opacity").fill("40")
    assert overlay.evaluate("img => getComputedStyle(img).opacity") == "0.4"
    page.get_by_label("Show heat map").uncheck()
    expect(overlay).to_be_hidden()
    expect(page.get_by_test_id("film")).to_be_visible()
    _shot(page, "heat-map-off")

    _upload(page, films.normal.png, "normal.png", "image/png")
    _expect_prediction_shown(page, expected["normal"])
    expect(page.get_by_test_id("overlay")).to_be_visible()  # a new film starts with the map on
    _shot(page, "routine")
    session.assert_clean()


def test_a_dicom_film_is_shown_through_the_service(session: Session, films: Films, api: httpx.Client) -> None:
    data = films.normal.dicom
    response = post_file(api, data, params={"film": "true"})
    assert response.status_code == 200, response.text
    body = strict_json(response)
    assert body["image"]["source_format"] == "dicom"
    page = session.page
    _unlock(page)
    _upload(page, data, "film.dcm", "application/dicom")
    # The browser cannot decode DICOM: the film it shows is the one the service returned.
    _expect_prediction_shown(page, body)
    expect(page.get_by_test_id("result")).to_contain_text("DICOM")
    session.assert_clean()


def test_a_refused_image_shows_the_reason_in_words(session: Session, api: httpx.Client) -> None:
    noise = next(iter(noise_images(1))).png
    refused = post_file(api, noise)
    assert refused.status_code == 422 and strict_json(refused)["code"] == "out_of_distribution"
    page = session.page
    _unlock(page)
    _upload(page, noise, "noise.png", "image/png")
    reason = page.get_by_test_id("refusal-reason")
    expect(reason).to_have_text(re.compile(r"^This image does not look like the frontal chest radiographs"))
    refusal = page.get_by_test_id("refusal").inner_text()
    assert "422" not in refusal and "out_of_distribution" not in refusal
    expect(page.get_by_test_id("result")).to_have_count(0)
    _shot(page, "refused")

    _upload(page, b"GIF89a not a film", "film.gif", "image/gif")
    expect(reason).to_have_text("This file is not a PNG, JPEG or DICOM image, so it was not read.")
    session.assert_clean()


def test_worklist_shows_the_deployment_answer(session: Session, api: httpx.Client) -> None:
    page = session.page
    _unlock(page)
    page.get_by_role("button", name="Worklist").click()
    message = page.get_by_test_id("worklist-message")
    answer = api.get("/v1/studies")
    # No such route, or DICOM intake not configured on this server (issue 17's gateway).
    if answer.status_code == 404 or strict_json(answer).get("code") == "pacs_not_configured":
        expect(message).to_have_text("The worklist is not available on this deployment.")
    else:
        assert answer.status_code == 200, answer.text
        expect(page.locator("#worklist-body")).not_to_be_empty()
    _shot(page, "worklist")
    session.assert_clean()


def test_model_view_shows_the_card_beside_the_baseline(session: Session, api: httpx.Client) -> None:
    card = strict_json(api.get("/v1/models"))
    page = session.page
    _unlock(page)
    expect(page.locator("#session-model")).to_have_text(f"{card['name']} {card['version']}")
    page.get_by_role("button", name="Model").click()
    view = page.get_by_test_id("model-card")
    expect(view).to_be_visible()
    expect(view).to_contain_text(card["architecture"])
    expect(view).to_contain_text(card["training_data"]["source"])
    threshold = card["decision_threshold"]
    expect(view).to_contain_text(f"p({threshold['positive_class']}) ≥ {threshold['value']:.4f}")
    metrics = page.get_by_role("table", name="Validation metrics")
    for name, value in card["validation_metrics"].items():
        row = metrics.get_by_role("row", name=re.compile(f"^{name.replace('_', ' ')} ", re.IGNORECASE))
        expect(row).to_have_count(1)
        expected = [_figure(value), _figure(card["majority_baseline"].get(name))]
        expect(row.get_by_role("cell")).to_have_text(expected)
    expect(view).to_contain_text(f"temperature {card['calibration']['temperature']:.3f}")
    expect(view).to_contain_text(f"{card['out_of_distribution']['threshold']:.3f}")
    _shot(page, "model")
    session.assert_clean()


def test_the_key_stays_in_memory_only(session: Session, films: Films) -> None:
    page = session.page
    _unlock(page)
    _upload(page, films.normal.png, "normal.png", "image/png")
    expect(page.get_by_test_id("result")).to_be_visible()
    stored = page.evaluate("() => [document.cookie, localStorage.length, sessionStorage.length]")
    assert stored == ["", 0, 0]
    assert page.context.cookies() == []
    assert all(TEST_API_KEY not in url for url in session.log.requests)
    assert TEST_API_KEY not in page.content()
    page.get_by_role("button", name="Forget key").click()
    expect(page.locator("#access")).to_be_visible()
    expect(page.get_by_test_id("result")).to_have_count(0)
    session.assert_clean()


def test_keyboard_only_use(session: Session) -> None:
    page = session.page
    # The key field has focus on arrival; Enter submits.
    page.keyboard.type(TEST_API_KEY)
    page.keyboard.press("Enter")
    expect(page.locator("#view-film")).to_be_visible()
    focused: list[str] = []
    for _ in range(8):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("() => document.activeElement.textContent.trim()"))
        if focused[-1] == "Worklist":
            break
    assert focused[-1] == "Worklist", focused
    page.keyboard.press("Enter")
    expect(page.locator("#view-worklist")).to_be_visible()
    assert page.evaluate("() => document.activeElement.id") == "worklist-title"
    session.assert_clean()


@pytest.mark.parametrize("viewport", [DESKTOP, TABLET], ids=["1280x800", "768x1024"])
def test_usable_without_horizontal_scrolling(
    browser: Browser, server: Server, films: Films, viewport: dict[str, int]
) -> None:
    session = _open(browser, server, viewport)
    try:
        page = session.page
        _unlock(page)
        _upload(page, films.pneumonia.png, "pneumonia.png", "image/png")
        expect(page.get_by_test_id("result")).to_be_visible()
        expect(page.get_by_test_id("overlay")).to_be_visible()
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= viewport["width"]
        for view in ("Model", "Worklist"):
            page.get_by_role("button", name=view).click()
            assert page.evaluate("() => document.documentElement.scrollWidth") <= viewport["width"], view
        if viewport == TABLET:
            page.get_by_role("button", name="Try a film").click()
            _shot(page, "tablet")
        session.assert_clean()
    finally:
        session.page.context.close()


# Shapes the page must read before any deployment serves them: issue 16's card (per-source figures,
# intended population, shift benchmark) and issue 17's GET /v1/studies. The page's own modules render
# them in the browser; the data is built here in the documented shapes.
PER_SOURCE = {
    "kermany": {"films": 120, "positives": 80, "auc": 0.991, "sensitivity": 0.975, "specificity": 0.9},
    "covid19-radiography": {
        "films": 300,
        "positives": 100,
        "auc": 0.962,
        "sensitivity": 0.95,
        "specificity": 0.871,
    },
}
SHIFTS = {
    "films": 420,
    "per_source_films": {"kermany": 120, "covid19-radiography": 300},
    "results": [
        {
            "shift": "gamma",
            "severity": 2,
            "setting": "gamma 1.6",
            "auc": 0.944,
            "sensitivity": 0.93,
            "specificity": 0.85,
            "per_source_auc": {"kermany": 0.97, "covid19-radiography": 0.931},
        }
    ],
}


def _study(uid: str, level: str | None, probability: float | None, delivery: str) -> dict[str, Any]:
    return {
        "study_instance_uid": uid,
        "received_at": "2026-12-06T00:10:00Z",
        "finished_at": None if level is None else "2026-12-06T00:10:05Z",
        "triage_level": level,
        "probability": probability,
        "model_version": "3",
        "delivery_state": delivery,
        "instances": [
            {
                "sop_instance_uid": f"{uid}.1",
                "series_instance_uid": f"{uid}.9",
                "source": "dimse",
                "state": "queued" if level is None else "done",
                "reason": None,
                "received_at": "2026-12-06T00:10:00Z",
                "finished_at": None,
                "predicted_class": None,
                "triage_level": level,
                "probability": probability,
                "model_name": "cxr-pneumonia",
                "model_version": "3",
                "delivery_state": delivery,
                "delivery_attempts": 0,
                "delivery_error": None,
                "sr_instance_uid": None,
                "sc_instance_uid": None,
            }
        ],
    }


def _cells(page: Page, table: str, row: str) -> list[str]:
    located = page.get_by_role("table", name=table).get_by_role("row", name=re.compile(f"^{re.escape(row)} "))
    expect(located).to_have_count(1)
    return [text.strip() for text in located.get_by_role("cell").all_inner_texts()]


def test_a_card_with_per_source_figures_is_rendered(
    session: Session, api: httpx.Client, films: Films
) -> None:
    card = strict_json(api.get("/v1/models"))
    card["decision_threshold"]["per_source"] = PER_SOURCE
    card["intended_population"] = "Adults and children: frontal chest films"
    card["shift_benchmark"] = SHIFTS
    prediction = strict_json(post_file(api, films.normal.png, params={"film": "true"}))
    page = session.page
    page.evaluate(
        """async ([card, prediction]) => {
            const { renderModel } = await import("./model.js");
            const { renderPrediction } = await import("./result.js");
            const { UrlBag } = await import("./dom.js");
            const main = document.querySelector("main");
            main.append(renderModel(card), renderPrediction(prediction, card, new UrlBag()));
        }""",
        [card, prediction],
    )
    model_table = "Each source's validation films at this threshold"
    triage_table = "This operating point on each source's validation films"
    for caption in (model_table, triage_table):
        assert _cells(page, caption, "kermany") == ["120", "80", "0.991", "0.975", "0.900"]
        assert _cells(page, caption, "covid19-radiography") == ["300", "100", "0.962", "0.950", "0.871"]
    expect(page.get_by_test_id("model-card")).to_contain_text("Adults and children: frontal chest films")
    shifts = page.get_by_role("table", name="Results")
    expect(shifts.get_by_role("columnheader", name="Per source AUC · kermany")).to_have_count(1)
    assert _cells(page, "Results", "1") == [
        "gamma",
        "2",
        "gamma 1.6",
        "0.944",
        "0.930",
        "0.850",
        "0.970",
        "0.931",
    ]
    session.assert_clean()


def test_the_worklist_puts_urgent_first_and_opens_a_study(session: Session) -> None:
    body = {
        "total": 5,
        "limit": 3,
        "offset": 0,
        "studies": [
            _study("1.2.3.1", None, None, "pending"),
            _study("1.2.3.2", "routine", 0.12, "delivered"),
            _study("1.2.3.3", "urgent", 0.91, "retrying"),
        ],
    }
    page = session.page
    page.evaluate(
        """async (body) => {
            const { Worklist, urgentFirst } = await import("./worklist.js");
            const part = (tag) => document.querySelector("main").appendChild(document.createElement(tag));
            const worklist = new Worklist({
                host: part("div"), updated: part("p"), refreshButton: part("button"), detail: part("div"),
                onAuthFailure: () => false,
            });
            worklist.render(urgentFirst(body.studies), body.total);
        }""",
        body,
    )
    table = page.get_by_role("table", name="Triaged studies, urgent first (the first 3 of 5)")
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(3)
    # Urgent first; the others keep the service's order.
    for i, (level, uid) in enumerate([("URGENT", "1.2.3.3"), ("PENDING", "1.2.3.1"), ("ROUTINE", "1.2.3.2")]):
        expect(rows.nth(i)).to_contain_text(level)
        expect(rows.nth(i)).to_contain_text(uid)
    expect(rows.nth(0)).to_contain_text("91.0%")
    rows.nth(0).get_by_role("button").click()
    detail = page.get_by_test_id("study-detail")
    expect(detail).to_contain_text("1.2.3.3")
    assert _cells(page, "Films of this study", "1.2.3.3.1")[:2] == ["done", "URGENT"]
    assert page.evaluate("() => document.activeElement.textContent") == "Study"
    session.assert_clean()


def _stow_body(film: bytes) -> tuple[bytes, str]:
    """One DICOM instance as a STOW-RS multipart/related body, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            film,
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


@pytest.fixture(scope="module")
def gateway(
    tiny_ood_model_dir: Path, api_keys_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The service with DICOM intake on (a spool, no destination): GET /v1/studies has a worklist."""
    folder = tmp_path_factory.mktemp("ui-gateway")
    env = service_env(
        model_dir=str(tiny_ood_model_dir),
        api_keys_file=str(api_keys_file),
        port=str(free_port()),
        execution_provider="cpu",
        pacs_spool_dir=str(folder / "spool"),
        pacs_poll_s="0.2",
    )
    with (folder / "service.log").open("wb") as log, service_process(env, log) as url:
        yield Server(url, folder / "service.log")


def _finished_studies(api: httpx.Client, expected: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT_MS / 1000 * 4  # generous: a loaded machine, never a timing check
    while True:
        studies = strict_json(api.get("/v1/studies"))["studies"]
        if len(studies) == expected and all(s["finished_at"] is not None for s in studies):
            return list(studies)
        assert time.monotonic() < deadline, f"studies not triaged in time: {studies}"
        time.sleep(0.5)


def test_the_worklist_shows_the_gateway_studies_urgent_first(
    browser: Browser, gateway: Server, films: Films
) -> None:
    with httpx.Client(base_url=gateway.url, timeout=60.0, headers=AUTH_HEADERS) as api:
        for film in (films.normal.dicom, films.pneumonia.dicom):  # the routine study arrives first
            body, content_type = _stow_body(film)
            stored = api.post("/dicomweb/studies", content=body, headers={"Content-Type": content_type})
            assert stored.status_code == 200, stored.text
        studies = _finished_studies(api, 2)
        positive = strict_json(api.get("/v1/models"))["decision_threshold"]["positive_class"]
    by_level = {study["triage_level"]: study for study in studies}
    assert set(by_level) == {"urgent", "routine"}
    session = _open(browser, gateway, DESKTOP)
    try:
        page = session.page
        _unlock(page)
        page.get_by_role("button", name="Worklist").click()
        rows = page.get_by_role("table", name="Triaged studies, urgent first").locator("tbody tr")
        expect(rows).to_have_count(2)
        for i, level in enumerate(("urgent", "routine")):
            expect(rows.nth(i)).to_contain_text(level.upper())
            expect(rows.nth(i)).to_contain_text(by_level[level]["study_instance_uid"])
            expect(rows.nth(i)).to_contain_text(_percent(by_level[level]["probability"]))
        # Opened from the keyboard: focus the study's button, Enter.
        rows.nth(0).get_by_role("button").focus()
        page.keyboard.press("Enter")
        detail = page.get_by_test_id("study-detail")
        (instance,) = by_level["urgent"]["instances"]
        expect(detail).to_contain_text(instance["sop_instance_uid"])
        _expect_study_film_shown(page, instance, positive)
        _shot(page, "worklist-gateway")
        # The SR, saved as DICOM through the page: the very object the worklist names.
        with page.expect_download() as download:
            detail.get_by_role("button", name="Save the SR (DICOM)").click()
        saved = pydicom.dcmread(download.value.path())
        assert saved.SOPInstanceUID == instance["sr_instance_uid"]
        # The results were fetched by UID with the key in a header: never in a URL.
        fetched = [url for url in session.log.requests if "/instances/" in url]
        assert any(url.endswith("/overlay.png") for url in fetched), fetched
        assert not [url for url in session.log.requests if TEST_API_KEY in url]
        session.assert_clean()
    finally:
        session.page.context.close()


def _expect_study_film_shown(page: Page, instance: dict[str, Any], positive: str) -> None:
    """The opened study's film: the overlay (and the bare film under it) loaded from the service,
    at the size the service rendered it, with the instance's probability, level and OOD score."""
    film = page.get_by_test_id("study-detail").get_by_test_id("film-result")
    expect(film).to_have_count(1)
    for layer in ("overlay", "film"):
        image = film.get_by_test_id(layer)
        expect(image).to_be_visible()
        expect(image).to_have_attribute("src", re.compile(r"^blob:"))
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    widths = [film.get_by_test_id(layer).evaluate("img => img.naturalWidth") for layer in ("overlay", "film")]
    assert widths[0] == widths[1] > 0
    expect(film).to_contain_text(instance["triage_level"].upper())
    expect(film.get_by_test_id("film-probability")).to_contain_text(
        f"p({positive}) = {_percent(instance['probability'])}"
    )
    assert instance["ood_score"] is not None and instance["ood_threshold"] is not None
    expect(film.get_by_test_id("film-ood")).to_contain_text(f"score {instance['ood_score']:.3f}")
    expect(film.get_by_test_id("film-ood")).to_contain_text(f"above {instance['ood_threshold']:.3f}")
    # The heat map toggles off over the film, from the keyboard too.
    film.get_by_label("Show heat map").focus()
    page.keyboard.press("Space")
    expect(film.get_by_test_id("overlay")).to_be_hidden()
    page.keyboard.press("Space")
    expect(film.get_by_test_id("overlay")).to_be_visible()
