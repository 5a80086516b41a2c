"""The real-audio builder (training/real.py) on a fake dpkg tree, and the teacher cache (training/teacher.py)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import real, teacher

SR = 8000

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: fake

Files: *
Copyright: someone
License: GPL-2+

Files: hedgewars/*
Copyright: engine authors
License: GPL-2

Files:
 Data/Music/calm.wav
 Data/Music/other.wav
Copyright: a composer
License: CC-BY-SA-3.0

Files: Data/Music/calm.wav
Copyright: a later stanza overrides
License: CC-BY-3.0

Files: share/hedgewars/Data/Music/calm_fast.wav
Copyright: the install renamed share/hedgewars to share/games/hedgewars
License: GPL-3

License: CC-BY-SA-3.0
 The licence text, which is a stand-alone paragraph without Files.
"""

UFO_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: x
License: GPL-2+

Files:
 base/music/Crystan-Battlescape01.wav
 base/music/Crystan-Battlescape02.wav
Copyright: Crystan
License: CC-BY-NC-SA-3.0
"""


def tone(seconds: float, freq: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * noise).astype(np.float32)


def wav_bytes(y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture()
def fake_root(tmp_path) -> Path:
    """A file-system root with dpkg's database and two of the allowed packages installed."""
    root = tmp_path / "root"
    files: dict[str, dict[str, bytes]] = {"hedgewars-data": {}, "ufoai-music": {}}
    hw = "/usr/share/games/hedgewars/Data"
    files["hedgewars-data"].update({
        f"{hw}/Music/calm.wav": wav_bytes(tone(3.5, 220, 0)),
        f"{hw}/Music/calm_fast.wav": wav_bytes(tone(2.2, 330, 1)),  # a variant of calm: same split
        f"{hw}/Music/other.wav": wav_bytes(tone(2.0, 440, 2)),
        f"{hw}/Music/jingle.wav": wav_bytes(tone(0.5, 550, 3)),  # shorter than one clip
        f"{hw}/Music/silence.wav": wav_bytes(np.zeros(2 * SR, np.float32)),
        f"{hw}/Music/other_copy.wav": wav_bytes(tone(2.0, 440, 2)),  # same bytes as other.wav
        f"{hw}/Music/credits.txt": b"not audio",
        f"{hw}/Sounds/explosion.wav": wav_bytes(tone(3.0, 100, 4)),  # a sound effect: never read
    })
    pk3 = io.BytesIO()
    with zipfile.ZipFile(pk3, "w") as z:
        for i in (1, 2):
            z.writestr(f"music/Crystan-Battlescape0{i}.wav", wav_bytes(tone(2.5, 200 + 50 * i, 10 + i)))
        z.writestr("music/theme.xm", b"tracker module bytes")
        z.writestr("sound/step.wav", wav_bytes(tone(1.5, 900, 20)))
    files["ufoai-music"]["/usr/share/games/ufoai/base/0music.pk3"] = pk3.getvalue()
    status = []
    for pkg, contents in files.items():
        for path, data in contents.items():
            (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (root / path.lstrip("/")).write_bytes(data)
        listed = sorted({p.rsplit("/", k)[0] for p in contents for k in range(1, p.count("/"))} | set(contents))
        (root / "var/lib/dpkg/info").mkdir(parents=True, exist_ok=True)
        (root / f"var/lib/dpkg/info/{pkg}.list").write_text("/.\n" + "\n".join(listed) + "\n")
        doc = root / "usr/share/doc" / pkg
        doc.mkdir(parents=True, exist_ok=True)
        (doc / "copyright").write_text(COPYRIGHT if pkg == "hedgewars-data" else UFO_COPYRIGHT)
        status.append(f"Package: {pkg}\nStatus: install ok installed\nArchitecture: all\nVersion: 1.{len(status)}-1\n"
                      "Description: fake\n multi-line\n")
    status.append("Package: megaglest-data\nStatus: deinstall ok config-files\nVersion: 3.13.0-3\n")
    (root / "var/lib/dpkg/status").write_text("\n".join(status))
    return root


def build(root: Path, out: Path, **kw) -> dict:
    kw.setdefault("packages", ["hedgewars-data", "ufoai-music"])
    return real.build(out, root=root, sr=SR, clip_seconds=1.0, **kw)


def rows_of(out: Path) -> list[dict]:
    with open(out / "metadata.csv", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------- licences


def test_copyright_parsing_gives_each_files_stanza_in_order():
    stanzas = real.parse_copyright(COPYRIGHT)
    assert stanzas == [
        (["*"], "GPL-2+"),
        (["hedgewars/*"], "GPL-2"),
        (["Data/Music/calm.wav", "Data/Music/other.wav"], "CC-BY-SA-3.0"),
        (["Data/Music/calm.wav"], "CC-BY-3.0"),
        (["share/hedgewars/Data/Music/calm_fast.wav"], "GPL-3"),
    ]


def test_copyright_without_format_header_is_refused():
    with pytest.raises(real.RealDataError, match="not in the DEP-5 machine-readable format"):
        real.parse_copyright("This package was debianized by someone.\n\nIt is GPL.\n")


def test_licence_last_strict_stanza_wins_and_fallbacks_are_flagged():
    stanzas = real.parse_copyright(COPYRIGHT)
    calm = real.licence_for(stanzas, "/usr/share/games/hedgewars/Data/Music/calm.wav")
    assert (calm.licence, calm.files, calm.ambiguous) == ("CC-BY-3.0", "Data/Music/calm.wav", False)
    other = real.licence_for(stanzas, "/usr/share/games/hedgewars/Data/Music/other.wav")
    assert (other.licence, other.ambiguous) == ("CC-BY-SA-3.0", False)
    # a pattern whose leading directory the install renamed: recorded, flagged
    fast = real.licence_for(stanzas, "/usr/share/games/hedgewars/Data/Music/calm_fast.wav")
    assert (fast.licence, fast.files, fast.ambiguous) == ("GPL-3", "share/hedgewars/Data/Music/calm_fast.wav", True)
    # hedgewars/* covers the music only with * spanning directories: recorded, flagged
    loose = real.licence_for(stanzas, "/usr/share/games/hedgewars/Data/Music/new.wav")
    assert (loose.licence, loose.files, loose.ambiguous) == ("GPL-2", "hedgewars/*", True)
    assert "loose" in loose.note
    # nothing but the catch-all
    fallback = real.licence_for(stanzas, "/usr/share/games/other/song.wav")
    assert (fallback.licence, fallback.files, fallback.ambiguous) == ("GPL-2+", "*", True)
    assert real.licence_for([], "/x.ogg").licence == "unknown"


def test_pattern_match_kinds():
    assert real.pattern_match("data/music/*.ogg", "/usr/share/games/stk/data/music/a.ogg") == "strict"
    assert real.pattern_match("data/music/*", "/usr/share/games/supertux2/music/forest/a.ogg") == "loose"
    assert real.pattern_match("data/music/a?.ogg", "/x/data/music/ab.ogg") == "strict"
    assert real.pattern_match("data/sfx/*", "/x/data/music/a.ogg") == ""
    # a tail starts at a path component ("ata/a.ogg" is no tail of ".../data/a.ogg"), and dropping
    # leading directories of a pattern keeps at least one of them (never a bare file name)
    assert real.pattern_match("ata/a.ogg", "/x/data/a.ogg") == ""
    assert real.pattern_match("ata/music/a.ogg", "/x/data/music/a.ogg") == "loose"


@pytest.mark.parametrize("licence, verdict", [
    ("GPL-2+", "yes"), ("CC-BY-SA-3.0", "yes"), ("public-domain", "yes"), ("CC0-1.0", "yes"),
    ("CC-BY-NC-SA-3.0", "no"), ("CC-BY-NC-3.0 or GPL-3+", "yes"), ("CC-BY-NC-3.0 or Proprietary", "unknown"),
    ("Proprietary", "unknown"), ("unknown", "unknown"), ("", "unknown"), ("GPL-2+ and CC-BY-NC-4.0", "no"),
])
def test_commercial_use(licence, verdict):
    assert real.commercial_use(licence) == verdict


# ------------------------------------------------------------------------------------------ splits


def test_track_groups_join_variants_and_numbered_series():
    assert real.track_group("celtic_fast") == "celtic"
    assert real.track_group("farm_f") == "farm"
    assert real.track_group("Crystan-Battlescape01") == "crystan-battlescape"
    assert real.track_group("jumping_to_the_stars_remake_fast") == "jumping_to_the_stars"
    assert real.track_group("forest2") == "forest"
    assert real.track_group("xeon6") == "xeon"
    assert real.track_group("00s") == "00s"  # never strips a name down to nothing


def test_split_is_a_hash_of_package_and_group():
    fr = (0.7, 0.1, 0.2)
    names = [f"track{i}x" for i in range(400)]
    splits = [real.split_of("supertux-data", n, fr) for n in names]
    assert splits == [real.split_of("supertux-data", n, fr) for n in names]  # deterministic
    counts = {s: splits.count(s) for s in real.SPLITS}
    assert abs(counts["train"] / 400 - 0.7) < 0.08 and abs(counts["test"] / 400 - 0.2) < 0.08
    u = int.from_bytes(hashlib.sha256(b"supertux-data/track0x").digest()[:8], "big") / 2**64
    assert splits[0] == ("train" if u < 0.7 else "valid" if u < 0.8 else "test")
    assert real.split_of("a", "b", (1.0, 0.0, 0.0)) == "train"
    assert real.split_of("a", "b", (0.0, 0.0, 1.0)) == "test"


# ------------------------------------------------------------------------------------------- build


def test_build_writes_music_clips_with_provenance_licence_and_hashes(fake_root, tmp_path):
    out = tmp_path / "real"
    stats = build(fake_root, out)
    rows = rows_of(out)
    assert list(rows[0]) == list(real.FIELDS)
    sources = {r["source"] for r in rows}
    hw = "/usr/share/games/hedgewars/Data"
    pk3 = "/usr/share/games/ufoai/base/0music.pk3"
    assert sources == {f"{hw}/Music/calm.wav", f"{hw}/Music/calm_fast.wav", f"{hw}/Music/other.wav",
                       f"{pk3}:music/Crystan-Battlescape01.wav", f"{pk3}:music/Crystan-Battlescape02.wav"}
    # clips: floor(seconds) windows of 1 s
    per_source = {s: [r for r in rows if r["source"] == s] for s in sources}
    assert {s: len(v) for s, v in per_source.items()} == {
        f"{hw}/Music/calm.wav": 3, f"{hw}/Music/calm_fast.wav": 2, f"{hw}/Music/other.wav": 2,
        f"{pk3}:music/Crystan-Battlescape01.wav": 2, f"{pk3}:music/Crystan-Battlescape02.wav": 2}
    calm = sorted(per_source[f"{hw}/Music/calm.wav"], key=lambda r: float(r["offset_s"]))
    assert [r["offset_s"] for r in calm] == ["0", "1", "2"]
    source = sf.read(fake_root / f"{hw.lstrip('/')}/Music/calm.wav", dtype="float32")[0]
    for r in rows:
        data = (out / r["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["sha256"]
        y, sr = sf.read(out / r["path"], dtype="float32")
        assert sr == SR and y.shape == (SR,) and sf.info(out / r["path"]).format == "FLAC"
        assert r["path"].startswith(f"audio/{r['split']}/{r['package']}/")
    for r in calm:  # the samples of the source at the stated offset (16-bit round trip)
        y = sf.read(out / r["path"], dtype="float32")[0]
        k = int(float(r["offset_s"]) * SR)
        np.testing.assert_allclose(y, source[k : k + SR], atol=1.5 / 32768)
    assert {r["version"] for r in rows if r["package"] == "hedgewars-data"} == {"1.0-1"}
    assert {r["version"] for r in rows if r["package"] == "ufoai-music"} == {"1.1-1"}
    # licences
    lic = {r["track"]: (r["licence"], r["licence_ambiguous"], r["commercial"]) for r in rows}
    assert lic["calm"] == ("CC-BY-3.0", "0", "yes")
    assert lic["other"] == ("CC-BY-SA-3.0", "0", "yes")
    assert lic["calm_fast"] == ("GPL-3", "1", "yes")  # only loose matches cover it
    assert lic["Crystan-Battlescape01"] == ("CC-BY-NC-SA-3.0", "0", "no")
    # split by track group: calm and calm_fast together, the two Battlescapes together
    split = {r["track"]: r["split"] for r in rows}
    assert split["calm"] == split["calm_fast"] == real.split_of("hedgewars-data", "calm", (0.7, 0.1, 0.2))
    assert split["Crystan-Battlescape01"] == split["Crystan-Battlescape02"]
    assert len({(r["track"], r["split"]) for r in rows}) == 5
    # what was left out, and why
    with open(out / "skipped.csv", newline="") as f:
        skipped = {r["source"]: r["reason"] for r in csv.DictReader(f)}
    assert skipped[f"{hw}/Music/other_copy.wav"] == f"duplicate of {hw}/Music/other.wav"
    assert skipped[f"{hw}/Music/jingle.wav"].startswith("shorter than one clip")
    assert skipped[f"{hw}/Music/silence.wav"].startswith("shorter than one clip (2.0 s) or silent")
    assert skipped[f"{pk3}:music/theme.xm"] == "tracker-module"
    assert not any("Sounds" in s or "step" in s for s in skipped)  # not music: never even listed
    assert stats["clips"] == len(rows) == 11 and stats["silent_clips_skipped"] == 2
    assert stats["skipped_files"] == {"duplicate": 1, "tracker-module": 1, "shorter than one clip": 2}
    assert stats["per_licence"]["CC-BY-NC-SA-3.0"]["commercial"] == "no"
    assert stats["hours_commercial_ok"] == pytest.approx(7 / 3600, abs=1e-3)
    assert json.loads((out / "stats.json").read_text()) == stats
    assert not list(out.rglob("*.tmp"))


def test_build_is_deterministic(fake_root, tmp_path):
    build(fake_root, tmp_path / "a")
    build(fake_root, tmp_path / "b")
    assert (tmp_path / "a/metadata.csv").read_bytes() == (tmp_path / "b/metadata.csv").read_bytes()
    for r in rows_of(tmp_path / "a"):
        assert (tmp_path / "a" / r["path"]).read_bytes() == (tmp_path / "b" / r["path"]).read_bytes()


def test_build_resumes_only_what_is_missing(fake_root, tmp_path, monkeypatch):
    out = tmp_path / "real"
    calls = []
    original = real.build_track

    def failing(src, *a, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt  # an interrupted first run
        calls.append(src.track)
        return original(src, *a, **kw)

    monkeypatch.setattr(real, "build_track", failing)
    with pytest.raises(KeyboardInterrupt):
        build(fake_root, out)
    assert not (out / "metadata.csv").exists()
    assert len(list((out / "tracks").glob("*.json"))) == 2

    calls.clear()
    monkeypatch.setattr(real, "build_track", lambda src, *a, **kw: (calls.append(src.track), original(src, *a, **kw))[1])
    build(fake_root, out)
    first = rows_of(out)
    assert len(calls) == 7 - 2  # 8 music files listed, one duplicate never built, two done before
    # a clip deleted: its track (only) is rebuilt, bytes identical
    victim = first[0]
    (out / victim["path"]).unlink()
    calls.clear()
    build(fake_root, out)
    assert calls == [victim["track"]]
    assert rows_of(out) == first
    # nothing missing: nothing rebuilt
    calls.clear()
    build(fake_root, out)
    assert calls == []
    # other settings: everything rebuilt
    calls.clear()
    build(fake_root, out, silence_db=-90.0)
    assert len(calls) == 7


def test_build_refuses_bad_input(fake_root, tmp_path):
    with pytest.raises(real.RealDataError, match=r"split fractions=\(0.5, 0.1, 0.1\) must be"):
        build(fake_root, tmp_path / "x", fractions=(0.5, 0.1, 0.1))
    with pytest.raises(real.RealDataError, match="'vlc-data'.*not allowed sources"):
        build(fake_root, tmp_path / "x", packages=["vlc-data"])
    with pytest.raises(real.RealDataError, match="'megaglest-data' is not installed.*apt-get install megaglest-data"):
        build(fake_root, tmp_path / "x", packages=["megaglest-data"])
    with pytest.raises(real.RealDataError, match="sr=0 must be a positive integer"):
        real.build(tmp_path / "x", root=fake_root, sr=0)


def test_cli_build_and_stats(fake_root, tmp_path, capsys):
    out = tmp_path / "cli"
    assert real.main(["build", "--out", str(out), "--root", str(fake_root), "--packages", "hedgewars-data",
                      "--sr", str(SR), "--clip-seconds", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["clips"] == 7 and list(printed["per_package"]) == ["hedgewars-data"]
    assert real.main(["stats", str(out)]) == 0
    assert json.loads(capsys.readouterr().out) == printed


# ------------------------------------------------------------------------------------------ teacher


def test_teacher_cache_is_keyed_by_clip_sha256(tmp_path):
    sha = hashlib.sha256(b"clip").hexdigest()
    assert teacher.cache_file(tmp_path, sha) == tmp_path / teacher.TEACHER / sha[:2] / f"{sha}.npz"
    with pytest.raises(teacher.TeacherError, match="sha256='abc' is not a 64-character"):
        teacher.cache_file(tmp_path, "abc")


def test_teacher_pending_skips_cached_and_repeated_clips(tmp_path):
    a, b = hashlib.sha256(b"a").hexdigest(), hashlib.sha256(b"b").hexdigest()
    target = teacher.cache_file(tmp_path, a)
    target.parent.mkdir(parents=True)
    arrays = {f"{m}/{o}": np.arange(6, dtype=np.float32).reshape(3, 2) + i
              for i, (m, o) in enumerate((m, o) for m in teacher.MODELS for o in teacher.OUTPUTS)}
    np.savez(target, **arrays)
    clips = [(a, "/x/a.flac"), (b, "/x/b.flac"), (b, "/y/b-again.flac")]
    assert teacher.pending(clips, tmp_path) == [(b, "/x/b.flac")]
    got = teacher.load_targets(tmp_path, a)
    assert set(got) == set(arrays)
    np.testing.assert_array_equal(teacher.clip_vectors(tmp_path, [a, a], "MSD_musicnn/penultimate"),
                                  np.stack([arrays["MSD_musicnn/penultimate"].mean(axis=0)] * 2))
    with pytest.raises(teacher.TeacherError, match=f"no teacher targets for clip sha256={b}"):
        teacher.load_targets(tmp_path, b)
    with pytest.raises(teacher.TeacherError, match="key='MTT_musicnn/logits' is not"):
        teacher.clip_vectors(tmp_path, [a], "MTT_musicnn/logits")
    # all cached: no venv needed
    assert teacher.compute([(a, "/x/a.flac")], tmp_path, venv=tmp_path / "no-venv") == {
        "done": 0, "failed": [], "cached": 1}


def test_teacher_without_musicnn_names_the_setup_script(tmp_path, monkeypatch):
    monkeypatch.delenv("MIRZOO_MUSICNN_VENV", raising=False)
    clips = [(hashlib.sha256(b"x").hexdigest(), "/x.flac")]
    with pytest.raises(teacher.TeacherUnavailableError, match=r"musicnn venv not found at .*tools/setup-musicnn.sh"):
        teacher.compute(clips, tmp_path, venv=tmp_path / "missing")
    assert (Path(teacher.ROOT) / teacher.SETUP_SCRIPT).exists()
    monkeypatch.setenv("MIRZOO_MUSICNN_VENV", str(tmp_path / "env-venv"))
    with pytest.raises(teacher.TeacherUnavailableError, match="env-venv"):
        teacher.venv_python()
    assert not (tmp_path / teacher.TEACHER).exists() or not any((tmp_path / teacher.TEACHER).rglob("*.npz"))


def test_teacher_reads_real_and_corpus_folders(fake_root, tmp_path):
    out = tmp_path / "real"
    build(fake_root, out, packages=["hedgewars-data"])
    rows = rows_of(out)
    clips = teacher.clips_from_folder(out)
    assert [c[0] for c in clips] == [r["sha256"] for r in rows]
    test_only = teacher.clips_from_folder(out, "test")
    assert len(test_only) == sum(r["split"] == "test" for r in rows)
    # a corpus folder has no sha256 column: the files are hashed
    corpus = tmp_path / "corpus"
    (corpus / "clips").mkdir(parents=True)
    (corpus / "clips/c.flac").write_bytes(b"flac bytes")
    (corpus / "metadata.csv").write_text("path,tags\nclips/c.flac,style:folk\n")
    assert teacher.clips_from_folder(corpus) == [(hashlib.sha256(b"flac bytes").hexdigest(),
                                                  str((corpus / "clips/c.flac").resolve()))]
    with pytest.raises(teacher.TeacherError, match="has no split column"):
        teacher.clips_from_folder(corpus, "test")
    with pytest.raises(teacher.TeacherError, match="no metadata.csv in"):
        teacher.clips_from_folder(tmp_path)


# ------------------------------------------------------------------------------- real-audio benchmark


def _grouped_task(n_groups: int = 24, per_group: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_groups) % 3, per_group)
    groups = np.repeat(np.arange(n_groups), per_group).astype(str)
    centres = np.eye(3)[labels] * 3.0
    informative = centres + rng.standard_normal((labels.size, 3))
    noise = rng.standard_normal((labels.size, 20))
    # a feature that identifies the track, not the class: perfect within a track, useless across tracks
    track_id = np.repeat(rng.standard_normal((n_groups, 8)) * 5, per_group, axis=0)
    return labels.astype(str), groups, informative, noise, track_id


def test_nested_probe_chooses_the_informative_layer_inside_every_fold():
    from benchmarks import real_audio

    y, groups, informative, noise, _ = _grouped_task()
    res = real_audio.nested_probe({"noise": noise, "good": informative}, y, groups, folds=4, seed=0, Cs=(0.1, 1.0))
    assert [c["layer"] for c in res["chosen"]] == ["good"] * 4
    assert res["balanced_accuracy"] > 0.9 and res["pooled_balanced_accuracy"] > 0.9
    alone = real_audio.nested_probe({"noise": noise}, y, groups, folds=4, seed=0, Cs=(0.1, 1.0))
    assert alone["pooled_balanced_accuracy"] < 0.6  # chance is 1/3
    twice = real_audio.nested_probe({"good": informative}, y, groups, folds=4, seed=0, Cs=(1.0,), repeats=2)
    assert len(twice["pooled_per_repeat"]) == 2 and len(twice["chosen"]) == 8
    assert twice["pooled_per_repeat"][0] == pytest.approx(
        real_audio.nested_probe({"good": informative}, y, groups, folds=4, seed=0, Cs=(1.0,))["pooled_balanced_accuracy"])


def test_nested_probe_folds_never_split_a_track():
    from benchmarks import real_audio

    y, groups, _, _, track_id = _grouped_task(seed=1)
    # labels are a function of the track, so a split that leaked tracks would score ~1.0
    res = real_audio.nested_probe({"id": track_id}, y, groups, folds=4, seed=0, Cs=(1.0,))
    assert res["balanced_accuracy"] < 0.7 and res["pooled_balanced_accuracy"] < 0.7


def test_split_probe_chooses_on_the_fit_split_and_scores_the_other():
    """``--fit-split``: the layer is chosen by grouped CV on the fit split alone, and a feature that only
    names the fit split's tracks does not carry over to new tracks."""
    from benchmarks import real_audio

    y, groups, informative, noise, track_id = _grouped_task(n_groups=30, seed=2)
    fit, test = np.arange(len(y)) < 24 * 6, np.arange(len(y)) >= 24 * 6  # 24 tracks to fit, 6 new ones
    feats = {"noise": noise, "good": informative, "id": track_id}
    res = real_audio.split_probe({k: v[fit] for k, v in feats.items()}, y[fit], groups[fit],
                                 {k: v[test] for k, v in feats.items()}, Cs=(0.1, 1.0), seed=0)
    assert res["layer"] == "good" and res["cv_balanced_accuracy"] > 0.9
    assert res["pred"].shape == (int(test.sum()),) and np.mean(res["pred"] == y[test]) > 0.9


def test_group_bootstrap_resamples_whole_tracks_within_each_class():
    from benchmarks import real_audio

    y, groups, *_ = _grouped_task(n_groups=9, per_group=4)
    draws = real_audio.group_bootstrap(y, groups, 50, seed=0)
    assert len(draws) == 50 and all(len(d) == len(y) for d in draws)  # 3 tracks of 4 clips per class
    for d in draws:
        picked = groups[d]
        for g in set(picked.tolist()):
            assert (picked == g).sum() % 4 == 0  # a track comes whole (once, twice, ...)
        assert sorted((y[d] == c).sum() for c in set(y.tolist())) == [12, 12, 12]
    assert len({tuple(sorted(set(groups[d].tolist()))) for d in draws}) > 10  # they differ


def test_fit_split_report_pairs_the_differences_on_the_same_resamples():
    """A model that predicts like random-cnn plus a few right clips: its paired interval against random-cnn
    is tight and above zero, where two independent intervals would overlap."""
    from benchmarks import real_audio

    y, groups, informative, noise, _ = _grouped_task(n_groups=30, seed=3)
    rows = [{"package": c, "group": g} for c, g in zip(y, groups)]
    fit, test = slice(0, 24 * 6), slice(24 * 6, None)
    rng = np.random.default_rng(0)
    weak = informative + rng.standard_normal(informative.shape) * 2.5
    methods = {"random-cnn": {"x": weak}, "cnn-tagging": {"x": informative}, "musicnn-MTT": {"x": informative},
               "mfcc": {"x": noise}}
    report = real_audio.fit_split_report(rows[fit], rows[test], {m: {k: v[fit] for k, v in f.items()} for m, f in methods.items()},
                                         {m: {k: v[test] for k, v in f.items()} for m, f in methods.items()},
                                         {"cnn-tagging": True, "random-cnn": False}, Cs=(1.0,), seed=0, boot=200)
    m = report["methods"]
    assert m["cnn-tagging"]["balanced_accuracy"] > m["random-cnn"]["balanced_accuracy"]
    lo, hi = m["cnn-tagging"]["interval"]
    assert lo <= m["cnn-tagging"]["balanced_accuracy"] <= hi
    t = report["targets"]["cnn-tagging"]
    assert t["vs_random_cnn"]["than"] == "random-cnn" and t["vs_random_cnn"]["interval"][0] > 0
    assert t["vs_musicnn"]["difference"] == pytest.approx(0.0)  # the same features: the same predictions
    assert report["test"]["track_groups"] == 6 and report["fit"]["track_groups"] == 24
    table = real_audio.fit_split_table(report, "train", "test")
    assert "| cnn-tagging | pretrained |" in table and "| random-cnn | untrained/random |" in table
    lo, hi = t["vs_random_cnn"]["interval"]
    verdict = "met" if lo >= 0.05 else "not met" if hi < 0.05 else "not shown either way"
    assert f"vs random-cnn ({verdict})" in table and "vs musicnn-MTT (" in table


def test_real_audio_task_keeps_test_split_and_drops_thin_classes(tmp_path):
    from benchmarks import real_audio

    lines = ["path,split,package,group,sha256"]
    for pkg, groups in (("a", 3), ("b", 1)):
        for g in range(groups):
            for split in ("train", "test"):
                lines.append(f"{pkg}{g}-{split}.flac,{split},{pkg},g{g},{'0' * 64}")
    (tmp_path / "metadata.csv").write_text("\n".join(lines) + "\n")
    rows, dropped = real_audio.load_task(tmp_path, "test", min_groups=2)
    assert dropped == ["b"]
    assert [r["path"] for r in rows] == ["a0-test.flac", "a1-test.flac", "a2-test.flac"]


def test_real_audio_targets_give_every_method_the_better_of_chosen_layer_and_all():
    """musicnn's layer="all" counts as much as the zoo's: the 2026-12-05 run's rows (musicnn-MSD 32.5
    chosen, 34.2 "all") put the best musicnn at 34.2, not the 33.8 of MTT's chosen layer."""
    from benchmarks import real_audio

    summary = [
        {"method": "cnn-tagging", "balanced_accuracy": 0.332, "all_balanced_accuracy": 0.291},
        {"method": "random-cnn", "balanced_accuracy": 0.308, "all_balanced_accuracy": 0.305},
        {"method": "musicnn-MTT", "balanced_accuracy": 0.338, "all_balanced_accuracy": 0.340},
        {"method": "musicnn-MSD", "balanced_accuracy": 0.325, "all_balanced_accuracy": 0.342},
        {"method": "mfcc", "balanced_accuracy": 0.334},
        {"method": "other", "balanced_accuracy": 0.36, "all_balanced_accuracy": 0.40},
    ]
    t = real_audio.issue_targets(summary, {"cnn-tagging": True, "random-cnn": False, "other": True})
    assert sorted(t) == ["cnn-tagging", "other"]
    assert t["cnn-tagging"]["score"] == pytest.approx(0.332)
    assert t["cnn-tagging"]["vs_musicnn"] == pytest.approx(0.332 - 0.342)
    assert t["cnn-tagging"]["vs_random_cnn"] == pytest.approx(0.332 - 0.308)
    assert not t["cnn-tagging"]["met_musicnn"] and not t["cnn-tagging"]["met_random"]
    assert t["other"]["score"] == pytest.approx(0.40)
    assert t["other"]["met_musicnn"] and t["other"]["met_random"]
    assert "vs_musicnn" not in real_audio.issue_targets(summary[:2], {"cnn-tagging": True})["cnn-tagging"]


def test_group_folds_keep_tracks_whole_balance_classes_and_follow_the_seed():
    from benchmarks import real_audio

    y = np.repeat(np.array(["a"] * 7 + ["b"] * 3 + ["c"] * 5), 4)
    groups = np.repeat(np.arange(15).astype(str), 4)
    folds = real_audio.group_folds(y, groups, 5, seed=0)
    assert len(folds) == 5
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(60))  # every clip tested exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert sorted(np.concatenate([train, test]).tolist()) == list(range(60))
    per_fold = [{c: len(set(groups[te][y[te] == c])) for c in "abc"} for _, te in folds]
    assert [sum(p[c] for p in per_fold) for c in "abc"] == [7, 3, 5]
    assert all(max(p[c] for p in per_fold) - min(p[c] for p in per_fold) <= 1 for c in "abc")
    again = real_audio.group_folds(y, groups, 5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = real_audio.group_folds(y, groups, 5, seed=1)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, other))
