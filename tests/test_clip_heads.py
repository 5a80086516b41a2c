"""Clip-level heads on pooled frame layers (``clip_tags`` records): the array encoding, the probabilities
against a plain numpy reading, the manifest checks, and ``Extractor.tag`` / ``save`` with a record."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest

import mirzoo
from mirzoo.errors import ManifestError, ParameterError
from mirzoo.spec import CLIP_HEAD_FORM, ModelSpec
from mirzoo.tasks.clip_heads import clip_features, clip_tag_probabilities, decode_array, encode_array
from mirzoo.zoo.manifest import get_entry

SOURCES = ["frame", "embedding"]


def _record(entry, pool="mean+std", seed=0, dtype="float16"):
    rng = np.random.default_rng(seed)
    d = sum(entry["layers"][s] for s in SOURCES) * len(pool.split("+"))
    k = len(entry["head"]["labels"])
    return {"form": CLIP_HEAD_FORM, "head": "tags", "sources": list(SOURCES), "pool": pool,
            "mean": encode_array(rng.normal(size=d), "float32"), "scale": encode_array(rng.uniform(0.5, 2, d), "float32"),
            "weights": encode_array(rng.normal(scale=0.1, size=(d, k)), dtype), "bias": rng.normal(size=k).round(6).tolist()}


def test_array_records_round_trip_at_their_precision():
    a = np.random.default_rng(1).normal(size=(7, 3))
    r32, r16 = encode_array(a, "float32"), encode_array(a, "float16")
    assert r32["shape"] == [7, 3] and r16["dtype"] == "float16"
    np.testing.assert_array_equal(decode_array(r32), a.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(decode_array(r16), a, rtol=1e-3, atol=1e-4)
    assert json.loads(json.dumps(r16)) == r16
    with pytest.raises(ParameterError, match="dtype='float64'"):
        encode_array(a, "float64")


def test_clip_tag_probabilities_are_a_logistic_regression_on_the_mean_and_std():
    entry = dict(get_entry("tcn-music"))
    rec = _record(entry)
    rng = np.random.default_rng(2)
    outputs = {"frame": rng.normal(size=(50, 128)).astype(np.float32), "embedding": rng.normal(size=(50, 128)).astype(np.float32),
               "key": rng.random((50, 24))}
    x = np.concatenate([outputs["frame"], outputs["embedding"]], axis=1).astype(np.float64)
    feats = np.concatenate([x.mean(axis=0), x.std(axis=0)])
    np.testing.assert_allclose(clip_features(outputs, SOURCES, "mean+std"), feats, rtol=1e-5, atol=1e-6)
    z = (feats - decode_array(rec["mean"])) / decode_array(rec["scale"])
    want = 1 / (1 + np.exp(-(z @ decode_array(rec["weights"]) + np.array(rec["bias"]))))
    got = clip_tag_probabilities(outputs, rec)
    assert got.shape == (len(entry["head"]["labels"]),)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # the mean pool reads half as many statistics
    rec_mean = _record(entry, pool="mean")
    z = (x.mean(axis=0) - decode_array(rec_mean["mean"])) / decode_array(rec_mean["scale"])
    np.testing.assert_allclose(clip_tag_probabilities(outputs, rec_mean),
                               1 / (1 + np.exp(-(z @ decode_array(rec_mean["weights"]) + np.array(rec_mean["bias"])))), rtol=1e-5)
    # the mean, std and max pool: one more block, the frames' maximum of each column
    rec_max = _record(entry, pool="mean+std+max")
    feats_max = np.concatenate([feats, x.max(axis=0)])
    np.testing.assert_allclose(clip_features(outputs, SOURCES, "mean+std+max"), feats_max, rtol=1e-5, atol=1e-6)
    z = (feats_max - decode_array(rec_max["mean"])) / decode_array(rec_max["scale"])
    np.testing.assert_allclose(clip_tag_probabilities(outputs, rec_max),
                               1 / (1 + np.exp(-(z @ decode_array(rec_max["weights"]) + np.array(rec_max["bias"])))), rtol=1e-5)
    entry["clip_tags"] = rec_max
    assert ModelSpec.from_entry("tcn-music", entry).clip_tags["pool"] == "mean+std+max"  # its three blocks parse
    # a head's own frame outputs may be a source too: its width counts like a layer's
    rec_head = dict(_record(entry, pool="mean"), sources=["frame", "tags"])
    d = entry["layers"]["frame"] + entry["layers"]["tags"]
    rng_h = np.random.default_rng(4)
    rec_head.update(mean=encode_array(rng_h.normal(size=d)), scale=encode_array(rng_h.uniform(0.5, 2, d)),
                    weights=encode_array(rng_h.normal(scale=0.1, size=(d, len(entry["head"]["labels"])))))
    entry["clip_tags"] = rec_head
    assert ModelSpec.from_entry("tcn-music", entry).clip_tags["sources"] == ["frame", "tags"]
    probs = rng.random((50, 38))
    xh = np.concatenate([outputs["frame"], probs], axis=1).astype(np.float64).mean(axis=0)
    z = (xh - decode_array(rec_head["mean"])) / decode_array(rec_head["scale"])
    np.testing.assert_allclose(clip_tag_probabilities(dict(outputs, tags=probs), rec_head),
                               1 / (1 + np.exp(-(z @ decode_array(rec_head["weights"]) + np.array(rec_head["bias"])))), rtol=1e-5)
    with pytest.raises(ParameterError, match=r"layers \['embedding'\]"):
        clip_tag_probabilities({"frame": outputs["frame"]}, rec)
    with pytest.raises(ParameterError, match="no frames"):
        clip_tag_probabilities({"frame": np.zeros((0, 128)), "embedding": np.zeros((0, 128))}, rec)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(form="mlp"), "clip_tags\\['form'\\]='mlp'"),
    (lambda r: r.update(head="genre"), "clip_tags\\['head'\\]='genre' is not one of the model's heads"),
    (lambda r: r.update(sources=["frame", "genre"]), "must be distinct layers or heads of the model"),
    (lambda r: r.update(sources=["frame", "frame"]), "must be distinct layers"),
    (lambda r: r.update(sources=["frame", "tags"]), "clip_tags\\['mean'\\] must be .*'shape': \\[332\\]"),  # a head counts by its width
    (lambda r: r.update(pool="max"), "clip_tags\\['pool'\\]='max'"),
    (lambda r: r["weights"].update(shape=[10, 38]), "clip_tags\\['weights'\\] must be"),
    (lambda r: r["mean"].update(base64=r["mean"]["base64"][:-8]), "holds .* bytes; float32 of shape \\[512\\] needs 2048"),
    (lambda r: r["scale"].update(base64="not base64!"), "is not base64"),
    (lambda r: r.update(bias=[0.0] * 3), "clip_tags\\['bias'\\] must be numbers of shape \\(38,\\)"),
])
def test_manifest_refuses_a_malformed_clip_tags_record(change, message):
    entry = copy.deepcopy(dict(get_entry("tcn-music")))
    entry["clip_tags"] = _record(entry)
    assert ModelSpec.from_entry("tcn-music", entry).clip_tags["pool"] == "mean+std"
    change(entry["clip_tags"])
    with pytest.raises(ManifestError, match=message):
        ModelSpec.from_entry("tcn-music", entry)


def test_tag_reads_the_clip_tags_record_and_save_keeps_it(tmp_path, monkeypatch):
    """With a record in the entry, ``tag()`` on the tags head is the record's reading of the clip's layers
    (alone and in a batch); ``predict`` still averages the head's frames; a saved copy carries the record."""
    root = Path(mirzoo.__file__).parent
    manifest = json.loads((root / "weights_manifest.json").read_text())
    entry = manifest["models"]["tcn-music"]
    entry["clip_tags"] = _record(entry, seed=3)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    monkeypatch.setenv("MIRZOO_MANIFEST", str(path))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(root / "weights"))
    m = mirzoo.load("tcn-music")
    assert m.spec.clip_tags is not None
    sr = m.sample_rate
    t = np.arange(int(6 * sr)) / sr
    a = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    b = (0.2 * np.sin(2 * np.pi * 330 * t[: int(4 * sr)])).astype(np.float32)
    out = m.forward([a], SOURCES, 16)[0]
    want = clip_tag_probabilities(out, entry["clip_tags"])
    top = m.tag(a, sr, top_k=None)
    labels = m.heads["tags"]
    np.testing.assert_allclose([p for _, p in top], np.sort(want)[::-1], rtol=1e-5)
    assert top[0][0] == labels[int(np.argmax(want))]
    batch = m.tag([b, a], sr, top_k=None)
    assert [lab for lab, _ in batch[1]] == [lab for lab, _ in top]
    np.testing.assert_allclose([p for _, p in batch[1]], [p for _, p in top], rtol=1e-5)
    frames = m.predict(a, sr, head="tags")
    assert not np.allclose(np.sort(frames)[::-1], [p for _, p in top], atol=1e-3)  # a different reading
    saved = m.save(tmp_path / "saved")
    again = mirzoo.load(str(saved))
    assert again.spec.clip_tags == m.spec.clip_tags
    np.testing.assert_allclose([p for _, p in again.tag(a, sr, top_k=None)], [p for _, p in top], rtol=1e-5)
    # the hub folder carries it too (its mirzoo.json holds the entry)
    from mirzoo.publish import build_repo_folder

    repo = build_repo_folder(m, tmp_path / "repo", "o/tcn-music")
    assert json.loads((repo / "mirzoo.json").read_text())["entry"]["clip_tags"] == entry["clip_tags"]
    hub_copy = mirzoo.load(str(repo))
    np.testing.assert_allclose([p for _, p in hub_copy.tag(a, sr, top_k=None)], [p for _, p in top], rtol=1e-5)
