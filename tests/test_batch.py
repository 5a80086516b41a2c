"""Folder-scale extraction (mirzoo.batch and `mirzoo extract`): batching across files, worker
processes, bad files, resume, atomic output."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import mirzoo
from conftest import SR, tone_mix
from mirzoo import batch
from mirzoo.batch import extract_files, find_audio_files, read_embeddings
from mirzoo.cli import main
from mirzoo.errors import ParameterError

MODEL = "random-cnn-musical"  # the cheapest clip model


@pytest.fixture(scope="module")
def extractor():
    return mirzoo.load(MODEL)


@pytest.fixture
def clips(tmp_path):
    """Clips of 1 to 4 patches (random-cnn: 3 s patches every 1.5 s), in two folders and rates."""
    d = tmp_path / "music"
    (d / "sub").mkdir(parents=True)
    lengths = {"a.wav": 1.0, "b.flac": 4.0, "sub/c.wav": 7.5, "sub/d.flac": 2.0, "e.wav": 5.0}
    for i, (name, seconds) in enumerate(lengths.items()):
        sr = 22050 if name.endswith(".flac") else SR
        sf.write(d / name, tone_mix(seconds, sr=sr, seed=10 + i), sr)
    return d


def _assert_same_as_extract(extractor, results, *, pool=None):
    for path, emb, ts in results:
        ref = extractor.extract(path, pool=pool)
        if pool:
            np.testing.assert_allclose(emb[0], ref, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_allclose(emb, ref.embeddings, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(ts, ref.timestamps)


def _decode_counting(calls):
    def decode(path, sr):
        calls.append(os.path.basename(path))
        return batch._decode_file(path, sr)

    return decode


def test_find_audio_files(clips, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my files\n{clips / 'a.wav'}\n\n{clips / 'sub'}\n{clips / 'a.wav'}\n")
    found = find_audio_files([clips / "b.flac", "missing.wav"], files_from=listing)
    names = [os.path.relpath(p, clips) if p != "missing.wav" else p for p in found]
    assert names == ["b.flac", "missing.wav", "a.wav", "sub/c.wav", "sub/d.flac"]  # order kept, no duplicate
    assert len(find_audio_files([clips])) == 5
    with pytest.raises(ParameterError, match="nope.txt"):
        find_audio_files([], files_from=tmp_path / "nope.txt")


def test_patches_batched_across_files_match_extract(extractor, clips, tmp_path):
    out = tmp_path / "emb.npz"
    # batch_size 4 with 1..4 patches per file: most batches mix patches of several files
    report = extract_files(extractor, [clips], out, batch_size=4, workers=0)
    assert (report.written, report.failed, report.total, report.exit_code) == (5, [], 5, 0)
    results, meta = read_embeddings(out)
    assert meta == {"model": MODEL, "layer": "embedding", "pool": ""}
    assert [os.path.relpath(p, clips) for p, _, _ in results] == ["a.wav", "b.flac", "e.wav", "sub/c.wav", "sub/d.flac"]
    assert [len(e) for _, e, _ in results] == [1, 2, 3, 4, 1]
    _assert_same_as_extract(extractor, results)
    data = np.load(out)  # the public NPZ layout
    assert data["offsets"].tolist() == [0, 1, 3, 6, 10, 11]
    assert data["file_index"].tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4]
    assert str(data["model"]) == MODEL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npz", "music"]  # no temporaries, no parts
    assert out.stat().st_mode & 0o777 == batch.default_mode()  # not the 0600 of a temporary file


def test_worker_processes_parquet_pooled(extractor, clips, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "emb.parquet"
    report = extract_files(extractor, [clips], out, pool="mean+std", workers=2, batch_size=8)
    assert report.exit_code == 0 and report.written == 5
    table = pq.read_table(out)
    assert table.num_rows == 5 and table.schema.metadata[b"mirzoo.pool"] == b"mean+std"
    assert table.schema.field("embedding").type.list_size == 2 * extractor.layers["embedding"]
    results, _ = read_embeddings(out)
    _assert_same_as_extract(extractor, results, pool="mean+std")


def test_frame_model_matches_extract(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for i, seconds in enumerate((0.5, 2.0, 1.2)):
        sf.write(d / f"{i}.wav", tone_mix(seconds, seed=i), SR)
    m = mirzoo.load("dense-frame")
    report = extract_files(m, [d], tmp_path / "frames.npz", workers=0, batch_size=2)
    assert report.written == 3
    results, meta = read_embeddings(tmp_path / "frames.npz")
    assert meta["model"] == "dense-frame"
    _assert_same_as_extract(m, results)


def test_bad_files_are_reported_and_skipped(extractor, clips, tmp_path):
    (clips / "broken.wav").write_bytes(b"RIFF not really")
    sf.write(clips / "silent_nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
    (clips / "empty.flac").write_bytes(b"")
    seen = []
    out = tmp_path / "emb.npz"
    report = extract_files(extractor, [clips, tmp_path / "missing.wav"], out, workers=0, on_failure=seen.append)
    reasons = {os.path.basename(f.path): f.reason for f in report.failed}
    assert set(reasons) == {"broken.wav", "silent_nan.wav", "empty.flac", "missing.wav"}
    assert "not found" in reasons["missing.wav"] and "non-finite" in reasons["silent_nan.wav"]
    assert "broken.wav" in reasons["broken.wav"]
    assert [f.path for f in seen] == [f.path for f in report.failed]
    assert report.written == 5 and report.exit_code == 1
    assert len(read_embeddings(out)[0]) == 5

    only_bad = extract_files(extractor, [clips / "broken.wav"], tmp_path / "none.npz", workers=0)
    assert only_bad.exit_code == 2 and not (tmp_path / "none.npz").exists()


def _crash_on_marked_files(path, sr):
    """A decoder that kills its process on files named *crash*, like a segfaulting codec."""
    if "crash" in os.path.basename(path):
        os._exit(3)
    return batch._decode_file(path, sr)


@pytest.mark.slow  # a decoder process killed and restarted (30 s on 2 cores): CI's second step
def test_decoder_process_crash_is_isolated(extractor, clips, tmp_path):
    sf.write(clips / "crash.wav", tone_mix(1.0, seed=99), SR)
    out = tmp_path / "emb.npz"
    report = extract_files(extractor, [clips], out, workers=2, _decode=_crash_on_marked_files)
    assert [os.path.basename(f.path) for f in report.failed] == ["crash.wav"]
    assert "decoder process died" in report.failed[0].reason
    assert report.written == 5 and report.exit_code == 1


def test_decoder_worker_imports_no_deep_learning_framework(clips):
    """A decoder process unpickles the decode function and runs it: that must not import Keras or
    its backend (which cost ~6 s and ~0.8 GB per worker and made workers slower than none)."""
    import pickle
    import subprocess
    import sys

    code = (
        "import pickle, sys\n"
        "decode = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "y, reason = decode(sys.argv[2], 16000)\n"
        "assert reason is None and y.dtype.name == 'float32' and y.size > 0, reason\n"
        "print(','.join(m for m in ('keras', 'tensorflow', 'jax', 'torch', 'librosa') if m in sys.modules) or 'none')\n"
    )
    blob = pickle.dumps(batch._decode_file).hex()
    out = subprocess.run([sys.executable, "-c", code, blob, str(clips / "b.flac")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none", out.stdout + out.stderr


def test_resume_skips_done_files_and_merges(extractor, clips, tmp_path):
    out = tmp_path / "emb.npz"
    first = extract_files(extractor, [clips / "a.wav", clips / "b.flac"], out, workers=0)
    assert first.written == 2
    before = read_embeddings(out)[0]
    calls = []
    again = extract_files(extractor, [clips], out, workers=0, resume=True, _decode=_decode_counting(calls))
    assert sorted(calls) == ["c.wav", "d.flac", "e.wav"]  # a and b were not decoded again
    assert (again.written, again.skipped, again.total) == (3, 2, 5)
    after = read_embeddings(out)[0]
    assert [p for p, _, _ in after[:2]] == [p for p, _, _ in before]
    for (_, e1, _), (_, e2, _) in zip(before, after):
        np.testing.assert_array_equal(e1, e2)
    calls.clear()
    nothing = extract_files(extractor, [clips], out, workers=0, resume=True, _decode=_decode_counting(calls))
    assert calls == [] and nothing.written == 0 and nothing.skipped == 5 and nothing.exit_code == 0

    with pytest.raises(ParameterError, match="pool"):
        extract_files(extractor, [clips], out, pool="mean", resume=True)
    assert len(read_embeddings(out)[0]) == 5  # untouched


def test_resume_parquet(extractor, clips, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "emb.parquet"
    extract_files(extractor, [clips / "sub"], out, workers=0)
    report = extract_files(extractor, [clips], out, workers=0, resume=True)
    assert (report.written, report.skipped, report.total) == (3, 2, 5)
    results, _ = read_embeddings(out)
    assert len(results) == 5
    _assert_same_as_extract(extractor, results[:1] + results[-1:])


def test_interrupted_run_keeps_finished_files(extractor, clips, tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "_PART_FILES", 1)  # a part file after every finished file
    out = tmp_path / "emb.npz"

    def interrupt_at_fourth(path, sr, calls=[]):
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return batch._decode_file(path, sr)

    with pytest.raises(KeyboardInterrupt):
        extract_files(extractor, [clips], out, workers=0, batch_size=1, _decode=interrupt_at_fourth)
    assert not out.exists()
    parts = tmp_path / ".emb.npz.parts"
    assert len(list(parts.glob("part-*.npz"))) == 3
    calls = []
    report = extract_files(extractor, [clips], out, workers=0, resume=True, _decode=_decode_counting(calls))
    assert len(calls) == 2 and report.skipped == 3 and report.total == 5
    assert not parts.exists()
    _assert_same_as_extract(extractor, read_embeddings(out)[0])


def test_resume_after_a_kill_between_writing_the_output_and_removing_its_parts(extractor, clips, tmp_path,
                                                                               monkeypatch):
    """The output is written from the parts, then the parts are removed: a run killed in between leaves
    both, and a resume must not list the parts' files twice (nor extract anything again)."""
    out = tmp_path / "emb.npz"
    parts = tmp_path / ".emb.npz.parts"
    with monkeypatch.context() as patch:
        patch.setattr(batch, "_PART_FILES", 2)
        patch.setattr(batch._Parts, "clear", lambda self: None)  # the kill lands just before the clean-up
        extract_files(extractor, [clips], out, workers=0, batch_size=2)
    assert len(list(parts.glob("part-*.npz"))) == 3 and len(read_embeddings(out)[0]) == 5
    calls = []
    report = extract_files(extractor, [clips], out, workers=0, resume=True, _decode=_decode_counting(calls))
    assert calls == [] and (report.written, report.skipped, report.total) == (0, 5, 5)
    results = read_embeddings(out)[0]
    assert sorted(Path(p).name for p, _, _ in results) == ["a.wav", "b.flac", "c.wav", "d.flac", "e.wav"]
    assert not parts.exists()
    _assert_same_as_extract(extractor, results)
    # parts of which only some are in the output cannot come from one run: refused, nothing touched
    with monkeypatch.context() as patch:
        patch.setattr(batch, "_PART_FILES", 2)
        patch.setattr(batch._Parts, "clear", lambda self: None)
        extract_files(extractor, [clips / "a.wav", clips / "b.flac"], out, workers=0, batch_size=2)
    extra = tmp_path / "other.npz"
    extract_files(extractor, [clips / "sub" / "c.wav"], extra, workers=0)
    shutil.copy(extra, parts / "part-000009.npz")
    before = out.read_bytes()
    with pytest.raises(ParameterError, match="1 of the part files .* are already in it and the others are not"):
        extract_files(extractor, [clips], out, workers=0, resume=True)
    assert out.read_bytes() == before


def test_failed_write_leaves_previous_output(extractor, clips, tmp_path, monkeypatch):
    out = tmp_path / "emb.npz"
    extract_files(extractor, [clips / "a.wav"], out, workers=0)
    original = out.read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(batch, "_save_npz", broken_save)
    with pytest.raises(OSError, match="disk full"):
        extract_files(extractor, [clips], out, workers=0)
    assert out.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["emb.npz"]


def test_parameter_errors(extractor, clips, tmp_path):
    with pytest.raises(ParameterError, match="csv"):
        extract_files(extractor, [clips], tmp_path / "x.csv")
    with pytest.raises(ParameterError, match="valid layers"):
        extract_files(extractor, [clips], tmp_path / "x.npz", layer="nope")
    with pytest.raises(ParameterError, match="batch_size=0"):
        extract_files(extractor, [clips], tmp_path / "x.npz", batch_size=0)
    with pytest.raises(ParameterError, match="workers=-1"):
        extract_files(extractor, [clips], tmp_path / "x.npz", workers=-1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ParameterError, match="no input files"):
        extract_files(extractor, [empty], tmp_path / "x.npz")
    assert not list(tmp_path.glob("x.*"))


def test_cli_resume_and_files_from(clips, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    listing = tmp_path / "files.txt"
    listing.write_text(f"{clips / 'a.wav'}\n{clips / 'e.wav'}\n")
    assert main(["extract", MODEL, "--files-from", str(listing), "-o", str(out), "--workers", "0"]) == 0
    assert "wrote 2 file(s)" in capsys.readouterr().out
    (clips / "bad.wav").write_bytes(b"nope")
    code = main(["extract", MODEL, str(clips), "-o", str(out), "--resume", "--pool", "mean", "-q"])
    assert code == 2 and "pool" in capsys.readouterr().err  # mismatch with the existing output
    code = main(["extract", MODEL, str(clips), "-o", str(out), "--resume", "--workers", "0"])
    captured = capsys.readouterr()
    assert code == 1 and "bad.wav" in captured.err
    assert "wrote 3 file(s)" in captured.out and "2 already there" in captured.out and "1 failed" in captured.out
    assert len(np.load(out)["paths"]) == 5
    assert main(["extract", MODEL, "-o", str(out)]) == 2
    assert "no inputs" in capsys.readouterr().err
