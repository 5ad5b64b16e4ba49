"""The build plan (deterministic, whole models per shard) and the morph-role fallbacks."""
from __future__ import annotations

import json

import pytest

from annotator.binding import RoleError, bind_roles
from manifests.record import ROLES, Record
from pipeline.plan import PlanError, make_plan, pose_counts

HEAD = {"top": 20.0, "bottom": 17.0}


def record(i: int, group: str = "", status: str = "ok", **extra) -> Record:
    morphs = dict.fromkeys(ROLES)
    morphs["mouth_open"] = "あ"
    return Record(model=f"chars/m{i:03d}.pmx", sha256=f"{i:064x}", group=group, status=status,
                  head=HEAD if status == "ok" else None, morphs=morphs, **extra)


def manifest(n: int = 40) -> list[Record]:
    return [record(i, group=f"g{i % 13}") for i in range(n)] + [
        record(900, status="rejected", reject_reason="prop"), record(901, status="unlabeled")]


def test_pose_counts():
    assert pose_counts(3, 10, None) == [4, 3, 3]
    assert pose_counts(3, 2, None) == [1, 1, 0]
    assert pose_counts(3, None, 5) == [5, 5, 5]
    with pytest.raises(PlanError):
        pose_counts(3, 0, None)


def test_plan_covers_every_pose_once_with_unique_ids():
    plan = make_plan(manifest(), poses=1234, shard_size=100, seed=1)
    pieces = [piece for shard in plan.shards for piece in shard.slices]
    assert {p.model for p in pieces} == {f"chars/m{i:03d}.pmx" for i in range(40)}
    ids = sorted(i for p in pieces for i in range(p.first_id, p.first_id + p.count))
    assert ids == list(range(1234)) and plan.samples == 1234 and plan.models == 40
    assert all(shard.samples <= 100 for shard in plan.shards)
    by_model: dict[str, list[tuple[int, int]]] = {}
    for p in pieces:
        by_model.setdefault(p.model, []).append((p.start, p.count))
    for spans in by_model.values():  # pose indices 0..count of each model, no gap or overlap
        spans.sort()
        assert spans[0][0] == 0 and all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:]))


def test_plan_keeps_groups_in_one_split_and_whole_models_per_shard():
    plan = make_plan(manifest(), poses=400, shard_size=64, seed=1)
    split_of = {}
    for shard in plan.shards:
        assert {p.model for p in shard.slices}.__len__() == len(shard.slices)  # a model once per shard
        for p in shard.slices:
            group = f"g{int(p.model[7:10]) % 13}"
            assert split_of.setdefault(group, shard.split) == shard.split
    assert len(set(split_of.values())) >= 2
    assert all(p.count == 10 for shard in plan.shards for p in shard.slices)  # 10 per model fits whole


def test_big_model_is_cut_into_even_pieces():
    plan = make_plan([record(1)], poses=250, shard_size=100)
    assert [shard.samples for shard in plan.shards] == [83, 83, 84]
    assert [shard.file for shard in plan.shards] == [f"{plan.shards[0].split}-{k:05d}.h5" for k in range(3)]


def test_plan_is_deterministic_and_order_free():
    records = manifest()
    a = make_plan(records, poses=999, shard_size=77, seed=5)
    b = make_plan(list(reversed(records)), poses=999, shard_size=77, seed=5)
    assert a == b
    assert make_plan(records, poses=999, shard_size=77, seed=1) != a  # the seed moves groups between splits


def test_plan_refuses_bad_manifests():
    with pytest.raises(PlanError, match="no record with status ok"):
        make_plan([record(1, status="unlabeled")], poses=10)
    with pytest.raises(PlanError, match=r"more than once: chars/m001.pmx \(ok, ok\)"):
        make_plan([record(1), record(1)], poses=10)
    with pytest.raises(PlanError, match=r"more than once: chars/m001.pmx \(ok, rejected\)"):
        make_plan([record(1), record(1, status="rejected", reject_reason="broken")], poses=10)
    no_head = record(2)
    no_head.head = None
    with pytest.raises(PlanError, match="head bounds.*m002"):
        make_plan([no_head], poses=10)


def test_roles_derive_one_eye_halves_never_a_both_eyes_morph():
    full = {"mouth_open": "あ", "blink": "まばたき", "wink_left": "ウィンク２", "wink_right": "ｳｨﾝｸ２右"}
    bound = bind_roles(full)
    assert (bound.morphs, bound.fallbacks) == ({"eye_left": "ウィンク２", "eye_right": "ｳｨﾝｸ２右", "mouth": "あ"}, [])
    one_wink = bind_roles({**full, "wink_right": None})
    assert (one_wink.morphs["eye_left"], one_wink.morphs["eye_right"]) == ("ウィンク２", "まばたき[right]")
    assert json.loads(one_wink.to_json())["fallbacks"] == [
        "eye_right: no wink_right, used the right half of blink 'まばたき' ('まばたき[right]')"]
    no_winks = bind_roles({"mouth_open": "あ", "blink": "まばたき"})
    assert (no_winks.morphs["eye_left"], no_winks.morphs["eye_right"]) == ("まばたき[left]", "まばたき[right]")
    # a derived role written in the manifest binds as it is
    derived = bind_roles({"mouth_open": "あ", "wink_left": "まばたき[left]", "wink_right": "まばたき[right]"},
                         available={"あ", "まばたき"})
    assert (derived.morphs["eye_left"], derived.morphs["eye_right"]) == ("まばたき[left]", "まばたき[right]")
    # a role naming a morph the model lacks counts as missing
    lacking = bind_roles(full, available={"あ", "まばたき", "ｳｨﾝｸ２右"})
    assert lacking.morphs["eye_left"] == "まばたき[left]" and "not in the model" in lacking.fallbacks[0]
    with pytest.raises(RoleError, match="mouth_open"):
        bind_roles({**full, "mouth_open": None})
    with pytest.raises(RoleError, match="not in the model"):
        bind_roles(full, available={"まばたき"})
    with pytest.raises(RoleError, match="cannot drive eye_left"):
        bind_roles({"mouth_open": "あ"})
