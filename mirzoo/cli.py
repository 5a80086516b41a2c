"""The ``mirzoo`` command line: list, info, extract, tag, export and publish.

Exit codes: 0 on success, 1 when some inputs failed (the others are still
written), 2 on a usage error or when nothing could be done.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from mirzoo import publish
from mirzoo.errors import MirzooError
from mirzoo.zoo.manifest import PACKAGE_MANIFEST, REPO_MANIFEST, get_spec, list_models, manifest_path, model_info

log = logging.getLogger("mirzoo")

EPILOG = """examples:
  mirzoo list
  mirzoo info crnn-tagging
  mirzoo extract random-cnn song.wav other.flac -o emb.npz
  mirzoo extract cnn-tagging music/ -o emb.parquet --pool mean+std
  mirzoo extract cnn-tagging music/ -o emb.parquet --pool mean+std --resume   # skip files done
  mirzoo extract cnn-tagging music/ -o emb/ --pool mean+std --engine ray      # Ray Data, local
  mirzoo extract cnn-tagging s3://bucket/music/ -o s3://bucket/emb/ --engine ray --address auto
  mirzoo tag cnn-tagging song.wav --top-k 5
  mirzoo export crnn-tagging --format onnx -o crnn.onnx     # waveform in, embeddings/tags out
  mirzoo publish my-finetuned/ --repo owner/my-model          # dry run
  mirzoo publish my-finetuned/ --repo owner/my-model --push   # upload with $HF_TOKEN
  HF_HUB_OFFLINE=1 mirzoo extract hf://owner/repo@v1 song.wav -o e.npz
"""


def _expand_inputs(inputs: Sequence[str]) -> list[str]:
    """Files as given; directories walked recursively for audio files (sorted)."""
    from mirzoo.batch import find_audio_files  # deferred: Keras/TensorFlow stay out of list/info/--help

    return find_audio_files(inputs)


def _cmd_list(args) -> int:
    rows = []
    for name in list_models(args.filter):
        spec = get_spec(name)
        if spec.is_clip:
            res = f"{spec.patch_seconds:g}s patch / {spec.patch_hop_seconds:g}s hop"
        else:
            res = f"frames every {spec.frame_seconds * 1000:g} ms"
        rows.append((name, f"{spec.sample_rate} Hz", res, str(spec.embedding_dim), spec.weights_label, spec.task))
    if args.json:
        print(json.dumps([dict(zip(("name", "sample_rate", "resolution", "dim", "weights", "task"), r)) for r in rows], indent=2))
        return 0
    header = ("model", "rate", "resolution", "dim", "weights", "task")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def _cmd_info(args) -> int:
    if args.json:
        print(json.dumps(model_info(args.model), indent=2))
        return 0
    spec = get_spec(args.model)
    print(f"{args.model}: {spec.description}")
    print(f"  family        {spec.family} ({spec.task})")
    print(f"  sample rate   {spec.sample_rate} Hz")
    fe = spec.frontend
    print(f"  front-end     {fe['kind']}, hop {spec.hop_length} samples, " + ", ".join(
        f"{k}={v}" for k, v in fe.items() if k not in ("kind", "hop_length", "sample_rate")))
    if spec.is_clip:
        print(f"  windows       {spec.patch_seconds} s patches every {spec.patch_hop_seconds} s (one embedding each)")
    else:
        print(f"  windows       frame-level, processed in {spec.patch_seconds} s chunks")
    print("  layers        " + ", ".join(f"{k} [{v}]" for k, v in spec.layers.items()) + "  (default: " + spec.default_layer + ")")
    print(f"  layer='all'   {' + '.join(spec.all_layers)}")
    for i, (output, labels) in enumerate(spec.heads.items()):
        print(f"  {'labels' if i == 0 else 'labels (' + output + ')':<14}{len(labels)}: "
              f"{', '.join(labels[:12])}{' ...' if len(labels) > 12 else ''}")
    w = spec.weights
    state = "pretrained" if spec.pretrained else "NOT pretrained"
    if w.kind == "seeded":
        print(f"  weights       {state}: generated from seed {w.seed} (sha256 {w.sha256[:16]}...)")
    else:
        print(f"  weights       {state}: {w.file} ({w.size} bytes, sha256 {w.sha256[:16]}...)")
    if spec.training.get("notes"):
        print(f"  training      {spec.training['notes']}")
    if spec.metrics:
        print(f"  metrics       {json.dumps(dict(spec.metrics))}")
    print(f"  license       {spec.license}")
    if spec.hub_repo_id:
        print(f"  hub           {spec.hub_repo_id} @ {spec.hub_revision or '(unpublished)'}")
    for ref in spec.references:
        print(f"  reference     {ref}")
    return 0


def _extract_ray(args) -> int:
    """``mirzoo extract --engine ray``: Ray Data actors; a .parquet file or a folder of parts."""
    out = args.output
    usage = None
    if Path(out).suffix.lower() == ".npz":
        usage = f"output '{out}' must be a .parquet file or a folder with --engine ray (NPZ: --engine local)"
    elif args.resume:
        usage = "--resume works with --engine local only"
    elif args.workers is not None:
        usage = "--workers sets decoder processes of --engine local; with --engine ray use --concurrency"
    elif args.batch_size < 1:
        usage = f"--batch-size={args.batch_size} must be a positive integer"
    elif args.concurrency is not None and args.concurrency < 1:
        usage = f"--concurrency={args.concurrency} must be a positive integer"
    elif args.num_gpus < 0:
        usage = f"--num-gpus={args.num_gpus} must be 0 or more"
    if usage:
        print(f"mirzoo extract: error: {usage}", file=sys.stderr)
        return 2
    inputs = list(args.inputs)
    if args.files_from:
        if args.files_from == "-":
            lines = sys.stdin.read().splitlines()
        else:
            try:
                lines = Path(args.files_from).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                print(f"mirzoo extract: error: cannot read the file list '{args.files_from}': {exc}", file=sys.stderr)
                return 2
        inputs += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    import mirzoo.distributed as md  # deferred: Ray is optional

    ray = md.require_ray()
    started = not ray.is_initialized()
    try:
        md.init(args.address, progress=not args.quiet)
        ds = md.read_audio(inputs)
        emb = md.extract(ds, args.model, layer=args.layer, pool=args.pool, batch_size=args.batch_size,
                         hop=args.hop, concurrency=args.concurrency, num_gpus=args.num_gpus)
        report = md.write_parquet(emb, out, overwrite=True)
    except KeyboardInterrupt:
        print("\nmirzoo extract: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    return _report_extract(args, report, out)


def _report_extract(args, report, out) -> int:
    for failure in report.failed:
        print(f"FAILED {failure.path}: {failure.reason}", file=sys.stderr)
    if not args.quiet:
        parts = [f"wrote {report.written} file(s) to {out}"]
        if report.skipped:
            parts.append(f"{report.skipped} already there")
        if report.failed:
            parts.append(f"{len(report.failed)} failed")
        print("; ".join(parts) + f" ({report.seconds:.1f} s)")
    if report.exit_code == 2:
        print("mirzoo extract: error: every input failed; nothing written", file=sys.stderr)
    return report.exit_code


def _cmd_extract(args) -> int:
    from mirzoo.batch import OUTPUT_SUFFIXES, extract_files  # deferred: Keras/TensorFlow (see _expand_inputs)

    if not args.inputs and not args.files_from:
        print("mirzoo extract: error: no inputs: give files, folders or --files-from LIST", file=sys.stderr)
        return 2
    if args.engine == "ray":
        return _extract_ray(args)
    if args.address is not None or args.concurrency is not None or args.num_gpus:
        print("mirzoo extract: error: --address, --concurrency and --num-gpus need --engine ray", file=sys.stderr)
        return 2
    out = Path(args.output)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        print(f"mirzoo extract: error: output '{out}' must end in .npz or .parquet", file=sys.stderr)
        return 2
    if args.batch_size < 1:
        print(f"mirzoo extract: error: --batch-size={args.batch_size} must be a positive integer", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 0:
        print(f"mirzoo extract: error: --workers={args.workers} must be 0 or more", file=sys.stderr)
        return 2

    def on_failure(failure) -> None:
        from tqdm.auto import tqdm  # deferred: only when a file fails

        tqdm.write(f"mirzoo extract: skipped '{failure.path}': {failure.reason}", file=sys.stderr)

    try:
        report = extract_files(
            args.model,
            args.inputs,
            out,
            layer=args.layer,
            pool=args.pool,
            batch_size=args.batch_size,
            hop=args.hop,
            workers=args.workers,
            resume=args.resume,
            files_from=args.files_from,
            progress=not args.quiet,
            on_failure=on_failure,
        )
    except KeyboardInterrupt:
        print("\nmirzoo extract: interrupted; finished files are kept: rerun with --resume to go on",
              file=sys.stderr)
        return 130
    return _report_extract(args, report, out)


def _cmd_export(args) -> int:
    from mirzoo.export import export  # deferred: Keras/TensorFlow (see _expand_inputs)

    path = export(
        args.model,
        args.format,
        args.output,
        layers=args.layers,
        samples=args.samples,
        overwrite=args.overwrite,
        opset=args.opset,
        quantize=args.quantize,
    )
    if not args.quiet:
        print(f"wrote {path}")
    return 0


def _cmd_tag(args) -> int:
    from mirzoo.loader import load  # deferred: Keras/TensorFlow (see _expand_inputs)

    model = load(args.model)
    model.check_head(args.head)  # a model without heads, or an unknown head, is a usage error before any file
    status = 0
    for p in _expand_inputs(args.inputs):
        try:
            tags = model.tag(p, top_k=args.top_k, threshold=args.threshold, head=args.head)
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


def _cmd_manifest(args) -> int:
    if args.refresh_seeded:
        from mirzoo.zoo.registry import refresh_seeded  # deferred: builds models (Keras/TensorFlow)

        paths = [REPO_MANIFEST, PACKAGE_MANIFEST] if REPO_MANIFEST.exists() else [PACKAGE_MANIFEST]
        changed = refresh_seeded(paths)
        print(f"updated {len(changed)} seeded hash(es): {sorted(changed)}; wrote {', '.join(map(str, paths))}")
    print(f"manifest OK: {len(list_models())} models in {manifest_path()}")
    return 0


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
        description="Extract embeddings from audio files and folders (searched recursively). Files are "
        "decoded in worker processes while the model runs, and patches are batched across files. Files "
        "that cannot be read are reported and skipped; the others are written. The output is written to a "
        "temporary file and renamed, so it is never half-written; --resume skips files already in it. "
        "Exit code 1 if some files failed, 2 if none could be done. "
        "With --engine ray (pip install \"mirzoo[distributed]\") Ray Data actors run the model, on a local "
        "Ray instance or the cluster at --address; inputs may be URIs (s3://, gs://, ...); the output is a "
        ".parquet file in the same layout, or else a folder of Parquet parts written by the workers that "
        "also holds a row per failed file (columns path, timestamp, embedding, duration, error, model, "
        "layer, pool).",
    )
    p.add_argument("model", help="model name, 'hf://owner/repo@rev', or a saved model directory")
    p.add_argument("inputs", nargs="*", help="audio files or folders")
    p.add_argument("-o", "--output", required=True,
                   help="output file: .npz or .parquet (--engine ray: .parquet, or a folder of Parquet parts)")
    p.add_argument("--files-from", metavar="LIST", default=None,
                   help="read more inputs from LIST, one path per line ('-' for standard input)")
    p.add_argument("--layer", default=None, help="layer name, or 'all' (default: the model's embedding layer)")
    p.add_argument("--pool", choices=["mean", "max", "mean+std"], default=None,
                   help="pool each file over time into one vector")
    p.add_argument("--batch-size", type=int, default=16, help="patches per forward pass (default 16)")
    p.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                   help="clip models: seconds between patch starts (default: the model's, half a patch; "
                   "the patch length gives non-overlapping patches, half the work)")
    p.add_argument("--workers", type=int, default=None,
                   help="decoder processes (default: cores - 1, between 1 and 4, or none for fewer than 8 files; "
                   "0 decodes in the main process)")
    p.add_argument("--resume", action="store_true",
                   help="skip files already in the output (or left by an interrupted run) and merge")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process and decoder processes (default); ray: Ray Data actors")
    p.add_argument("--address", default=None,
                   help="--engine ray: join this Ray cluster ('auto', 'ray://host:10001'; default: start a "
                   "local instance, or $RAY_ADDRESS)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="--engine ray: model actors (default: one per CPU, or per GPU with --num-gpus)")
    p.add_argument("--num-gpus", type=float, default=0,
                   help="--engine ray: GPUs per actor (default 0; 0.5 puts two actors on a GPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser(
        "export", help="export a model (front-end included) to SavedModel, TFLite or ONNX",
        description="Export a model so that it takes waveforms [batch, samples] (mono, float32, at the "
        "model's sample rate; one patch for clip models) and returns its named layers (embeddings, tags). "
        "TFLite uses builtin ops only. Written to a temporary name and renamed.",
    )
    p.add_argument("model", help="model name, 'hf://owner/repo@rev', or a saved model directory")
    p.add_argument("-o", "--output", required=True,
                   help="output: a .onnx or .tflite file, or a directory for a SavedModel")
    p.add_argument("-f", "--format", choices=["savedmodel", "tflite", "onnx"], default=None,
                   help="export format (default: from the output's suffix; a directory is a SavedModel)")
    p.add_argument("--layers", nargs="+", default=None, metavar="LAYER",
                   help="layers to output (default: all named layers)")
    p.add_argument("--samples", type=int, default=None,
                   help="input length in samples for frame models (default: patch_seconds of audio)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: tf2onnx's)")
    p.add_argument("--quantize", choices=["float16", "int8"], default=None,
                   help="tflite only: float16 weights, or int8 weights and activations calibrated on the "
                   "shipped example clip (float input and output kept); parity in benchmarks/README.md")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("tag", help="print the most probable tags of audio files")
    p.add_argument("model", help="a model with a tag head, e.g. cnn-tagging")
    p.add_argument("inputs", nargs="+", help="audio files or folders")
    p.add_argument("-k", "--top-k", type=int, default=5, help="number of tags (default 5)")
    p.add_argument("--threshold", type=float, default=None, help="only tags with probability >= this")
    p.add_argument("--head", default=None, help="which output head to read (default: the model's primary head; "
                   "e.g. 'tags' for dense-frame, whose primary head is 'pitch_classes')")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.set_defaults(func=_cmd_tag)

    publish.add_cli_commands(sub)

    p = sub.add_parser("manifest", help="check the weights manifest (maintainers: --refresh-seeded)",
                       description="Validate weights_manifest.json; --refresh-seeded recomputes the sha256 of "
                       "every seeded model's generated weights and rewrites both copies of the manifest (after an "
                       "intended architecture change).")
    p.add_argument("--refresh-seeded", action="store_true", help="recompute seeded-weight sha256 values")
    p.set_defaults(func=_cmd_manifest)
    return parser


def _quiet_backend() -> None:
    """Silence TensorFlow/absl start-up lines ("oneDNN custom operations are on", "All log messages before
    absl::InitializeLog()", CPU-feature notes).  Must run before TensorFlow is first imported; a value
    the user set is kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verbose:  # -v shows the backend's own start-up messages
        _quiet_backend()
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
