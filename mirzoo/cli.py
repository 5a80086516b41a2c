"""The ``mirzoo`` command line: list, info, extract, tag and publish.

Exit codes: 0 on success, 1 when some inputs failed (the others are still
written), 2 on a usage error or when nothing could be done.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from mirzoo.errors import MirzooError

log = logging.getLogger("mirzoo")

EPILOG = """examples:
  mirzoo list
  mirzoo info crnn-tagging
  mirzoo extract random-cnn song.wav other.flac -o emb.npz
  mirzoo extract cnn-tagging music/ -o emb.npz --pool mean+std
  mirzoo tag cnn-tagging song.wav --top-k 5
  mirzoo publish my-finetuned/ --repo owner/my-model          # dry run
  mirzoo publish my-finetuned/ --repo owner/my-model --push   # upload with $HF_TOKEN
  HF_HUB_OFFLINE=1 mirzoo extract hf://owner/repo@v1 song.wav -o e.npz
"""


def _expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files as given; directories walked recursively for audio files (sorted)."""
    from mirzoo.audio import AUDIO_EXTENSIONS

    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(
                str(p) for p in Path(item).rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                log.warning("no audio files under '%s'", item)
            paths.extend(found)
        else:
            paths.append(item)
    return paths


def _cmd_list(args) -> int:
    from mirzoo.registry import get_entry, list_models

    names = list_models(args.filter)
    rows = []
    for name in names:
        e = get_entry(name)
        weights = "pretrained" if e["pretrained"] else ("random (seeded)" if e["task"] == "features" else "untrained")
        if e["output"] == "clip":
            res = f"{e['patch_seconds']:g}s patch / {e['patch_hop_seconds']:g}s hop"
        else:
            res = f"frames every {e['config']['frontend']['hop_length'] / e['sample_rate'] * 1000:g} ms"
        rows.append((name, f"{e['sample_rate']} Hz", res, str(e["layers"][e["default_layer"]]), weights, e["task"]))
    if args.json:
        print(json.dumps([dict(zip(("name", "sample_rate", "resolution", "dim", "weights", "task"), r)) for r in rows], indent=2))
        return 0
    header = ("model", "rate", "resolution", "dim", "weights", "task")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def _cmd_info(args) -> int:
    from mirzoo.registry import model_info

    info = model_info(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.model}: {info['description']}")
    print(f"  family        {info['family']} ({info['task']})")
    print(f"  sample rate   {info['sample_rate']} Hz")
    fe = info["config"]["frontend"]
    print(f"  front-end     {fe['kind']}, hop {fe['hop_length']} samples, " + ", ".join(
        f"{k}={v}" for k, v in fe.items() if k not in ("kind", "hop_length", "sample_rate")))
    if info["output"] == "clip":
        print(f"  windows       {info['patch_seconds']} s patches every {info['patch_hop_seconds']} s (one embedding each)")
    else:
        print(f"  windows       frame-level, processed in {info['patch_seconds']} s chunks")
    print("  layers        " + ", ".join(f"{k} [{v}]" for k, v in info["layers"].items()) + "  (default: " + info["default_layer"] + ")")
    print(f"  layer='all'   {' + '.join(info['all_layers'])}")
    if info.get("head"):
        labels = info["head"]["labels"]
        print(f"  labels        {len(labels)}: {', '.join(labels[:12])}{' ...' if len(labels) > 12 else ''}")
    w = info["weights"]
    state = "pretrained" if info["pretrained"] else "NOT pretrained"
    if w["kind"] == "seeded":
        print(f"  weights       {state}: generated from seed {w['seed']} (sha256 {w['sha256'][:16]}...)")
    else:
        print(f"  weights       {state}: {w['file']} ({w['size']} bytes, sha256 {w['sha256'][:16]}...)")
    training = info.get("training") or {}
    if training.get("notes"):
        print(f"  training      {training['notes']}")
    if info.get("metrics"):
        print(f"  metrics       {json.dumps(info['metrics'])}")
    print(f"  license       {info['license']}")
    hub = info.get("hub") or {}
    if hub.get("repo_id"):
        print(f"  hub           {hub['repo_id']} @ {hub.get('revision') or '(unpublished)'}")
    for ref in info.get("references", []):
        print(f"  reference     {ref}")
    return 0


def _write_atomic(path: Path, writer) -> None:
    """Call ``writer(tmp_path)`` then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_embeddings(path: Path, results: list, *, model: str, layer: str, pooled: Optional[str]) -> None:
    """Write extraction results to ``.npz`` or ``.parquet``, atomically.

    NPZ keys: ``paths`` [n]; pooled: ``embeddings`` [n, D]; otherwise
    ``embeddings`` [sum T, D], ``timestamps`` [sum T], ``file_index`` [sum T] and
    ``offsets`` [n + 1] (rows of file i are ``offsets[i]:offsets[i+1]``); plus
    ``model``, ``layer`` and ``pool``.  Parquet: one row per embedding with
    ``path``, ``timestamp`` and ``embedding`` (a list column).
    """
    import numpy as np

    paths = np.array([p for p, _ in results], dtype=str)
    suffix = path.suffix.lower()
    if pooled:
        emb = np.stack([r for _, r in results]).astype(np.float32)
        ts = np.zeros(len(results))
        index = np.arange(len(results))
    else:
        emb = np.concatenate([r.embeddings for _, r in results]).astype(np.float32)
        ts = np.concatenate([r.timestamps for _, r in results])
        index = np.concatenate([np.full(len(r), i) for i, (_, r) in enumerate(results)])
    if suffix == ".npz":
        offsets = np.concatenate([[0], np.cumsum(np.bincount(index, minlength=len(results)))])

        def writer(tmp):
            with open(tmp, "wb") as f:
                extra = {} if pooled else {"timestamps": ts, "file_index": index, "offsets": offsets}
                np.savez(f, paths=paths, embeddings=emb, model=model, layer=layer, pool=pooled or "", **extra)

    elif suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise MirzooError("Parquet output needs pyarrow: pip install 'mirzoo[parquet]'") from exc
        table = pa.table(
            {
                "path": paths[index],
                "timestamp": ts,
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), emb.shape[1]),
            }
        )
        meta = {b"mirzoo.model": model.encode(), b"mirzoo.layer": layer.encode(), b"mirzoo.pool": (pooled or "").encode()}
        table = table.replace_schema_metadata(meta)

        def writer(tmp):
            pq.write_table(table, tmp)

    else:
        raise MirzooError(f"output file '{path}' must end in .npz or .parquet")
    _write_atomic(path, writer)


def _cmd_extract(args) -> int:
    from tqdm.auto import tqdm

    from mirzoo.loader import load

    out = Path(args.output)
    if out.suffix.lower() not in (".npz", ".parquet"):
        print(f"mirzoo extract: error: output '{out}' must end in .npz or .parquet", file=sys.stderr)
        return 2
    paths = _expand_inputs(args.inputs)
    if not paths:
        print("mirzoo extract: error: no input files", file=sys.stderr)
        return 2
    model = load(args.model)
    model._resolve_layers(args.layer)  # a bad --layer is a usage error, not a per-file failure
    if args.batch_size < 1:
        print(f"mirzoo extract: error: --batch-size={args.batch_size} must be a positive integer", file=sys.stderr)
        return 2
    results, failures = [], []
    bar = tqdm(paths, desc=f"extract {args.model}", unit="file", disable=args.quiet or len(paths) < 2)
    for p in bar:
        try:
            results.append((p, model.extract(p, layer=args.layer, pool=args.pool, batch_size=args.batch_size)))
        except (MirzooError, OSError) as exc:
            failures.append((p, exc))
            bar.write(f"mirzoo extract: skipped '{p}': {exc}", file=sys.stderr)
    if results:
        layer = results[0][1].layer if not args.pool else (args.layer or model.default_layer)
        write_embeddings(out, results, model=model.name, layer=layer, pooled=args.pool)
        if not args.quiet:
            print(f"wrote {len(results)} file(s) to {out}" + (f"; {len(failures)} failed" if failures else ""))
    for p, exc in failures:
        print(f"FAILED {p}: {exc}", file=sys.stderr)
    if not results:
        print("mirzoo extract: error: every input failed; nothing written", file=sys.stderr)
        return 2
    return 1 if failures else 0


def _cmd_tag(args) -> int:
    from mirzoo.loader import load

    model = load(args.model)
    status = 0
    for p in _expand_inputs(args.inputs):
        try:
            tags = model.tag(p, top_k=args.top_k, threshold=args.threshold)
        except (MirzooError, OSError) as exc:
            print(f"FAILED {p}: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps({"path": p, "tags": [{"tag": t, "probability": round(v, 4)} for t, v in tags]}))
        else:
            print(p)
            for t, v in tags:
                print(f"  {t:<16} {v:.3f}")
    if not model.pretrained:
        print(f"note: {model.name!r} is not pretrained: these probabilities are meaningless", file=sys.stderr)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mirzoo",
        description="mirzoo: pretrained and random-weight audio embedding models for music information retrieval.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list the zoo's models", description="List models with sample rate, "
                       "time resolution, embedding size and whether their weights are trained.")
    p.add_argument("filter", nargs="?", help="shell pattern on names, e.g. 'random-*'")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("info", help="show everything the manifest says about a model")
    p.add_argument("model", help="model name (see 'mirzoo list')")
    p.add_argument("--json", action="store_true", help="print the raw manifest entry")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "extract", help="extract embeddings from audio files into .npz or .parquet",
        description="Extract embeddings from audio files and folders (searched recursively). Files that "
        "cannot be read are reported and skipped; the others are written. The output is written to a "
        "temporary file and renamed, so it is never half-written. Exit code 1 if some files failed.",
    )
    p.add_argument("model", help="model name, 'hf://owner/repo@rev', or a saved model directory")
    p.add_argument("inputs", nargs="+", help="audio files or folders")
    p.add_argument("-o", "--output", required=True, help="output file: .npz or .parquet")
    p.add_argument("--layer", default=None, help="layer name, or 'all' (default: the model's embedding layer)")
    p.add_argument("--pool", choices=["mean", "max", "mean+std"], default=None,
                   help="pool each file over time into one vector")
    p.add_argument("--batch-size", type=int, default=16, help="patches per forward pass (default 16)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("tag", help="print the most probable tags of audio files")
    p.add_argument("model", help="a model with a tag head, e.g. cnn-tagging")
    p.add_argument("inputs", nargs="+", help="audio files or folders")
    p.add_argument("-k", "--top-k", type=int, default=5, help="number of tags (default 5)")
    p.add_argument("--threshold", type=float, default=None, help="only tags with probability >= this")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=_cmd_tag)

    try:  # optional commands contributed by other modules
        from mirzoo import publish

        publish.add_cli_commands(sub)
    except (ImportError, AttributeError):
        pass
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    # TensorFlow's C++ start-up chatter is noise on a command line (set before keras is imported).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MirzooError as exc:
        print(f"mirzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
