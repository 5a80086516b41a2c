"""musicnn as a teacher: tag probabilities and penultimate features of our clips, computed once and cached.

    tools/setup-musicnn.sh                                   # once: Python 3.7 venv with musicnn 0.1.0
    python -m training.teacher --real /work/data/real [--split test] --cache /work/data/teacher
    python -m training.teacher --corpus /work/data/corpus --cache /work/data/teacher

For every clip it stores ``<cache>/musicnn-0.1.0/<sha[:2]>/<sha256>.npz`` keyed by the sha256 of
the clip *file* (so a clip listed in two folders, or rebuilt byte for byte, is computed once), with
per 3-s patch (non-overlapping, as musicnn was trained) and for both ``MTT_musicnn`` (MagnaTagATune,
50 tags) and ``MSD_musicnn`` (Million Song Dataset, 50 tags): ``<model>/tags`` (sigmoid
probabilities), ``<model>/penultimate`` (the 200-unit layer before the tag layer),
``<model>/mean_pool`` and ``<model>/max_pool`` (753 each).  Clip-level vectors are means over
patches (:func:`clip_vectors`).

musicnn runs in its own Python 3.7 venv (TensorFlow 2.7), so the work happens in a subprocess
(``training/musicnn_worker.py``) that builds each model's graph once.  Its venv is
``--venv``, else ``$MIRZOO_MUSICNN_VENV``, else ``~/.cache/mirzoo-peers/musicnn``; without it
:class:`TeacherUnavailableError` names the setup script.  Clips already cached need no venv.

Note: musicnn 0.1.0's own ``extractor(..., extract_features=True)`` returns the *first* patch's
penultimate vector for every patch (its loop concatenates a stale variable); the worker fetches the
tensors itself, so the cached penultimate features are per patch (tags and pools agree with
``extractor`` to 1e-5).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)

TEACHER = "musicnn-0.1.0"
MODELS = ("MTT_musicnn", "MSD_musicnn")
OUTPUTS = ("tags", "penultimate", "mean_pool", "max_pool")
ROOT = Path(__file__).resolve().parents[1]
SETUP_SCRIPT = "tools/setup-musicnn.sh"
WORKER = Path(__file__).resolve().parent / "musicnn_worker.py"
DEFAULT_VENV = Path("~/.cache/mirzoo-peers/musicnn")
LICENCE = "ISC"
ATTRIBUTION = (
    "Teacher: musicnn 0.1.0 (PyPI `musicnn`), pre-trained MTT_musicnn (MagnaTagATune) and MSD_musicnn "
    "(Million Song Dataset) models by Jordi Pons and Xavier Serra, Music Technology Group, Universitat "
    "Pompeu Fabra, 2019; ISC licence (code and the weights shipped in the package). Reference: J. Pons and "
    "X. Serra, \"musicnn: pre-trained convolutional neural networks for music audio tagging\", ISMIR 2019 "
    "late-breaking/demo. Its tag probabilities and penultimate features were used as soft targets; "
    "no musicnn code or weights are part of mirzoo."
)


class TeacherError(RuntimeError):
    """The teacher could not compute or find a clip's targets."""


class TeacherUnavailableError(TeacherError):
    """The musicnn venv is missing: build it with tools/setup-musicnn.sh."""


def file_sha256(path: os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_file(cache: os.PathLike, sha256: str) -> Path:
    """Where the targets of the clip with file hash ``sha256`` live under ``cache``."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise TeacherError(f"sha256={sha256!r} is not a 64-character lower-case hex digest")
    return Path(cache) / TEACHER / sha256[:2] / f"{sha256}.npz"


def clips_from_folder(folder: os.PathLike, split: Optional[str] = None) -> list[tuple[str, str]]:
    """``(sha256, absolute path)`` of the clips in ``<folder>/metadata.csv`` (a real-audio or corpus build).

    Uses the ``sha256`` column when the metadata has one (the real-audio builder writes it) and
    hashes the files otherwise (the corpus).  ``split`` keeps one split (``split`` column).
    """
    folder = Path(folder)
    meta = folder / "metadata.csv"
    if not meta.exists():
        raise TeacherError(f"no metadata.csv in '{folder}': expected a training.real or training.corpus build")
    with open(meta, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if split is not None:
        if rows and "split" not in rows[0]:
            raise TeacherError(f"split={split!r} given but '{meta}' has no split column")
        rows = [r for r in rows if r["split"] == split]
    out = []
    for r in rows:
        path = folder / r["path"]
        out.append((r.get("sha256") or file_sha256(path), str(path.resolve())))
    return out


def venv_python(venv: Optional[os.PathLike] = None) -> Path:
    """The musicnn venv's interpreter; :class:`TeacherUnavailableError` naming the setup script if absent."""
    venv = Path(venv or os.environ.get("MIRZOO_MUSICNN_VENV") or DEFAULT_VENV).expanduser()
    python = venv / "bin" / "python"
    if not python.exists():
        raise TeacherUnavailableError(
            f"musicnn venv not found at '{venv}' (no {python}): build it with `{SETUP_SCRIPT} {venv}` "
            "(Python 3.7 from pyenv, musicnn 0.1.0, TensorFlow 2.7), or pass --venv / set MIRZOO_MUSICNN_VENV")
    return python


def pending(clips: Iterable[tuple[str, str]], cache: os.PathLike) -> list[tuple[str, str]]:
    """The clips whose targets are not cached yet (each sha256 once)."""
    seen, out = set(), []
    for sha, path in clips:
        if sha not in seen and not cache_file(cache, sha).exists():
            seen.add(sha)
            out.append((sha, path))
    return out


def compute(clips: Sequence[tuple[str, str]], cache: os.PathLike, *, venv: Optional[os.PathLike] = None,
            batch: int = 64, threads: Optional[int] = None) -> dict:
    """Run musicnn on the clips not cached yet; returns timings (also kept in ``<cache>/<teacher>/runs.jsonl``)."""
    todo = pending(clips, cache)
    if not todo:
        return {"done": 0, "failed": [], "cached": len(clips)}
    python = venv_python(venv)
    target = Path(cache) / TEACHER
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for sha, path in todo:
            f.write(json.dumps({"sha256": sha, "path": path}) + "\n")
        jobs = f.name
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if threads:
        env["MUSICNN_THREADS"] = str(threads)
    t0 = time.time()
    try:
        proc = subprocess.run([str(python), str(WORKER), jobs, str(target), "--batch", str(batch)],
                              stdout=subprocess.PIPE, stderr=None, env=env, check=False, text=True)
    finally:
        os.unlink(jobs)
    if proc.returncode != 0:
        raise TeacherError(f"musicnn worker failed with exit status {proc.returncode} (its log is above)")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(wall_seconds=time.time() - t0, clips=len(todo), cached=len(clips) - len(todo),
                  threads=threads or "default", batch=batch)
    labels = result.pop("labels")
    meta = {"teacher": TEACHER, "models": list(MODELS), "outputs": list(OUTPUTS), "patch_seconds": 3.0,
            "labels": labels, "licence": LICENCE, "attribution": ATTRIBUTION, "licence_text": _licence_text(python)}
    _write_json(target / "meta.json", meta)
    with open(target / "runs.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({k: v for k, v in result.items() if k != "failed"} | {"failed": len(result["failed"])}) + "\n")
    return result


def _licence_text(python: Path) -> str:
    """musicnn's LICENSE as installed in the venv (its notice must travel with attributions)."""
    venv = python.parent.parent
    for lic in sorted(venv.glob("lib/python3*/site-packages/musicnn-*.dist-info/LICENSE*")):
        return lic.read_text(encoding="utf-8")
    return ""


def _write_json(path: Path, data: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def load_targets(cache: os.PathLike, sha256: str) -> dict[str, np.ndarray]:
    """The cached per-patch arrays of one clip (keys ``<model>/<output>``)."""
    path = cache_file(cache, sha256)
    if not path.exists():
        raise TeacherError(f"no teacher targets for clip sha256={sha256} in '{Path(cache) / TEACHER}': "
                           "run `python -m training.teacher` on its folder first")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def clip_vectors(cache: os.PathLike, shas: Sequence[str], key: str) -> np.ndarray:
    """``[n_clips, D]`` means over patches of output ``key`` (e.g. ``"MSD_musicnn/penultimate"``)."""
    model, _, output = key.partition("/")
    if model not in MODELS or output not in OUTPUTS:
        raise TeacherError(f"key={key!r} is not '<model>/<output>' with model in {MODELS} and output in {OUTPUTS}")
    return np.stack([load_targets(cache, s)[key].mean(axis=0) for s in shas]).astype(np.float32)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.teacher", description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--real", help="a training.real build folder")
    src.add_argument("--corpus", help="a training.corpus build folder (clips hashed on the fly)")
    parser.add_argument("--split", choices=("train", "valid", "test"), help="only this split")
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/mirzoo/teacher"))
    parser.add_argument("--venv", default=None, help=f"musicnn venv (default $MIRZOO_MUSICNN_VENV or {DEFAULT_VENV})")
    parser.add_argument("--batch", type=int, default=64, help="patches per forward pass")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads (default: TF's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        clips = clips_from_folder(args.real or args.corpus, args.split)
        todo = len(pending(clips, args.cache))
        print(f"{len(clips)} clips, {todo} not cached yet", flush=True)
        result = compute(clips, args.cache, venv=args.venv, batch=args.batch, threads=args.threads)
    except TeacherError as e:
        parser.exit(2, f"error: {e}\n")
    if result.get("done"):
        audio = result["audio_seconds"]
        print(f"musicnn ({' + '.join(MODELS)}): {result['done']} clips, {audio / 3600:.2f} h of audio in "
              f"{result['wall_seconds']:.0f} s wall ({audio / result['wall_seconds']:.0f}x real time; graphs built in "
              f"{result['graph_seconds']:.1f} s, mel {result['mel_seconds']:.0f} s, networks {result['net_seconds']:.0f} s)")
    for f in result.get("failed", []):
        print(f"  failed: {f['path']}: {f['error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
