"""Fault suite (issue 14): careless input, hostile files, misuse, kills and tampering.

Every case asserts either a typed mirzoo error whose message names the bad input, or a
correct result (shape, values against a reference).  Slow cases (subprocesses, kills, the
full 1..400-sample sweep) are marked ``slow``; the default run keeps a handful of each class.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import mirzoo
import mirzoo.batch
import mirzoo.fileio
from mirzoo import audio as ma
from mirzoo.batch import extract_files, read_embeddings
from mirzoo.errors import AudioError, AudioFileError, OutputError, ParameterError, WeightsError
from mirzoo.fileio import output_lock

from conftest import SR, tone_mix, traced_peak

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = list(mirzoo.list_models())
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2", HF_HUB_OFFLINE="1")
    return env


def _cli(*args, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mirzoo", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout, cwd=REPO_ROOT, **kwargs)


@pytest.fixture(scope="module")
def models():
    return {name: mirzoo.load(name) for name in MODELS}


def _expected_steps(model, n: int) -> int:
    return 1 + n // model.hop_length if model.output_kind == "frame" else 1


# -- 1. short and odd lengths, every model -------------------------------------------------------


def _check_lengths(model, lengths):
    rng = np.random.default_rng(len(lengths))
    clips = [(0.3 * rng.standard_normal(n)).astype(np.float32) for n in lengths]
    out = model.extract(clips, sr=model.sample_rate)
    for n, e in zip(lengths, out):
        assert e.embeddings.shape == (_expected_steps(model, n), model.layers[model.default_layer]), (model.name, n)
        assert np.all(np.isfinite(e.embeddings)), (model.name, n)
    # a short clip gives the same embedding alone as inside the list
    alone = model.extract(clips[0], sr=model.sample_rate)
    np.testing.assert_allclose(alone.embeddings, out[0].embeddings, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_short_inputs_every_model(models, name):
    # 1, 3, 73, 319 samples aborted dense-frame (SIGABRT in oneDNN); 320/641 are the frame edges
    _check_lengths(models[name], [1, 3, 73, 319, 320, 641, 1601])


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_length_1_to_400_every_model(models, name):
    _check_lengths(models[name], list(range(1, 401)))


def test_frame_padding_leaves_long_signals_exact(models):
    # short windows are padded to 3 frames; a longer signal's frames still equal the model run on
    # the whole signal in one piece
    m = models["dense-frame"]
    y = tone_mix(2.0)
    whole = np.asarray(m.model.predict_on_batch(y[None])["embedding"])[0]
    got = m.extract(y, sr=SR).embeddings
    assert got.shape == whole.shape == (1 + y.size // m.hop_length, 256)
    np.testing.assert_allclose(got, whole, rtol=1e-4, atol=1e-4)


# -- extreme amplitudes --------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e20, 1e7, np.finfo(np.float32).max])
def test_huge_amplitude_is_refused_with_the_bound(models, scale):
    y = (np.sin(np.arange(SR) / 5.0) * scale).astype(np.float32)
    with pytest.raises(AudioError, match=r"peak amplitude .* at most 1e\+06"):
        models["dense-frame"].extract(y, sr=SR)
    with pytest.raises(AudioError, match="audio\\[1\\]: audio has peak amplitude"):
        models["random-cnn"].extract([tone_mix(1.0), y], sr=SR)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("scale", [ma.MAX_AMPLITUDE, 1e-30, 0.0])
def test_extreme_but_accepted_amplitudes_stay_finite(models, name, scale):
    y = (np.sin(np.arange(SR // 2) / 5.0) * scale).astype(np.float32)
    e = models[name].extract(y, sr=SR)
    assert np.all(np.isfinite(e.embeddings)), (name, scale)
    if models[name].heads:
        label, p = models[name].tag(y, sr=SR, top_k=1)[0]
        assert np.isfinite(p) and 0.0 <= p <= 1.0


def test_integer_pcm_extremes(models):
    y = np.tile(np.array([32767, -32768], np.int16), SR // 2)
    e = models["dense-frame"].extract(y, sr=SR)
    assert np.all(np.isfinite(e.embeddings))


# -- broken, truncated and disguised files -------------------------------------------------------

FORMATS = {"wav": {}, "flac": {}, "ogg": {"format": "OGG"}, "mp3": {"format": "MP3"}}


def _good(tmp_path, ext) -> Path:
    p = tmp_path / f"good.{ext}"
    sf.write(p, tone_mix(2.0, seed=3), SR, **FORMATS[ext])
    return p


def _decode_or_error(path: Path):
    """A correct result (finite, mono, not longer than the source) or a typed error naming ``path``."""
    try:
        y = ma.load_audio(path, SR)
    except (AudioFileError, AudioError) as exc:
        assert str(path) in str(exc), str(exc)
        assert not str(exc).rstrip().endswith(": )"), str(exc)
        return None
    assert y.ndim == 1 and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert 0 < y.size <= 2 * SR + 4096
    return y


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_broken_files_of_each_format(tmp_path, ext):
    good = _good(tmp_path, ext)
    data = good.read_bytes()
    full = ma.load_audio(good, SR)
    cases = {
        "empty": b"",
        "header-only": data[:12],
        "half-header": data[:30],
        "truncated-half": data[: len(data) // 2],
        "truncated-end": data[:-7],
        "garbage-after-header": data[:64] + bytes(range(256)) * 20,
        "zeroed-middle": data[: len(data) // 3] + bytes(len(data) // 3) + data[2 * len(data) // 3:],
        "random": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "text": b"this is not audio\n" * 50,
    }
    for case, blob in cases.items():
        p = tmp_path / f"{case}.{ext}"
        p.write_bytes(blob)
        y = _decode_or_error(p)
        if y is not None and ext in ("wav", "flac") and case.startswith("truncated"):
            # lossless: what is decoded is exactly the start of the whole file
            np.testing.assert_allclose(y[: y.size - 256], full[: y.size - 256], atol=2e-3)


@pytest.mark.parametrize("real,name", [("wav", "x.mp3"), ("flac", "x.wav"), ("mp3", "x.flac"), ("ogg", "x.wav")])
def test_disguised_files_decode_by_content(tmp_path, real, name):
    good = _good(tmp_path, real)
    fake = tmp_path / name
    shutil.copyfile(good, fake)
    y = _decode_or_error(fake)
    assert y is not None and abs(y.size - 2 * SR) < 4096  # the content decides, not the name


def test_unknown_format_message_is_not_empty(tmp_path):
    p = tmp_path / "notes.mp3"
    p.write_bytes(b"\x00" * 10)
    with pytest.raises(AudioFileError) as info:
        ma.load_audio(p, SR)
    msg = str(info.value)
    assert str(p) in msg and "fallback decoder" in msg and not msg.endswith(": )")


def test_flac_header_claiming_2_pow_36_samples_streams(tmp_path):
    p = tmp_path / "liar.flac"
    sf.write(p, tone_mix(1.0, seed=4), SR, format="FLAC")
    data = bytearray(p.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    # bytes 18..25: 20 bits rate, 3 bits channels-1, 5 bits bits-1, 36 bits total samples
    word = int.from_bytes(data[18:26], "big") | ((1 << 36) - 1)
    data[18:26] = word.to_bytes(8, "big")
    p.write_bytes(bytes(data))
    assert sf.info(str(p)).frames == (1 << 36) - 1
    y, peak = traced_peak(ma.load_audio, p, SR)
    assert abs(y.size - SR) < 4096 and np.all(np.isfinite(y))
    assert peak < 512 * 2**20, f"decoding peaked at {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("rate", [1, 500, 999_999, 2_000_000])
def test_file_sample_rate_outside_the_range(tmp_path, rate):
    p = tmp_path / f"rate{rate}.wav"
    sf.write(p, tone_mix(0.5), SR, subtype="PCM_16")
    data = bytearray(p.read_bytes())
    assert data[24:28] == SR.to_bytes(4, "little")
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (rate * 2).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    with pytest.raises(AudioFileError, match=rf"'{p}'.*{rate}.*{ma.MIN_SAMPLE_RATE}\.\.{ma.MAX_SAMPLE_RATE}"):
        ma.load_audio(p, SR)


@pytest.mark.parametrize("sr", [1, 999, 768_001, 1e9])
def test_array_sample_rate_outside_the_range(models, sr):
    with pytest.raises(ParameterError, match=r"sr=.*outside the supported range 1000\.\.768000 Hz"):
        models["random-cnn"].extract(np.zeros(100, np.float32), sr=sr)


@pytest.mark.parametrize("sr", [ma.MIN_SAMPLE_RATE, ma.MAX_SAMPLE_RATE])
def test_array_sample_rate_at_the_range_ends(models, sr):
    e = models["dense-frame"].extract(np.sin(np.arange(sr // 10) / 3.0).astype(np.float32), sr=sr)
    assert np.all(np.isfinite(e.embeddings)) and e.embeddings.shape[0] == 1 + 1600 // 320


# -- non-regular paths -----------------------------------------------------------------------------


def _with_alarm(fn, seconds=20):
    def on_alarm(*_):
        raise TimeoutError(f"hung for {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_non_regular_paths_are_named(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.wav"
    os.symlink(loop, loop)
    broken = tmp_path / "broken.wav"
    os.symlink(tmp_path / "nowhere.wav", broken)
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    cases = {
        fifo: "FIFO",
        loop: "symbolic link loop",
        broken: "broken symbolic link",
        folder: "directory",
        tmp_path / "missing.wav": "not found",
        Path("/dev/null"): "device",
    }
    for path, words in cases.items():
        with pytest.raises(AudioFileError) as info:
            _with_alarm(lambda: ma.load_audio(path, SR))
        assert str(path) in str(info.value) and words in str(info.value), str(info.value)


def test_list_with_one_bad_item_names_its_index(models, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone_mix(1.0), SR)
    with pytest.raises(AudioFileError, match=r"audio\[2\]: audio file not found: '.*missing.wav'"):
        models["random-cnn"].extract([str(good), tone_mix(1.0), str(tmp_path / "missing.wav")], sr=SR)
    with pytest.raises(AudioError, match=r"audio\[1\]: audio contains 1 non-finite"):
        models["random-cnn"].extract([tone_mix(1.0), np.array([0.1, np.nan], np.float32)], sr=SR)


# -- API misuse (item 8) ---------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", ["high", [0.5], True, -0.1, 1.5, float("nan")])
def test_tag_threshold_must_be_a_number(models, threshold):
    with pytest.raises(ParameterError, match=r"threshold=.* must be a number in \[0, 1\]"):
        models["cnn-tagging"].tag(tone_mix(1.0), sr=SR, threshold=threshold)


def test_fine_tune_with_integer_labels_works(models):
    data = [(tone_mix(1.0, seed=i, freqs=(220.0 if i % 2 else 880.0,)), 1 if i % 2 else 2) for i in range(6)]
    clf = models["random-cnn"].fine_tune(data, sr=SR, epochs=2, validation=0.0, seed=0)
    assert list(clf.heads[clf.head_output]) == ["1", "2"]
    pairs = clf.tag(data[0][0], sr=SR, top_k=None)
    assert sorted(t for t, _ in pairs) == ["1", "2"] and abs(sum(p for _, p in pairs) - 1.0) < 1e-4


def test_fine_tune_with_bad_audio_or_labels_names_the_item(models):
    with pytest.raises(ParameterError, match=r"data\[0\] .* audio of type list"):
        models["random-cnn"].fine_tune([([0.1] * 100, "a"), ([0.2] * 100, "b")], sr=SR)
    with pytest.raises(ParameterError, match=r"label of data\[1\] is 2\.5"):
        models["random-cnn"].fine_tune([(tone_mix(1.0), "a"), (tone_mix(1.0), 2.5)], sr=SR)


def test_save_below_a_file_is_a_parameter_error(models, tmp_path):
    blocker = tmp_path / "a_file.txt"
    blocker.write_text("x")
    with pytest.raises(ParameterError, match=rf"'{blocker}' is a file"):
        models["random-cnn"].save(blocker / "sub")


# -- tampering: saved models and hub snapshots ------------------------------------------------------


@pytest.fixture(scope="module")
def saved(models, tmp_path_factory) -> Path:
    return models["random-cnn"].save(tmp_path_factory.mktemp("saved") / "model")


def _copy(saved: Path, tmp_path: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(saved, d)
    return d


def _same(a, b) -> bool:
    wa, wb = a.model.get_weights(), b.model.get_weights()
    return all(np.array_equal(x, y) for x, y in zip(wa, wb))


def _edit_meta(d: Path, fn):
    meta = json.loads((d / "mirzoo.json").read_text())
    fn(meta)
    (d / "mirzoo.json").write_text(json.dumps(meta))


def test_saved_model_records_every_file(saved, models):
    meta = json.loads((saved / "mirzoo.json").read_text())
    assert set(meta["files"]) >= {"config.json", "metadata.json", "model.weights.h5"}
    assert _same(mirzoo.load(str(saved)), models["random-cnn"])


def _flip_one_byte(p: Path):
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["config.json", "metadata.json", "model.weights.h5"])
def test_tampered_file_of_a_saved_model_is_refused(saved, tmp_path, name):
    d = _copy(saved, tmp_path)
    _flip_one_byte(d / name)
    with pytest.raises(WeightsError, match=rf"'{d / name}' fails its sha256 check"):
        mirzoo.load(str(d))


def test_front_end_constant_edit_is_refused(saved, tmp_path):
    d = _copy(saved, tmp_path)
    text = (d / "config.json").read_text()
    assert '"top_db": 80.0' in text
    (d / "config.json").write_text(text.replace('"top_db": 80.0', '"top_db": 20.0'))
    with pytest.raises(WeightsError, match="config.json' fails its sha256 check"):
        mirzoo.load(str(d))


def test_weights_record_pointing_at_another_file_is_refused(saved, tmp_path):
    # the published bypass: weights.file -> config.json (with its true sha256) or ../other/model.weights.h5
    d = _copy(saved, tmp_path)
    other = tmp_path / "other"
    shutil.copytree(saved, other)
    _flip_one_byte(d / "model.weights.h5")
    cfg_sha = mirzoo.fileio.file_sha256(d / "config.json")
    for file, sha in [("config.json", cfg_sha), ("../other/model.weights.h5", None)]:
        def point(meta, file=file, sha=sha):
            meta["entry"]["weights"]["file"] = file
            meta["entry"]["weights"]["sha256"] = sha or meta["entry"]["weights"]["sha256"]
        _edit_meta(d, point)
        with pytest.raises(WeightsError, match=r"weights.file=.* must be 'model.weights.h5'"):
            mirzoo.load(str(d))


def test_file_record_leaving_the_directory_is_refused(saved, tmp_path):
    d = _copy(saved, tmp_path)
    _edit_meta(d, lambda m: m["files"].update({"../x.json": {"sha256": "0" * 64}}))
    with pytest.raises(WeightsError, match=r"'\.\./x\.json' leaves the model directory"):
        mirzoo.load(str(d))


def test_mirzoo_json_tampering(saved, tmp_path):
    d = _copy(saved, tmp_path)
    _edit_meta(d, lambda m: m["files"]["config.json"].update(sha256="1" * 64))
    with pytest.raises(WeightsError, match="config.json' fails its sha256 check"):
        mirzoo.load(str(d))
    _edit_meta(d, lambda m: m["files"].pop("config.json"))
    with pytest.raises(WeightsError, match="no sha256 for 'config.json'"):
        mirzoo.load(str(d))
    (d / "mirzoo.json").write_text("{not json")
    with pytest.raises(ParameterError, match=rf"'{d / 'mirzoo.json'}' is not a valid mirzoo.json"):
        mirzoo.load(str(d))


def test_file_swapped_after_the_check_is_not_loaded(saved, tmp_path, monkeypatch, models):
    # the bytes hashed are the bytes Keras reads: swapping a file after the check changes nothing
    import keras

    d = _copy(saved, tmp_path)
    real = keras.saving.load_model

    def swap_then_load(path, *args, **kwargs):
        _flip_one_byte(d / "model.weights.h5")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(keras.saving, "load_model", swap_then_load)
    assert _same(mirzoo.load(str(d)), models["random-cnn"])


def test_folder_saved_before_file_hashes_needs_trust(saved, tmp_path, models):
    from mirzoo.loader import trust_saved

    d = _copy(saved, tmp_path)
    _edit_meta(d, lambda m: m.pop("files"))
    with pytest.raises(WeightsError, match=r"older mirzoo.*trust_saved"):
        mirzoo.load(str(d))
    trust_saved(d)
    assert _same(mirzoo.load(str(d)), models["random-cnn"])


@pytest.fixture
def hub_cache(hf_cache) -> Path:
    return hf_cache


@pytest.mark.parametrize("name", ["config.json", "metadata.json", "model.weights.h5", "mirzoo.json"])
def test_tampered_file_of_a_hub_snapshot_is_refused(saved, hub_cache, tmp_path, name):
    from test_hub import add_to_cache, blob_of

    commit = add_to_cache(hub_cache, "owner/tamper", saved)
    assert mirzoo.load("hf://owner/tamper@main").name == "random-cnn"
    blob = blob_of(hub_cache, "owner/tamper", commit, name)
    if name == "mirzoo.json":  # a forged record for a tampered weight file
        _flip_one_byte(blob_of(hub_cache, "owner/tamper", commit, "model.weights.h5"))
        meta = json.loads(blob.read_text())
        config = blob_of(hub_cache, "owner/tamper", commit, "config.json")
        meta["entry"]["weights"].update(file="config.json", sha256=mirzoo.fileio.file_sha256(config))
        meta["files"].pop("model.weights.h5")
        blob.write_text(json.dumps(meta))
        match = "must be 'model.weights.h5'"
    else:
        _flip_one_byte(blob)
        match = rf"{name}.*fails its sha256 check"
    with pytest.raises(WeightsError, match=match):
        mirzoo.load("hf://owner/tamper@main")


# -- outputs: unwritable, concurrent writers, per-batch parts ---------------------------------------


@pytest.fixture
def clips(tmp_path) -> Path:
    d = tmp_path / "clips"
    d.mkdir()
    for i in range(6):
        sf.write(d / f"c{i}.wav", tone_mix(0.5, seed=i), SR, subtype="PCM_16")
    return d


def test_unwritable_outputs_fail_before_any_work(tmp_path, clips, models, monkeypatch):
    calls = []
    monkeypatch.setattr(mirzoo.batch, "as_extractor", lambda m: calls.append(m) or models["random-cnn"])
    existing_dir = tmp_path / "out.npz"
    existing_dir.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = {existing_dir: "is an existing directory", blocker / "out.npz": "is a file, not a directory",
             Path("/proc/mirzoo-no/out.npz"): "is not writable"}
    if not IS_ROOT:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases[ro / "out.npz"] = "is not writable"
    for out, words in cases.items():
        with pytest.raises(OutputError, match=words) as info:
            extract_files("random-cnn", [str(clips)], out, workers=0)
        assert str(out) in str(info.value)
    assert calls == []  # refused before the model was even loaded


@pytest.mark.slow
def test_cli_unwritable_output_exits_2_without_traceback(tmp_path, clips):
    out = tmp_path / "out.npz"
    out.mkdir()
    r = _cli("extract", "random-cnn", str(clips), "-o", str(out), "-q")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and f"output '{out}' is an existing directory" in r.stderr


def test_second_writer_is_told_who_holds_the_output(tmp_path, clips):
    out = tmp_path / "shared.npz"
    with output_lock(out):
        with pytest.raises(OutputError, match=rf"'{out}' is being written by process {os.getpid()}"):
            extract_files("random-cnn", [str(clips)], out, workers=0)
    report = extract_files("random-cnn", [str(clips)], out, workers=0)  # released: works, lock file gone
    assert report.written == 6 and not (tmp_path / ".shared.npz.lock").exists()


def test_stale_lock_file_of_a_dead_process_does_not_block(tmp_path, clips):
    out = tmp_path / "o.npz"
    (tmp_path / ".o.npz.lock").write_text("999999\n")  # left by a process killed with -9
    assert extract_files("random-cnn", [str(clips)], out, workers=0).written == 6


def test_progress_is_saved_per_batch(tmp_path, clips, monkeypatch):
    written = []
    real = mirzoo.batch._Parts.write
    monkeypatch.setattr(mirzoo.batch._Parts, "write", lambda self, block, meta: written.append(len(block.paths))
                        or real(self, block, meta))
    extract_files("random-cnn", [str(clips)], tmp_path / "o.npz", batch_size=2, workers=0)
    assert written == [2, 2, 2]


@pytest.mark.slow
def test_two_cli_runs_on_one_output(tmp_path, clips):
    out = tmp_path / "shared.npz"
    cmd = [sys.executable, "-m", "mirzoo", "extract", "random-cnn", str(clips), "-o", str(out), "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                              cwd=REPO_ROOT) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for code, err in results:
        assert code == 0 or (code == 2 and "is being written by process" in err), err
    assert any(code == 0 for code, _ in results)
    found, _ = read_embeddings(out)
    assert sorted(Path(p).name for p, _, _ in found) == [f"c{i}.wav" for i in range(6)]  # each once


@pytest.mark.slow
def test_cli_reports_a_bad_file_once(tmp_path, clips):
    bad = clips / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    r = _cli("extract", "random-cnn", str(clips), "-o", str(tmp_path / "o.npz"), "-q", "--workers", "0")
    assert r.returncode == 1
    assert sum(str(bad) in line for line in r.stderr.splitlines()) == 1, r.stderr


def test_mp3_decoder_chatter_is_silenced(tmp_path):
    good = _good(tmp_path, "mp3")
    data = good.read_bytes()
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(data[:400] + b"\x00\x11" * 300 + data[1000:])
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mirzoo.audio import load_audio\n"
            "try:\n    load_audio(sys.argv[2], 16000)\nexcept Exception as e:\n    print(type(e).__name__)\n")
    r = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT), str(broken)], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert r.returncode == 0
    assert "Illegal" not in r.stderr and "mpg123" not in r.stderr.lower() and "Note:" not in r.stderr, r.stderr


# -- kill -9 and resume -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_kill_9_leaves_no_orphans_and_resume_finishes(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    # enough files that the run cannot finish (and remove its parts) between two looks at its parts on an
    # idle machine; a kill that lands after it assembled the output is covered by test_batch
    for i in range(120):
        sf.write(d / f"f{i:03d}.wav", tone_mix(3.0, seed=i), SR, subtype="PCM_16")
    out = tmp_path / "out.npz"
    parts = tmp_path / ".out.npz.parts"
    cmd = [sys.executable, "-m", "mirzoo", "extract", "random-cnn", str(d), "-o", str(out), "-q",
           "--workers", "2", "--batch-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(), cwd=REPO_ROOT)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (parts.is_dir() and len(list(parts.glob("part-*.npz"))) >= 2):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    children = _children(proc.pid)
    assert children, "the run started no decoder process"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60  # a loaded machine: a worker may still be starting up
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.2)
    assert not [c for c in children if _alive(c)], "processes outlived the killed run"
    sizes = [len(read_embeddings(p)[0]) for p in parts.glob("part-*.npz")]
    # parts are written per batch of 2 files (the first may hold 1: a part is also cut every 30 s)
    assert len(sizes) >= 2 and all(1 <= n <= 2 for n in sizes), sizes
    r = _cli("extract", "random-cnn", str(d), "-o", str(out), "-q", "--resume", "--workers", "0")
    assert r.returncode == 0, r.stderr
    found, _ = read_embeddings(out)
    assert sorted(Path(p).name for p, _, _ in found) == [f"f{i:03d}.wav" for i in range(120)]
    ref = mirzoo.load("random-cnn").extract(str(d / "f007.wav"))
    got = dict((Path(p).name, e) for p, e, _ in found)["f007.wav"]
    np.testing.assert_allclose(got, ref.embeddings, rtol=1e-4, atol=1e-5)
