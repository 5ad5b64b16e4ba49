"""The annotation GUI in a real Chromium (Playwright) against the real server and renderer.

A person's session: open the page, drag the chin line, cycle the morph close-ups and
give one a role with the keyboard, open the layers panel with L and move one material
to another layer, confirm with Enter; then the manifest file on disk must hold exactly that. Screenshots go to
tests/artifacts for a person to look at.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from annotator.server import create_app
from manifests.record import Record
from manifests.store import read_manifest
from renderer.demo import write_demo

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1440, "height": 900}
CHIN_DRAG = 24  # pixels the test drags the chin line down
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (install Debian's chromium; browsers are never downloaded)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@contextmanager
def serving(models_dir: Path, manifest: Path, models_root: Path | None = None) -> Iterator[str]:
    """The real server on a free loopback port, in a background thread."""
    app = create_app(models_dir, manifest, models_root)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join()
        app.extensions["mmdsynth"].close()


def open_page(browser, url: str):
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_function("window.annotator && window.annotator.detail !== null", timeout=TIMEOUT_MS)
    return page, errors


def show_model(page, model: str) -> None:
    """Click the model in the side list and wait until its front view is on screen."""
    page.locator(f'#model-list li[title^="{model}"]').click()
    page.wait_for_function(f"window.annotator.shownId === {model_id(page, model)}", timeout=TIMEOUT_MS)


def model_id(page, model: str) -> int:
    return page.evaluate(f"window.annotator.list.find(row => row.model === {model!r}).id")


def wait_for_images(page) -> None:
    """Preview and close-ups loaded (screenshots should show what a person sees)."""
    page.wait_for_function("""() => [document.getElementById('preview'), ...document.querySelectorAll('.morph img')]
        .every(img => img.complete && (img.naturalWidth > 0 || img.closest('.failed')))""", timeout=TIMEOUT_MS)


def saved(manifest: Path, model: str, timeout: float = 10.0) -> Record:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if manifest.exists():
            found = [record for record in read_manifest(manifest) if record.model == model]
            if found:
                return found[0]
        time.sleep(0.05)
    raise AssertionError(f"{model} never reached {manifest}")


def override_a_layer(page, artifacts: Path, name: str) -> tuple[str, str]:
    """Open the layers panel (L), pick the second material, give it another layer; (material, layer)."""
    page.keyboard.press("l")
    page.wait_for_selector("#layers-table tr[data-material]", timeout=TIMEOUT_MS)
    row = page.locator("#layers-table tr[data-material]").nth(1)
    row.locator(".name").click()
    page.wait_for_function("""() => { const img = document.getElementById('material-image');
        return img.src && img.complete && img.naturalWidth > 0; }""", timeout=TIMEOUT_MS)
    material = row.locator(".name").inner_text()
    suggested = row.locator("select").input_value()
    layer = "objects" if suggested != "objects" else "neckwear"
    row.locator("select").select_option(layer)
    assert "overridden" in row.get_attribute("class") and layer in page.locator("#material-about").inner_text()
    page.screenshot(path=str(artifacts / f"annotator_{name}_layers.png"))
    page.keyboard.press("l")
    assert page.locator("#layers-panel").is_hidden()
    return material, layer


def label_one(browser, url: str, manifest: Path, model: str, artifacts: Path, name: str) -> None:
    """Drag the chin, give the third morph the smile_blink role (key 5), move one material to
    another layer, confirm with Enter."""
    page, errors = open_page(browser, url)
    started = time.monotonic()
    show_model(page, model)
    print(f"{model}: shown {1000 * (time.monotonic() - started):.0f} ms after its click")
    wait_for_images(page)
    page.screenshot(path=str(artifacts / f"annotator_{name}_open.png"))
    suggested = page.evaluate("window.annotator.detail.record")

    line = page.locator("#line-bottom").bounding_box()
    x, y = line["x"] + 0.7 * line["width"], line["y"] + line["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + CHIN_DRAG, steps=6)
    page.mouse.up()
    chin = page.evaluate("window.annotator.record.head.bottom")
    front = page.evaluate("window.annotator.detail.front")
    shown = page.locator("#viewer").bounding_box()["height"]
    per_pixel = (front["y_top"] - front["y_bottom"]) / shown
    assert suggested["head"]["bottom"] - chin == pytest.approx(CHIN_DRAG * per_pixel, rel=0.1)

    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    morph = page.locator(".morph.current").get_attribute("data-name")
    page.keyboard.press("5")
    assert "Smile blink" in page.locator("#morph-current").inner_text()
    page.wait_for_timeout(300)  # let the framing preview follow the new chin for the screenshot
    page.screenshot(path=str(artifacts / f"annotator_{name}_edited.png"))
    material, layer = override_a_layer(page, artifacts, name)
    page.keyboard.press("Enter")

    record = saved(manifest, model)
    assert (record.status, record.source) == ("ok", "annotated")
    assert record.head["bottom"] == pytest.approx(chin)
    assert record.head["top"] == pytest.approx(suggested["head"]["top"])
    assert record.morphs["smile_blink"] == morph
    assert record.layers == {**suggested["layers"], material: layer}
    assert {role: name for role, name in record.morphs.items() if role != "smile_blink"} == {
        role: name for role, name in suggested["morphs"].items() if role != "smile_blink"}
    assert errors == []
    page.close()


def test_label_the_demo_with_mouse_and_keyboard(browser, tmp_path, artifacts):
    write_demo(tmp_path / "models")
    (tmp_path / "models" / "zero.pmx").write_bytes(b"")  # sorts after demo.pmx even before suggestions
    manifest = tmp_path / "manifest.jsonl"
    with serving(tmp_path / "models", manifest) as url:
        label_one(browser, url, manifest, "models/demo.pmx", artifacts, "demo")


def test_one_key_confirms_a_good_suggestion_and_moves_on(browser, tmp_path, artifacts):
    write_demo(tmp_path / "models")
    (tmp_path / "models" / "zero.pmx").write_bytes(b"")  # sorts after demo.pmx even before suggestions
    manifest = tmp_path / "manifest.jsonl"
    with serving(tmp_path / "models", manifest) as url:
        page, errors = open_page(browser, url)
        page.wait_for_function("window.annotator.metrics.firstView !== null", timeout=TIMEOUT_MS)
        first = page.evaluate("window.annotator.detail")
        print(f"first rendered view {page.evaluate('window.annotator.metrics.firstView'):.0f} ms after navigation")
        page.keyboard.press("Enter")
        record = saved(manifest, first["model"])
        suggestion = Record.from_dict(first["record"])
        assert record.source == "annotated" and record.status == suggestion.status
        assert (record.head, record.morphs) == (suggestion.head, suggestion.morphs)
        assert page.evaluate("window.annotator.metrics.keys") == 1
        page.wait_for_function(f"window.annotator.detail.id !== {first['id']}", timeout=TIMEOUT_MS)
        page.wait_for_timeout(500)
        page.screenshot(path=str(artifacts / "annotator_next_model.png"))
        assert "1 / 2" in page.locator("#progress-text").inner_text()
        assert errors == []


@pytest.mark.real_models
def test_label_a_real_model(browser, shared_models, tmp_path, artifacts):
    manifest = tmp_path / "manifest.jsonl"
    with serving(shared_models, manifest, shared_models) as url:
        label_one(browser, url, manifest, "mmd_default/miku_v2.pmd", artifacts, "miku")


def test_a_model_held_for_review_shows_why_and_what_its_channels_do(browser, tmp_path, artifacts):
    """No texture: held for review; the page lists the reason and shows the channel close-ups."""
    write_demo(tmp_path / "models")
    textures = [path for path in (tmp_path / "models").iterdir() if path.suffix.lower() != ".pmx"]
    assert textures
    for texture in textures:
        texture.unlink()
    with serving(tmp_path / "models", tmp_path / "manifest.jsonl") as url:
        page, errors = open_page(browser, url)
        assert page.evaluate("window.annotator.detail.record.status") == "review"
        page.wait_for_function("document.querySelectorAll('#notes li.review').length > 0", timeout=TIMEOUT_MS)
        assert "texture file missing" in page.locator("#notes").inner_text()
        page.wait_for_function("""() => { const image = document.getElementById('channels');
            return image.complete && image.naturalWidth > 0 && image.naturalWidth === image.naturalHeight; }""",
            timeout=TIMEOUT_MS)
        assert "Held for review" in page.locator("#status").inner_text()
        page.screenshot(path=str(artifacts / "annotator_review.png"))
        page.locator("#channels").click()
        assert page.locator("#channels").bounding_box()["width"] >= 0.8 * VIEWPORT["height"]  # big enough to judge
        page.screenshot(path=str(artifacts / "annotator_review_channels.png"))
        assert errors == []
