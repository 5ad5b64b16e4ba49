"""The annotation GUI's JSON and PNG API, through Flask's test client, on real files.

The models folder holds the demo character written as a real .pmx and a 0-byte .pmx;
images come from the real renderer (EGL) in the server's render process.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from annotator.server import SetupError, create_app
from manifests.record import ManifestError, Record
from manifests.store import model_sha256, read_manifest
from renderer.demo import DEMO_HEAD, demo_model, write_demo

DEMO, BROKEN = "models/chars/demo.pmx", "models/broken/empty.pmx"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("annotate")
    write_demo(root / "models" / "chars")
    (root / "models" / "broken").mkdir()
    (root / "models" / "broken" / "empty.pmx").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def app(tree):
    app = create_app(tree / "models", tree / "manifest.jsonl")
    yield app
    app.extensions["mmdsynth"].close()


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def ids(client) -> dict[str, int]:
    return {row["model"]: row["id"] for row in client.get("/api/models").json["models"]}


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.json
    assert response.mimetype == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.data)))


def test_list_has_every_model_with_progress_and_least_confident_first(client):
    for model_id in ids(client).values():  # computes the suggestions now
        client.get(f"/api/models/{model_id}")
    listing = client.get("/api/models").json
    rows = {row["model"]: row for row in listing["models"]}
    assert set(rows) == {DEMO, BROKEN}
    assert listing["progress"]["total"] == 2
    demo, broken = rows[DEMO], rows[BROKEN]
    assert (demo["status"], demo["source"], demo["pending"]) == ("ok", "suggested", False)
    assert 0 < demo["confidence"] < 1
    assert broken["status"] == "rejected" and broken["reason"]
    if broken["source"] == "suggested":  # not yet decided by another test: the sure one comes last
        assert [row["model"] for row in listing["models"]] == [DEMO, BROKEN]


def test_model_has_suggested_record_morphs_eye_and_mouth_first_and_front_mapping(client):
    data = client.get(f"/api/models/{ids(client)[DEMO]}").json
    assert data["error"] is None
    record = data["record"]
    assert record["model"] == DEMO and record["head"]["top"] > record["head"]["bottom"]
    assert record["morphs"]["blink"] == "まばたき" and record["morphs"]["mouth_open"] == "あ"
    panels = [morph["panel"] for morph in data["morphs"]]
    assert panels[0] == 2 and sorted(panels, key=lambda p: {2: 0, 3: 1}.get(p, 2)) == panels
    assert {morph["name"] for morph in data["morphs"]} >= {"まばたき", "ウィンク", "あ"}
    front = data["front"]
    assert front["y_top"] > record["head"]["top"] > record["head"]["bottom"] > front["y_bottom"]


def test_front_view_rows_map_to_model_y(client):
    model_id = ids(client)[DEMO]
    front = client.get(f"/api/models/{model_id}").json["front"]
    response = client.get(f"/api/models/{model_id}/front.png")
    image = png(response)
    assert image.shape == (front["size"], front["size"], 4)
    assert float(response.headers["X-Model-Y-Top"]) == pytest.approx(front["y_top"])
    assert float(response.headers["X-Model-Y-Bottom"]) == pytest.approx(front["y_bottom"])
    rows = np.flatnonzero(image[..., 3].max(axis=1) > 0)
    pixel = (front["y_top"] - front["y_bottom"]) / front["size"]
    top_of_model = float(demo_model().vertices.positions[:, 1].max())
    assert front["y_top"] - rows[0] * pixel == pytest.approx(top_of_model, abs=2 * pixel)


def test_framing_preview_and_morph_close_ups_render(client):
    model_id = ids(client)[DEMO]
    data = client.get(f"/api/models/{model_id}").json
    head = data["record"]["head"]
    preview = png(client.get(f"/api/models/{model_id}/preview.png?top={head['top']}&bottom={head['bottom']}"))
    assert preview.shape == (256, 256, 4) and (preview[..., 3] > 0).mean() > 0.2
    lower = png(client.get(f"/api/models/{model_id}/preview.png?top={head['top']}&bottom={head['bottom'] - 1}"))
    assert not np.array_equal(preview, lower)  # the framing follows the bounds
    query = f"?top={head['top']}&bottom={head['bottom']}"
    index = {morph["name"]: morph["index"] for morph in data["morphs"]}
    blink = png(client.get(f"/api/models/{model_id}/morphs/{index['まばたき']}.png{query}"))
    mouth = png(client.get(f"/api/models/{model_id}/morphs/{index['あ']}.png{query}"))
    assert blink.shape == mouth.shape == (256, 256, 4)
    assert (blink[..., 3] > 0).mean() > 0.5  # a face fills the close-up
    assert np.abs(blink.astype(int) - mouth.astype(int)).max() > 100  # each shows its own morph


def test_bad_requests_answer_json_errors(client):
    model_id = ids(client)[DEMO]
    assert client.get("/api/models/99").status_code == 404
    bad = client.get(f"/api/models/{model_id}/preview.png?top=1&bottom=2")
    assert bad.status_code == 400 and "above" in bad.json["error"]
    assert client.get(f"/api/models/{model_id}/morphs/999.png").status_code == 409
    unknown = client.post(f"/api/models/{model_id}/confirm",
                          json={"head": {"top": 20, "bottom": 17}, "morphs": {"blink": "nope"}})
    assert unknown.status_code == 400 and "nope" in unknown.json["error"]
    no_reason = client.post(f"/api/models/{model_id}/reject", json={"reason": " "})
    assert no_reason.status_code == 400


def test_confirm_writes_the_annotated_record_at_once(client, tree):
    model_id = ids(client)[DEMO]
    before = client.get("/api/models").json["progress"]["done"]
    suggested = client.get(f"/api/models/{model_id}").json["record"]
    head = {"top": suggested["head"]["top"], "bottom": suggested["head"]["bottom"] - 0.25}
    morphs = {**suggested["morphs"], "smile_blink": "まばたき"}
    response = client.post(f"/api/models/{model_id}/confirm", json={"head": head, "morphs": morphs})
    assert response.status_code == 200, response.json
    assert response.json["progress"]["done"] == before + 1
    (record,) = [r for r in read_manifest(tree / "manifest.jsonl") if r.model == DEMO]
    assert (record.status, record.source, record.confidence) == ("ok", "annotated", None)
    assert record.head == head and record.morphs["smile_blink"] == "まばたき"
    assert record.sha256 == model_sha256(tree / DEMO) and record.group == "models"
    row = next(row for row in client.get("/api/models").json["models"] if row["model"] == DEMO)
    assert row["source"] == "annotated"
    assert client.get(f"/api/models/{model_id}").json["done"] is True


def test_broken_model_shows_its_error_and_can_be_rejected(client, tree):
    model_id = ids(client)[BROKEN]
    data = client.get(f"/api/models/{model_id}").json
    assert data["error"] and data["front"] is None and data["morphs"] == []
    front = client.get(f"/api/models/{model_id}/front.png")
    assert front.status_code == 409 and front.json["error"]
    response = client.post(f"/api/models/{model_id}/reject", json={"reason": "empty file"})
    assert response.status_code == 200, response.json
    (record,) = [r for r in read_manifest(tree / "manifest.jsonl") if r.model == BROKEN]
    assert (record.status, record.reject_reason, record.source) == ("rejected", "empty file", "annotated")


def test_saved_records_are_loaded_and_outside_changes_picked_up(tmp_path):
    write_demo(tmp_path / "models")
    manifest = tmp_path / "manifest.jsonl"
    saved = {"model": "models/demo.pmx", "status": "rejected", "reject_reason": "by hand", "source": "annotated"}
    manifest.write_text(json.dumps(saved) + "\n")
    app = create_app(tmp_path / "models", manifest)
    try:
        client = app.test_client()
        listing = client.get("/api/models").json
        assert listing["progress"] == {"done": 1, "total": 1}
        assert client.get("/api/models/0").json["record"]["reject_reason"] == "by hand"
        colleague = {"model": "elsewhere/x.pmx", "status": "unlabeled"}
        manifest.write_text(json.dumps({**saved, "reject_reason": "changed by a colleague"}) + "\n"
                            + json.dumps(colleague) + "\n")
        assert client.get("/api/models").json["models"][0]["reason"] == "changed by a colleague"
        assert client.post("/api/models/0/reject", json={"reason": "mine"}).status_code == 200
        records = {record.model: record for record in read_manifest(manifest)}
        assert set(records) == {"models/demo.pmx", "elsewhere/x.pmx"}  # merged by model, nothing lost
        assert records["models/demo.pmx"].reject_reason == "mine"
        assert records["models/demo.pmx"].sha256 == model_sha256(tmp_path / "models" / "demo.pmx")
    finally:
        app.extensions["mmdsynth"].close()


def test_unusable_folders_and_manifests_raise_one_clear_error(tmp_path):
    with pytest.raises(SetupError, match="not a folder"):
        create_app(tmp_path / "missing", tmp_path / "m.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SetupError, match="no .pmx or .pmd"):
        create_app(tmp_path / "empty", tmp_path / "m.jsonl")
    write_demo(tmp_path / "models")
    app = create_app(tmp_path / "models", tmp_path / "elsewhere" / "m.jsonl")  # a new manifest apart: root models/
    try:
        assert app.extensions["mmdsynth"].catalog.models_root == (tmp_path / "models").resolve()
    finally:
        app.extensions["mmdsynth"].close()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "m.jsonl").write_text(Record(model="x.pmx").to_json() + "\n", encoding="utf-8")
    with pytest.raises(SetupError, match="models root"):  # its names are relative to its folder
        create_app(tmp_path / "models", tmp_path / "old" / "m.jsonl")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ManifestError, match="bad.jsonl:1"):
        create_app(tmp_path / "models", tmp_path / "bad.jsonl")


def test_cli_reports_a_bad_folder_in_one_line(tmp_path):
    from pipeline.cli import cli

    result = CliRunner().invoke(cli, ["annotate", str(tmp_path / "missing"), "--manifest",
                                      str(tmp_path / "m.jsonl"), "--no-browser"])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "not a folder" in result.output


def test_layers_lists_every_material_with_its_suggested_layer(client):
    model_id = ids(client)[DEMO]
    data = client.get(f"/api/models/{model_id}/layers").json
    from annotator.layers import CLASSES

    assert data["layers"] == list(CLASSES)
    materials = data["materials"]
    assert [m["name"] for m in materials] == demo_model().materials.names
    assert [m["material"] for m in materials] == list(range(len(materials)))
    by_name = {m["name"]: m for m in materials}
    layers = (by_name["後髪"]["layer"], by_name["瞳"]["layer"], by_name["体"]["layer"])
    assert layers == ("back hair", "irides", "topwear")
    assert all(m["decided"] in ("name", "geometry") and m["reason"] for m in materials)


def test_material_view_shows_that_material_alone(client):
    model_id = ids(client)[DEMO]
    names = demo_model().materials.names
    hair, iris = (png(client.get(f"/api/models/{model_id}/materials/{names.index(n)}.png")) for n in ("後髪", "瞳"))
    assert hair.shape == iris.shape == (256, 256, 4)
    assert (hair[..., 3] > 0).mean() > 0.2 and (iris[..., 3] > 0).mean() > 0.05  # framed on the part
    teal = iris[iris[..., 3] > 0][:, :3].astype(int)
    assert (teal[:, 2] > teal[:, 0]).mean() > 0.5  # the iris, not the skin-coloured face
    assert client.get(f"/api/models/{model_id}/materials/{len(names)}.png").status_code == 409


def test_confirm_saves_layer_overrides_and_refuses_unknown_ones(client, tree):
    model_id = ids(client)[DEMO]
    head = client.get(f"/api/models/{model_id}").json["record"]["head"]
    for layers, message in (({"体": "hat"}, "unknown layer 'hat'"), ({"尻尾": "topwear"}, "no material named '尻尾'"),
                            (["体"], "must map")):
        bad = client.post(f"/api/models/{model_id}/confirm", json={"head": head, "layers": layers})
        assert bad.status_code == 400 and message in bad.json["error"]
    response = client.post(f"/api/models/{model_id}/confirm", json={"head": head, "layers": {"体": "neckwear"}})
    assert response.status_code == 200, response.json
    (record,) = [r for r in read_manifest(tree / "manifest.jsonl") if r.model == DEMO]
    assert record.layers == {"体": "neckwear"}
    kept = client.post(f"/api/models/{model_id}/confirm", json={"head": head})  # no layers: the saved ones stay
    assert kept.json["record"]["layers"] == {"体": "neckwear"}


def close_ups(client, morphs: list[int], query: str = "") -> list[np.ndarray]:
    return [png(client.get(f"/api/models/0/morphs/{index}.png{query}")) for index in morphs]


def test_close_ups_address_morphs_by_index_when_names_repeat(tmp_path):
    """A second morph named あ that closes the eyes: its close-up shows closed eyes, not the mouth."""
    from dataclasses import replace

    from renderer.pmx_writer import write_pmx

    model = demo_model()
    blink, mouth = model.find_morph("まばたき"), model.find_morph("あ")
    model.morphs.append(replace(model.morphs[blink], name="あ"))
    (tmp_path / "models").mkdir()
    write_pmx(model, tmp_path / "models" / "twice.pmx")
    app = create_app(tmp_path / "models", tmp_path / "manifest.jsonl")
    try:
        client = app.test_client()
        first, second, closed = close_ups(client, [mouth, len(model.morphs) - 1, blink],
                                          "?top={}&bottom={}".format(*DEMO_HEAD))
    finally:
        app.extensions["mmdsynth"].close()
    assert np.abs(first.astype(int) - second.astype(int)).max() > 100
    assert np.array_equal(second, closed)


@pytest.mark.real_models
def test_gumi_close_ups_of_its_two_morphs_named_futsuu_differ(shared_models, tmp_path):
    """gumi.pmd has an eye morph and a brow morph both named 普通 (depth swaps of face parts)."""
    from renderer.loader import load_model

    gumi = load_model(shared_models / "low_poly" / "gumi.pmd")
    twins = [i for i, morph in enumerate(gumi.morphs) if morph.name == "普通"]
    assert len(twins) == 2
    app = create_app(shared_models / "low_poly", tmp_path / "manifest.jsonl", shared_models)
    try:
        client = app.test_client()
        head = client.get("/api/models/0").json["record"]["head"]
        first, second = close_ups(client, twins, f"?top={head['top']}&bottom={head['bottom']}")
    finally:
        app.extensions["mmdsynth"].close()
    assert (np.abs(first.astype(int) - second.astype(int)).max(axis=-1) > 100).sum() > 1000  # other eyes and brows


def test_other_hosts_and_other_origins_cannot_write(client, tree):
    """DNS rebinding (a foreign Host) and cross-site posts (a foreign Origin) are refused;
    the GUI's own page (same Origin) and non-browser clients (no Origin) are not."""
    model_id = ids(client)[BROKEN]
    url = f"/api/models/{model_id}/reject"
    before = (tree / "manifest.jsonl").read_bytes() if (tree / "manifest.jsonl").exists() else b""
    rebound = client.post(url, json={"reason": "rebound"}, headers={"Host": "evil.example.com"})
    assert rebound.status_code == 403 and "evil.example.com" in rebound.json["error"]
    assert client.get("/api/models", headers={"Host": "evil.example.com:8765"}).status_code == 403
    foreign = client.post(url, json={"reason": "cross-site"}, headers={"Origin": "http://evil.example.com"})
    assert foreign.status_code == 403 and "evil.example.com" in foreign.json["error"]
    form = client.post(url, data={"reason": "form post"})
    assert form.status_code == 415
    after = (tree / "manifest.jsonl").read_bytes() if (tree / "manifest.jsonl").exists() else b""
    assert after == before
    own = client.post(url, json={"reason": "empty file"}, headers={"Origin": "http://localhost"})
    assert own.status_code == 200, own.json
    assert client.get("/api/models", headers={"Host": "127.0.0.1:8765"}).status_code == 200


def test_hostile_bodies_get_clear_errors_and_write_nothing(client, tree):
    model_id = ids(client)[DEMO]
    manifest = tree / "manifest.jsonl"
    before = manifest.read_bytes() if manifest.exists() else b""
    reject, confirm = f"/api/models/{model_id}/reject", f"/api/models/{model_id}/confirm"
    surrogate = client.post(reject, data='{"reason": "bad \\ud800 text"}', content_type="application/json")
    assert surrogate.status_code == 400 and "Unicode" in surrogate.json["error"]
    nested = client.post(reject, data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert nested.status_code in (400, 413) and nested.is_json
    deep = client.post(reject, data="[" * 5_000 + "]" * 5_000, content_type="application/json")
    assert deep.status_code == 400 and "nested" in deep.json["error"]
    huge = client.post(reject, json={"reason": "x" * 50_000_000})
    assert huge.status_code == 413 and huge.is_json
    long = client.post(reject, json={"reason": "x" * 5_000})
    assert long.status_code == 400 and "longer" in long.json["error"]
    for head in ('{"top": Infinity, "bottom": 0}', '{"top": 1e400, "bottom": 0}', '{"top": 1e308, "bottom": -1e308}'):
        response = client.post(confirm, data=f'{{"head": {head}}}', content_type="application/json")
        assert response.status_code == 400 and "finite" in response.json["error"], head
    assert client.get(f"/api/models/{model_id}/preview.png?top=inf&bottom=0").status_code == 400
    assert (manifest.read_bytes() if manifest.exists() else b"") == before


def test_repeated_records_and_links_out_of_the_tree_are_reported_not_fatal(tmp_path, caplog):
    write_demo(tmp_path / "models")
    (tmp_path / "outside").mkdir()
    write_demo(tmp_path / "outside")
    (tmp_path / "models" / "elsewhere.pmx").symlink_to(tmp_path / "outside" / "demo.pmx")
    manifest = tmp_path / "manifest.jsonl"
    line = {"model": "demo.pmx", "status": "ok", "head": {"top": 2.0, "bottom": 1.0}}
    manifest.write_text(json.dumps(line) + "\n" + json.dumps({**line, "status": "rejected",
                                                              "reject_reason": "by hand"}) + "\n")
    app = create_app(tmp_path / "models", manifest, tmp_path / "models")
    try:
        catalog = app.extensions["mmdsynth"].catalog
        assert [entry.name for entry in catalog.entries] == ["demo.pmx"]
        assert "elsewhere.pmx: it leads outside the models root" in caplog.text
        assert catalog.repeated == ["demo.pmx (ok, rejected)"]
    finally:
        app.extensions["mmdsynth"].close()


def test_models_held_for_review_come_first_with_their_reasons(tmp_path):
    """Held for review (a missing texture) sorts before a confident suggestion, whatever the names."""
    write_demo(tmp_path / "models" / "a")
    write_demo(tmp_path / "models" / "b")
    for texture in (tmp_path / "models" / "b").iterdir():
        if texture.suffix.lower() != ".pmx":
            texture.unlink()
    app = create_app(tmp_path / "models", tmp_path / "manifest.jsonl")
    try:
        client = app.test_client()
        for model_id in ids(client).values():
            client.get(f"/api/models/{model_id}")
        rows = client.get("/api/models").json["models"]
        assert [(row["model"], row["status"]) for row in rows] == [("models/b/demo.pmx", "review"),
                                                                   ("models/a/demo.pmx", "ok")]
        assert "texture file missing" in rows[0]["reason"]
    finally:
        app.extensions["mmdsynth"].close()
