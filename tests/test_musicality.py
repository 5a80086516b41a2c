"""The musicality benchmark's own pieces: baselines and scores on inputs with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import musicality as mu


def test_krumhansl_schmuckler_finds_the_rotated_profile():
    chroma = np.tile(np.roll(mu.KK_MINOR, 9)[:, None], (1, 20))  # A minor's profile
    assert mu.ks_key(chroma) == "A minor"
    assert mu.ks_key(np.tile(np.roll(mu.KK_MAJOR, 7)[:, None], (1, 5))) == "G major"


def test_chroma_templates_name_triads_and_silence():
    chroma = np.zeros((12, 150))
    chroma[[0, 4, 7], :50] = 1.0          # C E G
    chroma[[9, 0, 4], 50:100] = 1.0       # A C E
    frames = mu.template_chords(chroma, fps=50.0)
    assert frames[10] == "C:maj" and frames[80] == "A:min" and frames[140] == "N"


def test_tempo_accuracy_and_beat_grid_mask():
    assert mu.tempo_acc(120.0, 124.0) == (True, True)
    assert mu.tempo_acc(120.0, 60.5) == (False, True)
    assert mu.tempo_acc(120.0, 100.0) == (False, False)
    t = {"beat_mask": np.array([1] * 50 + [0] * 50, np.uint8), "sr": 16000, "hop": 320}
    np.testing.assert_allclose(mu.inside_grid(np.array([0.1, 0.9, 1.1, 1.9]), t), [0.1, 0.9])


def test_balanced_subset_and_probe_labels():
    labels = {i: "a" for i in range(10)} | {i: "b" for i in range(10, 14)} | {14: "c"}
    idx = mu.balanced_subset(labels, min_class=3, seed=0)
    assert sorted(labels[i] for i in idx) == ["a"] * 4 + ["b"] * 4
    assert mu.balanced_subset({0: "a", 1: "b"}, min_class=3, seed=0) == []
    meta = {"tags": "mode:phrygian;meter:triple;tune:jig;instrument:pipe;instrument:piano;style:folk"}
    assert mu.probe_labels(meta) == {"meter": "triple", "tune": "jig", "style": "folk"}


def test_repeated_probe_averages_seeded_draws_and_repeat_zero_is_the_single_draw():
    rng = np.random.default_rng(0)
    n = 60
    labels = {i: ("minor" if i % 5 == 0 else "major") for i in range(n)}  # 12 minor, 48 major
    groups = np.array([f"p{i // 2}" for i in range(n)])
    y_all = np.array([labels[i] for i in range(n)])
    # a weakly informative feature: draws of the balanced subset give different scores
    x = rng.standard_normal((n, 4)) + 0.8 * (y_all == "minor")[:, None]
    feats = {"layer": x}
    one = mu.repeated_probe(feats, labels, groups, 6, (0.1, 1.0), seed=3, repeats=1)
    idx = mu.balanced_subset(labels, 6, 3)
    direct = mu.nested_probe({"layer": x[idx]}, y_all[idx], groups[idx], (0.1, 1.0), 3)
    assert one["balanced_accuracy"] == direct["balanced_accuracy"] and one["n"] == 24
    five = mu.repeated_probe(feats, labels, groups, 6, (0.1, 1.0), seed=3, repeats=5)
    assert five["per_repeat"][0] == direct["balanced_accuracy"] and len(five["per_repeat"]) == 5
    assert five["balanced_accuracy"] == pytest.approx(np.mean(five["per_repeat"]))
    assert five["repeat_std"] == pytest.approx(np.std(five["per_repeat"])) and five["repeat_std"] > 0
    assert len(five["chosen"]) == sum(1 for _ in five["per_repeat"]) * len(direct["chosen"])
    assert mu.fmt_probe(five).startswith(f"{five['balanced_accuracy']:.3f} ± ")
    assert mu.fmt_probe(direct) == f"{direct['balanced_accuracy']:.3f}"


def test_oracle_frames_are_one_hot_where_labelled():
    heads = {"key": ["k"] * 24, "chord": ["c"] * 109, "meter": ["m"] * 12, "tempo": ["t"] * 48}
    t = {"beat": np.array([0, 1, 0, 0, 1, 0], np.uint8), "downbeat": np.array([0, 1, 0, 0, 0, 0], np.uint8),
         "key": np.array([3, 3, -1, 3, 3, 3]), "chord": np.array([-1, 5, 5, 5, 108, 108]),
         "meter": np.int16(2), "tempo_bpm": np.float32(120.0)}
    fr = mu.oracle_frames(t, heads, 6)
    assert fr["key"][0, 3] == 1.0 and fr["key"][2].std() == pytest.approx(0.0)
    assert fr["beats"][1, 0] == 1.0 and fr["beats"][0, 0] == 0.5 and fr["beats"][4, 1] == 0.0
    assert int(np.argmax(fr["tempo"][0])) == int(round(16 * np.log2(120 / 40)))


def test_record_figures_are_flat_and_name_the_soundfonts():
    res = {"key_weighted": {"model": 0.77, "baseline": 0.70, "clip_key": True, "model_head_mean": 0.72},
           "beat_f": {"model": 0.87, "baseline": 0.6}, "downbeat_f": {"model": 0.47},
           "tempo": {"model": {"acc1": 0.89, "acc2": 0.95}, "baseline": {"acc1": 0.58, "acc2": 0.86}},
           "chords": {"model": {"root": 0.83, "majmin": 0.84}, "baseline": {"root": 0.71, "majmin": 0.72}},
           "probes": {}, "tags": {"roc_auc_macro": 0.79}}
    try:
        out = mu.record_figures(res, "tcn-music", 444, [("TimGM6mb", 440), ("FluidR3", 4)])
    except KeyError as exc:  # the fixture lacks a field headline() reads: say which
        pytest.fail(f"headline() reads {exc}, absent from this fixture")
    assert out["soundfonts"] == "TimGM6mb, FluidR3" and out["n_clips"] == 444
    assert out["key_mirex"] == 0.77 and out["key_mirex_head_mean"] == 0.72
    assert all(not isinstance(v, (dict, list)) for v in out.values())


def test_recorded_figures_go_into_both_manifests_which_keep_their_utf8(tmp_path, monkeypatch):
    """benchmarks --record (``_record.record``) writes the figures, with the weights' sha256, into the entry
    of both manifest copies, and leaves the rest of the file as it was: non-ASCII text stays UTF-8."""
    import json

    import mirzoo.zoo.manifest as zm
    from benchmarks import _record

    manifest = {"schema_version": 1, "models": {"m": {"weights": {"sha256": "ab" * 32},
                                                      "references": ["Davies & Böck (2019)"]}}}
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (tmp_path / "mirzoo").mkdir()
    for path in (tmp_path / "weights_manifest.json", tmp_path / "mirzoo" / "weights_manifest.json"):
        path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(_record, "ROOT", tmp_path)
    monkeypatch.setattr(zm, "PACKAGE_MANIFEST", tmp_path / "mirzoo" / "weights_manifest.json")
    _record.record("m", "musicality", {"downbeat_f": 0.75})
    for path in (tmp_path / "weights_manifest.json", tmp_path / "mirzoo" / "weights_manifest.json"):
        written = path.read_text(encoding="utf-8")
        assert "Davies & Böck (2019)" in written and "\\u00f6" not in written
        entry = json.loads(written)["models"]["m"]
        assert entry["metrics"]["musicality"] == {"downbeat_f": 0.75, "weights_sha256": "ab" * 32}
        assert entry["references"] == manifest["models"]["m"]["references"]


def test_head_output_probe_is_reported_beside_the_embedding_probe_not_in_its_place():
    probe = {"tcn-music": {"balanced_accuracy": 0.6, "n": 68, "classes": 2},
             "mfcc": {"balanced_accuracy": 0.55, "n": 68, "classes": 2},
             "tcn-music+heads": {"balanced_accuracy": 0.9, "n": 68, "classes": 2}}
    res = {"key_weighted": {"model": 0.77, "baseline": 0.70, "baseline_name": "KS", "n": 10},
           "beat_f": {"model": 0.87, "baseline": 0.6, "baseline_name": "librosa", "n": 10},
           "downbeat_f": {"model": 0.47, "n": 10},
           "tempo": {"model": {"acc1": 0.89, "acc2": 0.95, "acc1_simple_meter": 0.9, "n": 10, "n_simple": 8},
                     "baseline": {"acc1": 0.58, "acc2": 0.86, "acc1_simple_meter": 0.5}, "baseline_name": "librosa"},
           "chords": {"model": {"root": 0.83, "majmin": 0.84, "frames_root": 5, "frames_majmin": 5},
                      "base": {"root": 0.71, "majmin": 0.72}, "baseline_name": "templates"},
           "probes": {"mode": probe}, "mode_from_key": {"model": 0.85, "n": 240, "classes": {"major": 206, "minor": 34}}}
    res["key_weighted"]["by_source"] = {"written": {"model": 0.86, "baseline": 0.7, "n": 6},
                                        "analysis": {"model": 0.66, "baseline": 0.71, "n": 4}}
    res["meter_from_analyze"] = mu.meter_agreement([("6/8", "6/8"), ("3/4", "4/4")])
    figures = mu.headline(res, "tcn-music")
    assert figures["meter_exact_from_analyze"] == 0.5 and figures["meter_class_from_analyze"] == 0.5
    assert figures["probe_mode"] == 0.6 and figures["probe_mode_with_heads"] == 0.9
    assert figures["mode_from_key"] == 0.85
    assert figures["key_mirex_written_reference"] == 0.86 and figures["key_mirex_analysis_reference"] == 0.66
    report = {"results": res, "model": "tcn-music", "pretrained": True, "clips": 10, "pieces": 5, "data": "d",
              "soundfonts": {"TimGM6mb": 10}, "env": "e", "date": "today", "notes": [],
              "timing_s": {"model": 1, "baselines": 1, "probe_models": 0}}
    lines = mu.render_table(report).splitlines()
    row = [l for l in lines if l.startswith("| probe mode (")]
    assert len(row) == 1 and "| 0.600 | 0.550 (MFCC) |" in row[0] and "0.900" not in row[0]
    assert "| key, reference written in the score (n=6) | 0.860 | 0.700 | |" in lines
    assert any(l.startswith("| mode of the key `analyze()` reports") and "major 206, minor 34" in l
               and "| 0.850 |" in l for l in lines)
    assert any(l.startswith("| meter `analyze()` reports, meter class (balanced acc.: compound-duple 1, triple 1)")
               and "| 0.500 |" in l for l in lines)
    plus = [l for l in lines if l.startswith("| probe mode, head outputs also")]
    assert len(plus) == 1 and "| 0.900 |" in plus[0]
    assert not any("evidence alone" in l for l in lines)  # a model without a downbeat_model record
    assert "downbeat_f_evidence_reading" not in figures

    # with a downbeat_model record, the evidence reading of the same heads is reported beside it
    res["downbeat_f"].update(downbeat_model=True, evidence_reading=0.41)
    res["meter_from_analyze"]["evidence_reading"] = mu.meter_agreement([("6/8", "2/4"), ("3/4", "4/4")])
    lines = mu.render_table(report).splitlines()
    assert "| downbeat F-measure, bars read from the downbeat evidence alone (no `downbeat_model` or `bar_model`) | 0.410 | | |" in lines
    assert "| meter, time signature exact, bars read from the downbeat evidence alone | 0.000 | | |" in lines
    figures = mu.headline(res, "tcn-music")
    assert figures["downbeat_f_evidence_reading"] == 0.41 and figures["meter_exact_evidence_reading"] == 0.0

    # the key the score's own notes give by profile matching, overall and by reference source, beside the model
    assert not any("score notes" in l for l in lines)  # a report from before the row existed
    res["key_weighted"].update(score_notes=0.8, n_score_notes=10)
    res["key_weighted"]["by_source"]["written"]["score_notes"] = 0.9
    res["key_weighted"]["by_source"]["analysis"]["score_notes"] = 0.65
    lines = mu.render_table(report).splitlines()
    row = [l for l in lines if "score notes" in l]
    assert len(row) == 1 and row[0].endswith("(n=10) | | 0.800 (written 0.900, analysis 0.650) | |")

    # the mode those notes give, beside the mode of the reported key; the passes of rhythm_shifts when not one
    assert not any("clip's score notes, no audio (balanced" in l or "rhythm_shifts" in l for l in lines)
    res["mode_from_key"]["score_notes"] = mu.mode_agreement([("major", "major"), ("minor", "major"), ("minor", "minor")])
    report["rhythm_shifts"] = [0.0]
    lines = mu.render_table(report).splitlines()
    row = [l for l in lines if l.startswith("| mode of Krumhansl-Schmuckler on the clip's score notes")]
    assert len(row) == 1 and "(balanced acc., 3 of those clips)" in row[0] and row[0].endswith("| | 0.750 | |")
    assert not any("rhythm_shifts" in l for l in lines)  # one pass: nothing to say
    report["rhythm_shifts"] = [-1 / 3, 0.0, 1 / 3]
    note = [l for l in mu.render_table(report).splitlines() if "rhythm_shifts" in l]
    assert note == ["- beats, downbeats, tempo and meter as `analyze()` reads them: the beat, tempo and meter heads "
                    "averaged over passes at -0.333, +0, +0.333 semitones (`rhythm_shifts`)"]


def test_reference_key_says_where_the_label_came_from():
    keys = [f"k{i}" for i in range(24)]
    t = {"key": np.array([3, 3, 3, -1, 5]), "key_source": np.array([1, 1, 2, 0, 2], np.uint8),
         "beat_times": np.array([0.5, 1.0]), "beat_position": np.array([1, 2]), "tempo_bpm": np.float32(120),
         "meter": np.int16(-1), "chord": np.array([-1] * 5), "hop": 320, "sr": 16000}
    ref = mu.reference({"targets": t, "meta": {}}, keys, ["c"] * 109, ["m"] * 12)
    assert ref["key"] == "k3" and ref["key_source"] == "written"
    t["key_source"] = np.array([2, 2, 1, 0, 2], np.uint8)
    assert mu.reference({"targets": t, "meta": {}}, keys, ["c"] * 109, ["m"] * 12)["key_source"] == "analysis"
    del t["key_source"]
    assert mu.reference({"targets": t, "meta": {}}, keys, ["c"] * 109, ["m"] * 12)["key_source"] is None


def test_probe_repeats_below_one_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        mu.main(["--probe-repeats", "0"])
    assert exc.value.code == 2 and "--probe-repeats=0: expected at least 1" in capsys.readouterr().err


def test_bad_rhythm_shifts_are_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        mu.main(["--rhythm-shifts", "0", "3"])
    assert exc.value.code == 2 and "--rhythm-shifts: rhythm_shifts=(0.0, 3.0): 3.0 is not a number of semitones" \
        in capsys.readouterr().err


def test_meter_agreement_by_hand():
    pairs = [("6/8", "6/8"), ("6/8", "3/4"), ("3/4", "3/4"), ("4/4", "2/2"), ("4/4", "4/4"), ("2/4", "2/2")]
    m = mu.meter_agreement(pairs)
    assert m["exact"] == pytest.approx(3 / 6) and m["n"] == 6
    assert m["classes"] == {"compound-duple": 2, "triple": 1, "quadruple": 2, "duple": 1}
    # recall per class: compound-duple 1/2, triple 1/1, quadruple 1/2 (2/2 is duple), duple 1/1
    assert m["class_balanced"] == pytest.approx((0.5 + 1 + 0.5 + 1) / 4)


def _report(rows, model="m", probes=None):
    return {"model": model, "per_clip": rows, "results": {"probes": probes or {}}}


def _clip(i, piece, key, beat, mode, meter, chords, tags, truth):
    return {"clip": f"c{i}", "piece": piece, "key": key, "key_head_mean": key, "beat_f": beat, "downbeat_f": beat,
            "tempo_acc1": beat > 0.5, "tempo_acc2": True, "mode": mode, "meter": meter, "chords": chords,
            "tags": tags, "tag_truth": truth}


def test_paired_comparison_finds_a_real_gain_and_calls_equal_reports_noise():
    from benchmarks import compare_musicality as cm
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    base, cand = [], []
    for i in range(60):
        piece = f"p{i // 2}"
        tags = rng.random(3).round(5).tolist()
        truth = [j for j in range(3) if rng.random() < 0.4]
        minor = i % 3 == 0
        base.append(_clip(i, piece, 0.5, 0.6, ("minor" if minor else "major", "major"), ["3/4", "4/4"],
                          [5.0, 4.0, 10.0, 8.0], tags, truth))
        cand.append(_clip(i, piece, 1.0, 0.6, ("minor" if minor else "major",) * 2, ["3/4", "3/4"],
                          [10.0, 8.0, 10.0, 8.0], tags, truth))
    rows = {r["measure"]: r for r in cm.compare(_report(base), _report(cand[::-1]), boot=200)}
    key = rows["key, MIREX weighted"]
    assert (key["base"], key["candidate"], key["verdict"]) == (0.5, 1.0, "better")
    assert key["ci95"][0] > 0
    assert rows["chord root"]["base"] == 0.5 and rows["chord maj/min"]["candidate"] == 1.0
    assert rows["mode of the key (balanced)"]["base"] == 0.5 and rows["mode of the key (balanced)"]["candidate"] == 1.0
    assert rows["meter, time signature exact"]["diff"] == 1.0
    assert rows["beat F"]["verdict"] == "within noise" and rows["beat F"]["ci95"] == [0.0, 0.0]
    probs = np.array([r["tags"] for r in base])
    truth = np.zeros(probs.shape)
    for i, r in enumerate(base):
        truth[i, r["tag_truth"]] = 1
    expected = np.mean([roc_auc_score(truth[:, j], probs[:, j]) for j in range(3)])
    assert rows["tag ROC-AUC"]["base"] == pytest.approx(expected)
    same = cm.compare(_report(base), _report(base), boot=100)
    assert all(r["diff"] == 0 and r["verdict"] == "within noise" for r in same)


def test_paired_comparison_refuses_reports_without_the_same_clips():
    from benchmarks import compare_musicality as cm

    rows = [_clip(0, "p", 1.0, 1.0, None, None, None, None, [])]
    with pytest.raises(SystemExit, match="no per_clip records"):
        cm.compare(_report(rows), {"model": "m", "results": {}})
    other = [dict(rows[0], clip="elsewhere")]
    with pytest.raises(SystemExit, match="different clips"):
        cm.compare(_report(rows), _report(other))


def test_probe_comparison_pairs_the_repeats():
    from benchmarks import compare_musicality as cm

    a = {"mode": {"m": {"balanced_accuracy": 0.6, "per_repeat": [0.5, 0.6, 0.7]}}}
    b = {"mode": {"m": {"balanced_accuracy": 0.65, "per_repeat": [0.6, 0.55, 0.8]}}}
    (row,) = cm.compare_probes(_report([], probes=a), _report([], probes=b))
    assert row["diff"] == pytest.approx(0.05) and (row["repeats_up"], row["repeats_down"]) == (2, 1)


def test_per_clip_records_are_read_from_the_gzipped_file_the_report_names(tmp_path):
    import gzip
    import json

    from benchmarks import compare_musicality as cm

    rows = [_clip(i, f"p{i}", 1.0, 0.5, None, None, None, None, []) for i in range(3)]
    with gzip.open(tmp_path / "r.clips.json.gz", "wt") as f:
        json.dump(rows, f)
    (tmp_path / "r.json").write_text(json.dumps({"model": "m", "results": {}, "per_clip_file": "r.clips.json.gz"}))
    assert cm.load_report(tmp_path / "r.json")["per_clip"] == rows
    (tmp_path / "r.clips.json.gz").unlink()
    with pytest.raises(SystemExit, match="not beside it"):
        cm.load_report(tmp_path / "r.json")


def test_a_report_copied_without_its_own_per_clip_records_is_refused(tmp_path):
    """A report renamed beside another run's keeps ``per_clip_file``: the sha256 check and the
    same-file check refuse it instead of comparing one run with itself."""
    import gzip
    import hashlib
    import json

    from benchmarks import compare_musicality as cm

    rows = {k: [_clip(i, f"p{i}", v, 0.5, None, None, None, None, []) for i in range(3)] for k, v in (("a", 1.0), ("b", 0.0))}
    for k, r in rows.items():
        payload = json.dumps(r).encode()
        with gzip.open(tmp_path / f"{k}.clips.json.gz", "wb") as f:
            f.write(payload)
        (tmp_path / f"{k}.json").write_text(json.dumps({"model": "m", "results": {}, "per_clip_file": f"{k}.clips.json.gz",
                                                        "per_clip_sha256": hashlib.sha256(payload).hexdigest()}))
    assert cm.load_report(tmp_path / "b.json")["per_clip"] == rows["b"]
    # b's report pointed at a's records (as a copy renamed beside a's would): the checksum says so
    (tmp_path / "c.json").write_text((tmp_path / "b.json").read_text().replace("b.clips", "a.clips"))
    with pytest.raises(SystemExit, match="c.json: the per-clip records in a.clips.json.gz are not this report's"):
        cm.load_report(tmp_path / "c.json")
    # a report without a checksum (older runs) that reads another report's file: refused by the pair check
    (tmp_path / "d.json").write_text(json.dumps({"model": "m", "results": {}, "per_clip_file": "a.clips.json.gz"}))
    with pytest.raises(SystemExit, match="both read their per-clip records from"):
        cm.main([str(tmp_path / "a.json"), str(tmp_path / "d.json")])


def test_compare_can_leave_out_the_clips_another_run_scored(tmp_path):
    """--exclude-clips-of scores only the clips another report lacks (heldout-v3 without heldout-v2's):
    the figures are those of the kept clips, the probes (whole-run figures) are not compared, and a
    report that would keep nothing is refused."""
    import json

    from benchmarks import compare_musicality as cm

    # clips c0-c9 on pieces p0-p4; the candidate is right on c0-c3 only, which the other run holds
    base = [_clip(i, f"p{i // 2}", 0.0, 0.5, None, None, None, None, []) for i in range(10)]
    cand = [dict(r, key=1.0 if i < 4 else 0.0) for i, r in enumerate(base)]
    probes = {"mode": {"m": {"balanced_accuracy": 0.6, "per_repeat": [0.5, 0.7]}}}
    for name, rows in (("a", base), ("b", cand), ("old", base[:4])):
        (tmp_path / f"{name}.json").write_text(json.dumps(_report(rows, probes=probes)))
    out = tmp_path / "cmp.md"
    cm.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out), "--boot", "100"])
    whole = {r["measure"]: r for r in json.loads(out.with_suffix(".json").read_text())["measures"]}
    assert whole["key, MIREX weighted"]["diff"] == pytest.approx(0.4)
    cm.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out), "--boot", "100",
             "--exclude-clips-of", str(tmp_path / "old.json")])
    written = json.loads(out.with_suffix(".json").read_text())
    assert written["excluded"]["clips_left_out"] == 4 and written["excluded"]["clips_kept"] == 6
    kept = {r["measure"]: r for r in written["measures"]}
    assert kept["key, MIREX weighted"]["diff"] == 0.0 and written["probes"] == []
    assert "left out: 4; scored on the other 6" in out.read_text()
    (tmp_path / "all.json").write_text(json.dumps(_report(base)))
    with pytest.raises(SystemExit, match="leaves none of the report's 10 clips"):
        cm.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--exclude-clips-of", str(tmp_path / "all.json")])
    # a report without per-clip records names nothing to leave out: refused, not read as "leave out none"
    (tmp_path / "bare.json").write_text(json.dumps({"model": "m", "results": {}}))
    with pytest.raises(SystemExit, match=r"--exclude-clips-of='.*bare.json': the report has no per_clip records"):
        cm.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--exclude-clips-of", str(tmp_path / "bare.json")])


def test_compare_pairs_a_bar_record_with_its_own_evidence_reading(tmp_path, capsys):
    """--evidence-reading: one run whose model carries a bar record holds both readings of every clip; the
    base is the evidence's downbeats and meter, everything else the same, probes not compared."""
    import json

    from benchmarks import compare_musicality as cm

    rows = []
    for i in range(12):
        r = _clip(i, f"p{i // 3}", 0.8, 0.9, None, ["3/4", "3/4" if i < 9 else "4/4"], None, None, [])
        rows.append(dict(r, downbeat_f=0.9, downbeat_f_evidence=0.6, meter_evidence=["3/4", "4/4" if i < 6 else "3/4"]))
    probes = {"mode": {"m": {"balanced_accuracy": 0.6, "per_repeat": [0.5, 0.7]}}}
    (tmp_path / "run.json").write_text(json.dumps(_report(rows, probes=probes)))
    out = tmp_path / "cmp.md"
    cm.main([str(tmp_path / "run.json"), "--evidence-reading", "--out", str(out), "--boot", "100"])
    written = json.loads(out.with_suffix(".json").read_text())
    got = {r["measure"]: r for r in written["measures"]}
    assert got["downbeat F"]["base"] == pytest.approx(0.6) and got["downbeat F"]["candidate"] == pytest.approx(0.9)
    assert got["meter, time signature exact"]["base"] == pytest.approx(6 / 12)
    assert got["meter, time signature exact"]["candidate"] == pytest.approx(9 / 12)
    assert got["key, MIREX weighted"]["diff"] == 0 and got["beat F"]["diff"] == 0 and written["probes"] == []
    assert written["base"].endswith("run.json (evidence reading)")
    # a run without the record's second reading, or with both a candidate and the flag: refused
    plain = [{k: v for k, v in r.items() if k not in ("downbeat_f_evidence", "meter_evidence")} for r in rows]
    (tmp_path / "plain.json").write_text(json.dumps(_report(plain)))
    with pytest.raises(SystemExit, match="hold no downbeat_f_evidence"):
        cm.main([str(tmp_path / "plain.json"), "--evidence-reading"])
    older = [{k: v for k, v in r.items() if k != "meter_evidence"} for r in rows]
    (tmp_path / "older.json").write_text(json.dumps(_report(older)))
    with pytest.raises(SystemExit, match="hold no meter_evidence"):
        cm.main([str(tmp_path / "older.json"), "--evidence-reading"])
    for argv in ([str(tmp_path / "run.json"), str(tmp_path / "run.json"), "--evidence-reading"], [str(tmp_path / "run.json")]):
        with pytest.raises(SystemExit):
            cm.main(argv)
        assert "expected BASE CANDIDATE, or one report with --evidence-reading" in capsys.readouterr().err


def test_compare_out_must_name_the_markdown_file(tmp_path, capsys):
    """--out names the .md table; the .json rows go beside it: a name without .md (one with a dot in
    it, as the environment tags have) is refused before anything is written."""
    from benchmarks import compare_musicality as cm

    out = tmp_path / "compare-py3.11-tensorflow-x"
    with pytest.raises(SystemExit):
        cm.main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)])
    assert "expected a path ending in .md" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_pitch_class_counts_and_their_f_measure():
    truth = np.zeros((4, 12), bool)
    truth[:, [0, 4, 7]] = True  # C major triad in every frame: 12 true
    pred = truth.copy()
    pred[0, 0] = False  # one missed
    pred[1, 2] = True  # one extra
    counts = mu.pitch_class_counts(pred, truth)
    np.testing.assert_array_equal(counts, [11, 12, 12])
    assert mu.f1_of(counts) == pytest.approx(2 * 11 / 24)
    assert mu.f1_of(mu.pitch_class_counts(truth, truth)) == 1.0 and mu.f1_of(np.zeros(3)) == 0.0
    res = {"key_weighted": {"model": 0.77, "baseline": 0.70}, "beat_f": {"model": 0.87, "baseline": 0.6},
           "downbeat_f": {"model": 0.47}, "tempo": {"model": {"acc1": 0.89}, "baseline": {"acc1": 0.58}},
           "pitch_classes": {"model_f1": 0.8, "baseline_f1": 0.6, "key_ks_on_head": 0.75}}
    out = mu.headline(res, "tcn-music")
    assert (out["pitch_class_f1"], out["pitch_class_f1_chroma_cqt"], out["key_mirex_ks_on_pitch_classes"]) == (0.8, 0.6, 0.75)


def test_downbeats_with_the_score_bar_length_take_the_phase_from_the_evidence():
    """Beats every 25 frames; the downbeat activation peaks on beats 1, 4, 7, ... (three-beat bars whose
    first downbeat is the second beat): given 3 beats per bar, those beats come back; given 2 or 4, the
    phase whose beats carry the most evidence."""
    fps = 50.0
    frames = np.arange(10, 500, 25)
    act = np.zeros((520, 2))
    act[frames, 0] = 0.9
    act[frames[1::3], 1] = 0.8
    times = frames / fps
    np.testing.assert_allclose(mu.downbeats_with_bar_length(times, act, fps, 3), times[1::3])
    got = mu.downbeats_with_bar_length(times, act, fps, 2)
    assert got.tolist() in (times[0::2].tolist(), times[1::2].tolist())
    assert mu.downbeats_with_bar_length(times, act, fps, 1).tolist() == times.tolist()
    assert mu.downbeats_with_bar_length(times[:0], act, fps, 3).size == 0
