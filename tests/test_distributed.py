"""Ray Data extraction (mirzoo.distributed): a real local Ray instance on two CPUs.

Each test that runs a dataset starts its own pool of model actors (a few seconds each:
the backend import and the model build), so the file keeps such runs to a handful.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import soundfile as sf

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pq = pytest.importorskip("pyarrow.parquet")

import mirzoo  # noqa: E402
import mirzoo.distributed as md  # noqa: E402
from mirzoo.batch import read_embeddings as read_cli_embeddings  # noqa: E402
from mirzoo.cli import main  # noqa: E402
from mirzoo.fileio import output_lock  # noqa: E402

from conftest import SR, tone_mix  # noqa: E402

GOOD = 24  # decodable clips in the folder; two more are bad

# Ray Data's own DataContext warns about its deprecated fields when it is copied
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():  # pragma: no cover - another module left one running
        ray.shutdown()
    resources = md.init(num_cpus=2, object_store_memory=200 * 2**20)
    assert resources["CPU"] == 2.0
    yield resources
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """24 short seeded clips (WAV and FLAC, three rates, 0.05-4 s, one stereo) plus two bad files."""
    d = tmp_path_factory.mktemp("ray-clips")
    rates = (SR, 22050, 44100)
    for i in range(GOOD):
        rate = rates[i % 3]
        seconds = 0.05 if i == 5 else 0.5 + (i * 0.37) % 3.5  # one clip shorter than any patch
        y = tone_mix(seconds, sr=rate, seed=100 + i, freqs=(110.0 * (1 + i % 5), 330.0))
        if i == 7:
            y = np.stack([y, 0.5 * y], axis=1)
        sub = d / f"set{i % 2}"
        sub.mkdir(exist_ok=True)
        if i % 4 == 3:
            sf.write(sub / f"clip{i:02d}.flac", y, rate)
        else:
            sf.write(sub / f"clip{i:02d}.wav", y, rate, subtype="PCM_16")
    (d / "broken.wav").write_bytes(b"RIFF....not a wave file at all")
    sf.write(d / "empty.wav", np.zeros(0, np.float32), SR)
    (d / "notes.txt").write_text("not audio, not listed\n")
    return d


def _by_path(rows: list) -> dict:
    grouped: dict = {}
    for r in rows:
        grouped.setdefault(r["path"], []).append(r)
    return grouped


def test_clip_model_pooled_equals_single_machine_and_parquet_roundtrip(cluster, clips, tmp_path):
    ds = md.read_audio(clips)
    emb = md.extract(ds, "random-cnn", pool="mean+std", batch_size=8, files_per_call=5, concurrency=1)
    out = tmp_path / "emb"
    report = md.write_parquet(emb, out)
    assert report.written == GOOD and report.exit_code == 1
    failed = {os.path.basename(f.path): f.reason for f in report.failed}
    assert set(failed) == {"broken.wav", "empty.wav"}
    assert "cannot decode" in failed["broken.wav"] and "empty" in failed["empty.wav"]

    table = pq.read_table(out)  # every column, failed files included
    assert table.column_names == ["path", "timestamp", "embedding", "duration", "error", "model", "layer", "pool"]
    assert table.num_rows == GOOD + 2
    assert table.schema.metadata[b"mirzoo.model"] == b"random-cnn"
    assert table.schema.metadata[b"mirzoo.pool"] == b"mean+std"
    assert table.schema.field("embedding").type.list_size == 2 * 960
    rows = _by_path(table.to_pylist())
    bad = rows[str(clips / "broken.wav")][0]
    assert bad["embedding"] is None and bad["duration"] is None and "cannot decode" in bad["error"]
    assert set(r[0]["model"] for r in rows.values()) == {"random-cnn"}

    results, meta = md.read_embeddings(out)
    assert meta == {"model": "random-cnn", "layer": "embedding", "pool": "mean+std"}
    assert len(results) == GOOD
    m = mirzoo.load("random-cnn")
    for path, e, ts in results:
        direct = m.extract(path, pool="mean+std")
        assert e.shape == (1, 2 * 960) and ts.tolist() == [0.0]
        np.testing.assert_allclose(e[0], direct, rtol=1e-5, atol=1e-5 * np.abs(direct).max())
        row = rows[path][0]
        assert row["error"] is None
        assert row["duration"] == pytest.approx(sf.info(path).frames / sf.info(path).samplerate, abs=1e-3)

    with pytest.raises(mirzoo.ParameterError, match="not empty"):
        md.write_parquet(emb, out)  # checked before anything runs


def test_frame_model_per_frame_from_decoded_audio(cluster, clips):
    paths = sorted(str(p) for p in clips.rglob("clip0*"))[:6]
    ds = md.read_audio(paths, sr=16000)  # decoded and resampled in the read tasks
    decoded = ds.take(1)[0]
    assert set(decoded) == {"path", "audio", "sr", "duration", "error"} and decoded["sr"] == 16000
    emb = md.extract(ds, "dense-frame", pool=None, batch_size=4, concurrency=1)
    rows = _by_path(emb.take_all())
    assert sorted(rows) == paths
    m = mirzoo.load("dense-frame")
    for path in paths:
        direct = m.extract(path)
        got = np.stack([r["embedding"] for r in rows[path]])
        stamps = np.array([r["timestamp"] for r in rows[path]])
        assert got.shape == direct.embeddings.shape
        np.testing.assert_allclose(stamps, direct.timestamps)
        np.testing.assert_allclose(got, direct.embeddings, rtol=1e-5, atol=1e-5 * np.abs(direct.embeddings).max())
        assert {r["pool"] for r in rows[path]} == {""}


def test_actor_on_local_paths_records_missing_files(clips):
    """The actor's work without Ray: rows of plain local paths, a missing file among them."""
    import pyarrow as pa

    actor = md._EmbedActor("random-cnn", "block2", None, 4, {})
    paths = [str(clips / "set0" / "clip00.wav"), str(clips / "gone.wav"), str(clips / "set1" / "clip01.wav")]
    table = actor(pa.table({"path": paths}))
    rows = _by_path(table.to_pylist())
    assert "not found" in rows[paths[1]][0]["error"] and rows[paths[1]][0]["embedding"] is None
    m = mirzoo.load("random-cnn")
    for path in (paths[0], paths[2]):
        direct = m.extract(path, layer="block2")
        got = np.stack([r["embedding"] for r in rows[path]])
        np.testing.assert_allclose([r["timestamp"] for r in rows[path]], direct.timestamps)
        np.testing.assert_allclose(got, direct.embeddings, rtol=1e-5, atol=1e-5 * np.abs(direct.embeddings).max())
    assert table.schema.metadata[b"mirzoo.layer"] == b"block2" and table.schema.metadata[b"mirzoo.pool"] == b""


@pytest.mark.slow  # the CLI on a Ray cluster (25 s): CI's second step
def test_cli_engine_ray_matches_engine_local(cluster, clips, tmp_path, capsys):
    ray_out, local_out = tmp_path / "ray.parquet", tmp_path / "local.parquet"
    code = main(["extract", "random-cnn", str(clips), "-o", str(ray_out), "--engine", "ray",
                 "--concurrency", "1", "--batch-size", "8", "-q"])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "empty.wav" in err
    assert main(["extract", "random-cnn", str(clips), "-o", str(local_out), "--workers", "0", "-q"]) == 1
    err = capsys.readouterr().err
    assert "broken.wav" in err and "empty.wav" in err  # the same failures, reported the same way
    got, meta = read_cli_embeddings(ray_out)  # the local engine's Parquet layout exactly
    want, want_meta = read_cli_embeddings(local_out)
    assert meta == want_meta == {"model": "random-cnn", "layer": "embedding", "pool": ""}
    assert pq.read_schema(ray_out).names == pq.read_schema(local_out).names
    got = {p: (e, ts) for p, e, ts in got}
    assert sorted(got) == sorted(p for p, _, _ in want) and len(got) == GOOD
    for path, e, ts in want:
        np.testing.assert_allclose(got[path][1], ts)
        np.testing.assert_allclose(got[path][0], e, rtol=1e-5, atol=1e-5 * np.abs(e).max())


def test_cli_engine_ray_usage_errors(cluster, clips, tmp_path, capsys):
    common = ["extract", "random-cnn", str(clips), "--engine", "ray"]
    assert main(common + ["-o", str(tmp_path / "x.npz")]) == 2
    assert "--engine local" in capsys.readouterr().err
    assert main(common + ["-o", str(tmp_path / "x.parquet"), "--resume"]) == 2
    assert "--resume works with --engine local only" in capsys.readouterr().err
    assert main(common + ["-o", str(tmp_path / "x.parquet"), "--workers", "2"]) == 2
    assert "with --engine ray use --concurrency" in capsys.readouterr().err
    assert main(common + ["-o", str(tmp_path / "x.parquet"), "--layer", "nope"]) == 2
    assert "valid layers" in capsys.readouterr().err
    assert main(["extract", "random-cnn", str(clips), "-o", str(tmp_path / "x.npz"), "--address", "auto"]) == 2
    assert "--engine ray" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_ray_outputs_are_checked_and_locked_before_any_work(cluster, clips, tmp_path, capsys):
    existing_dir = tmp_path / "out.parquet"
    existing_dir.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cases = {existing_dir: "is an existing directory", blocker / "o.parquet": "is a file, not a directory",
             blocker: "is an existing file: expected a folder"}
    for out, words in cases.items():  # the CLI refuses before Ray runs anything: exit 2, no traceback
        assert main(["extract", "random-cnn", str(clips), "-o", str(out), "--engine", "ray", "-q"]) == 2
        err = capsys.readouterr().err
        assert words in err and str(out) in err and "Traceback" not in err
    ds = md.extract(md.read_audio(clips), "random-cnn", pool="mean")
    with pytest.raises(mirzoo.OutputError, match="is an existing directory"):
        md.write_parquet(ds, existing_dir)
    out = tmp_path / "shared.parquet"
    with output_lock(out):  # one writer per output, as with the local engine
        with pytest.raises(mirzoo.OutputError, match=rf"'{out}' is being written by process {os.getpid()}"):
            md.write_parquet(ds, out)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["file", "out.parquet"]


@pytest.mark.slow  # Ray Data reading globs and URIs (20 s): CI's second step
def test_read_audio_paths_globs_uris_and_filesystems(cluster, clips):
    fsspec = pytest.importorskip("fsspec")

    def listed(ds):
        return sorted(r["path"] for r in ds.select_columns(["path"]).take_all())

    every = listed(md.read_audio(clips))
    assert len(every) == GOOD + 2 and not any(p.endswith(".txt") for p in every)
    flac = sorted(str(p) for p in clips.rglob("*.flac"))
    assert listed(md.read_audio(str(clips / "**" / "*.flac"))) == flac
    assert listed(md.read_audio(f"file://{clips}/set1")) == sorted(p for p in every if "/set1/" in p)
    local = fsspec.filesystem("file")
    assert listed(md.read_audio([str(clips / "set1")], filesystem=local, extensions=[".FLAC"])) == flac
    assert listed(md.read_audio(str(clips / "**" / "clip0[!0]*.flac"), filesystem=local)) == flac[:2]
    with pytest.raises(mirzoo.AudioFileError, match="no files with extensions"):
        md.read_audio(clips / "set0", extensions=["flac"])
    assert listed(md.read_audio(clips, extensions=None)) == sorted(every + [str(clips / "notes.txt")])


def test_bad_parameters_name_the_value(cluster, clips, tmp_path):
    ds = md.read_audio(clips)
    with pytest.raises(mirzoo.ParameterError, match="pool='median'"):
        md.extract(ds, "random-cnn", pool="median")
    with pytest.raises(mirzoo.ParameterError, match="batch_size=0"):
        md.extract(ds, "random-cnn", batch_size=0)
    with pytest.raises(mirzoo.ParameterError, match="concurrency=0"):
        md.extract(ds, "random-cnn", concurrency=0)
    with pytest.raises(mirzoo.ParameterError, match=r"concurrency=\(3, 1\)"):
        md.extract(ds, "random-cnn", concurrency=(3, 1))
    with pytest.raises(mirzoo.ParameterError, match="num_gpus=-1"):
        md.extract(ds, "random-cnn", num_gpus=-1)
    with pytest.raises(mirzoo.ParameterError, match="has no GPU"):
        md.extract(ds, "random-cnn", num_gpus=1)
    with pytest.raises(mirzoo.UnknownLayerError, match="layer='nope'.*valid layers"):
        md.extract(ds, "random-cnn", layer="nope")
    with pytest.raises(mirzoo.UnknownModelError, match="random-cnn"):
        md.extract(ds, "random-cn")
    with pytest.raises(mirzoo.ParameterError, match="ray.data.Dataset"):
        md.extract([str(clips)], "random-cnn")
    with pytest.raises(mirzoo.ParameterError, match="paths is empty"):
        md.read_audio([])
    with pytest.raises(mirzoo.ParameterError, match="sr=0"):
        md.read_audio(clips, sr=0)
    with pytest.raises(mirzoo.ParameterError, match=r"extensions=\[\]"):
        md.read_audio(clips, extensions=[])
    with pytest.raises(mirzoo.AudioFileError, match="missing.wav"):
        md.read_audio([str(clips / "missing.wav")])
    with pytest.raises(mirzoo.AudioFileError, match="no files match"):
        md.read_audio(str(clips / "*.mp3"))
    with pytest.raises(mirzoo.ParameterError, match="x.npz"):
        md.write_parquet(md.extract(ds, "random-cnn"), tmp_path / "x.npz")
    with pytest.raises(mirzoo.ParameterError, match="num_cpus"):
        md.init("auto", num_cpus=2)  # Ray already runs: the address is ignored, the sizes are not


def test_missing_ray_names_the_install_command(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(md.MissingDependencyError, match=r'pip install "mirzoo\[distributed\]"') as info:
        md.read_audio("music/")
    assert isinstance(info.value, mirzoo.MirzooError) and isinstance(info.value, ImportError)
    capsys.readouterr()
    code = main(["extract", "random-cnn", "music/", "-o", "out/", "--engine", "ray"])
    assert code == 2
    assert 'pip install "mirzoo[distributed]"' in capsys.readouterr().err


def test_pools_match_the_extractor():
    from mirzoo.embeddings import POOLS

    assert md._POOLS == POOLS
