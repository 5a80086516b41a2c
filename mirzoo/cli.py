"""The ``mirzoo`` command line: list, info, extract, tag, analyze, export and publish.

Exit codes: 0 on success, 1 when some inputs failed (the others are still
written), 2 on a usage error or when nothing could be done.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from mirzoo import publish
from mirzoo._checks import PRECISIONS, check_tag_options
from mirzoo.errors import MirzooError, SilentAudioWarning
from mirzoo.fileio import atomic_file, check_writable, write_json_atomic
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
  mirzoo tag tcn-music song.wav --head key --top-k 3          # "A minor", ...; --plot taggram.png
  mirzoo analyze song.wav other.flac -o analysis.json --plot analysis.png   # key, tempo, beats, chords
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
    if spec.clip_tags:
        ct = spec.clip_tags
        print(f"  clip tags     tag(head={ct['head']!r}) reads a logistic regression on the {ct['pool']} over the clip "
              f"of {' + '.join(ct['sources'])} (the head's frames: predict)")
    if spec.bar_model:
        bm = spec.bar_model
        print(f"  bars          analyze() reads the bar length and downbeat phase with a bidirectional GRU over the "
              f"tracked beats (bar_model, reading {' + '.join(bm['sources'])})")
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

    if "://" not in out or out.startswith("file://"):  # a local output is checked before Ray starts
        check_writable(out.split("://", 1)[-1], folder=Path(out).suffix.lower() != ".parquet")

    import mirzoo.distributed as md  # deferred: Ray is optional

    ray = md.require_ray()
    started = not ray.is_initialized()
    try:
        md.init(args.address, progress=not args.quiet)
        ds = md.read_audio(inputs)
        emb = md.extract(ds, args.model, layer=args.layer, pool=args.pool, batch_size=args.batch_size,
                         hop=args.hop, precision=args.precision, concurrency=args.concurrency,
                         num_gpus=args.num_gpus)
        report = md.write_parquet(emb, out, overwrite=True)
    except KeyboardInterrupt:
        print("\nmirzoo extract: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
    return _report_extract(args, report, out)


def _report_extract(args, report, out, *, reported: bool = False) -> int:
    if not reported:  # the local engine has printed each failure as it happened: once is enough
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
            precision=args.precision,
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
    return _report_extract(args, report, out, reported=True)


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
    # usage errors before Keras is imported, not once per file
    check_tag_options(args.top_k, args.threshold)
    if args.plot:
        from mirzoo.tasks.plots import check_plot_path, plot_taggram, require_matplotlib  # deferred: optional matplotlib

        check_plot_path(args.plot)
        require_matplotlib()  # a missing extra is a usage error before any file
    from mirzoo.loader import load  # deferred: Keras/TensorFlow (see _expand_inputs)

    model = load(args.model, precision=args.precision)
    output = model.check_head(args.head)  # a model without heads, or an unknown head, is a usage error before any file
    status = 0
    paths = _expand_inputs(args.inputs)
    plots = _plot_paths(args.plot, paths) if args.plot else {}
    for p in paths:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SilentAudioWarning)
                frames: list = []  # the taggram comes from the same forward pass as the tags
                tags = model.tag(p, top_k=args.top_k, threshold=args.threshold, head=args.head,
                                 frames=frames if args.plot else None)
            silent = _report_silence(caught, p)
            if args.plot:
                probs = frames[0]
                plot_taggram(probs, model.heads[output], model.timestamps(probs.shape[0]), plots[p],
                             title=f"{Path(p).name}: {model.name} {output}")
        except (MirzooError, OSError) as exc:
            print(f"FAILED {p}: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps({"path": p, "tags": [{"tag": t, "probability": round(v, 4)} for t, v in tags],
                              "silent": silent}))
        else:
            print(p + ("  (silent)" if silent else ""))
            for t, v in tags:
                print(f"  {t:<16} {v:.3f}")
    if not model.pretrained:
        print(f"note: {model.name!r} is not pretrained: these probabilities are meaningless", file=sys.stderr)
    return status


def _report_silence(caught: list, path: str) -> bool:
    """Print each caught :class:`SilentAudioWarning` as ``warning: ...`` on stderr, naming the input
    ``path`` (the library may have been given its samples), and issue the other warnings again; whether
    one was caught."""
    silent = False
    for w in caught:
        if issubclass(w.category, SilentAudioWarning):
            from mirzoo.audio import silence_message  # deferred: loaded by then; keeps soxr out of CLI start-up

            silent = True
            print(f"warning: {silence_message(path, w.message.peak, w.message.what)}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return silent


def _fmt_metrics(scores: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items()
                     if not isinstance(v, (list, dict)))


def _cmd_fine_tune(args) -> int:
    from mirzoo.loader import load  # deferred: Keras/TensorFlow (see _expand_inputs)

    out = Path(args.output)
    if out.exists() and not args.overwrite:  # checked before training, not after
        print(f"mirzoo fine-tune: error: '{out}' already exists: pass --overwrite to replace it", file=sys.stderr)
        return 2
    base = load(args.model)
    clf = base.fine_tune(args.data, epochs=args.epochs, unfreeze=args.unfreeze, validation=args.validation,
                         multilabel=True if args.multi_label else None, seed=args.seed, progress=not args.quiet)
    clf.save(out, overwrite=args.overwrite)
    head = clf.spec.head
    kind = "multi-label (sigmoid)" if head.multilabel else "single-label (softmax)"
    print(f"{clf.spec.training['data']}; {len(head.labels)} classes, {kind}: {', '.join(head.labels)}")
    losses = clf.history["head"]
    print(f"head: {len(losses['loss'])} epoch(s), final training loss {losses['loss'][-1]:.4f}"
          + (f", validation loss {losses['val_loss'][-1]:.4f}" if "val_loss" in losses else ""))
    if "unfreeze" in clf.history:
        print(f"unfrozen: {', '.join(clf.history['unfreeze']['blocks'])}")
    validation = clf.spec.metrics.get("validation")
    if validation:
        print(f"validation: {_fmt_metrics(validation)}")
    else:
        print("validation: none (no validation split: fewer than 25 clips per class; set --validation 0.2)")
    print(f"saved to {out}: 'mirzoo evaluate {out} TESTDATA' scores it, mirzoo.load('{out}') loads it")
    return 0


def _cmd_evaluate(args) -> int:
    from mirzoo.loader import load  # deferred: Keras/TensorFlow (see _expand_inputs)
    from mirzoo.tasks.finetune import evaluate  # deferred: Keras/TensorFlow

    model = load(args.model)
    scores = evaluate(model, args.data, confusion=True)
    if args.json:
        print(json.dumps(scores, indent=2))
        return 0
    print(f"{args.model} on {scores['n_clips']} clips of {args.data}")
    if "accuracy" in scores:
        print(f"accuracy  {scores['accuracy']:.4f}")
        print(f"macro-F1  {scores['macro_f1']:.4f}")
        labels, matrix = scores["labels"], scores["confusion_matrix"]
        width = max(6, *(len(l) for l in labels))
        cell = max(5, *(len(str(v)) for row in matrix for v in row))
        print("confusion matrix (rows: true, columns: predicted, in label order):")
        print(" " * (width + 2) + " ".join(f"{i:>{cell}d}" for i in range(len(labels))))
        for i, (label, row) in enumerate(zip(labels, matrix)):
            print(f"{label:<{width}}  " + " ".join(f"{v:>{cell}d}" for v in row) + f"   {i}")
    else:
        print(f"ROC-AUC (macro)  {scores['roc_auc_macro']:.4f}")
        print(f"PR-AUC (macro)   {scores['pr_auc_macro']:.4f}")
    return 0


def _plot_paths(plot: str, paths: Sequence[str]) -> dict[str, Path]:
    """One figure per input: ``plot`` itself for one input, else ``<stem>-<input stem>.<suffix>`` beside it
    (numbered when two inputs share a stem)."""
    target = Path(plot)
    if len(paths) == 1:
        return {paths[0]: target}
    out, seen = {}, set()
    for p in paths:
        name = f"{target.stem}-{Path(p).stem}"
        candidate, i = name, 1
        while candidate in seen:
            i += 1
            candidate = f"{name}-{i}"
        seen.add(candidate)
        out[p] = target.with_name(candidate + target.suffix)
    return out


ANALYZE_DEFAULT_MODEL = "tcn-music"
PRECISION_HELP = ("compute dtype of the layers after the front-end (default float32); bfloat16 ran the clip models "
                  "~1.5x faster on a CPU with AMX/AVX512-BF16 units, and is emulated (likely slower) elsewhere")


def _write_analyses(out: Path, analyses: list, failed: list, silent: frozenset = frozenset()) -> None:
    """Write the analyses to ``out`` (.json, .csv or .jams) atomically; a .json file's entries say
    whether their input was ``silent`` (its path is in the set)."""
    suffix = out.suffix.lower()
    if suffix == ".json":
        write_json_atomic(out, {"files": [dict(a.to_dict(), silent=a.source in silent) for a in analyses],
                                "failed": [{"path": p, "error": e} for p, e in failed]})
    elif suffix == ".jams":
        write_json_atomic(out, analyses[0].to_jams())
    else:
        with atomic_file(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "type", "start", "end", "label", "confidence"])
            writer.writeheader()
            for a in analyses:
                for row in a.to_rows():
                    writer.writerow({"path": a.source, **row})


def _cmd_analyze(args) -> int:
    from mirzoo.tasks.analyze import check_analysis_heads, check_rhythm_shifts  # numpy only

    # usage errors before Keras is imported, not once per file
    if args.rhythm_shifts is not None:
        try:
            check_rhythm_shifts(tuple(args.rhythm_shifts))
        except MirzooError as exc:
            print(f"mirzoo analyze: error: --rhythm-shifts: {exc}", file=sys.stderr)
            return 2
    inputs = list(args.inputs)
    model_ref = args.model
    if model_ref is None:
        first = inputs[0]
        if not Path(first).is_file() and (first in list_models() or first.startswith("hf://")
                                          or (Path(first) / "mirzoo.json").is_file()):
            model_ref = inputs.pop(0)
        else:
            model_ref = ANALYZE_DEFAULT_MODEL
    if not inputs:
        print("mirzoo analyze: error: no inputs: give audio files or folders", file=sys.stderr)
        return 2
    out = Path(args.output)
    if out.suffix.lower() not in (".json", ".csv", ".jams"):
        print(f"mirzoo analyze: error: output '{out}' must end in .json, .csv or .jams", file=sys.stderr)
        return 2
    if args.plot:
        from mirzoo.tasks.plots import check_plot_path, plot_analysis, require_matplotlib  # deferred: optional matplotlib

        check_plot_path(args.plot)
        require_matplotlib()
    # deferred: Keras/TensorFlow (see _expand_inputs)
    from mirzoo.inference.runner import progress_bar
    from mirzoo.loader import load

    model = load(model_ref, precision=args.precision)
    check_analysis_heads(model)  # a model without the heads is a usage error before any file
    paths = _expand_inputs(inputs)
    if out.suffix.lower() == ".jams" and len(paths) != 1:
        print(f"mirzoo analyze: error: a .jams output holds one file's analysis, got {len(paths)} inputs: "
              "use .json or .csv", file=sys.stderr)
        return 2
    plots = _plot_paths(args.plot, paths) if args.plot else {}
    analyses, failed, silent = [], [], set()
    bar = progress_bar(len(paths), not args.quiet and len(paths) > 1, "mirzoo analyze", unit="file")
    for p in paths:
        try:
            y, _ = model.load_input(p, None)
            options = {} if args.rhythm_shifts is None else {"rhythm_shifts": tuple(args.rhythm_shifts)}
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", SilentAudioWarning)
                analysis = dataclasses.replace(model.analyze(y, sr=model.sample_rate, **options), source=p)
            if _report_silence(caught, p):
                silent.add(p)
            if args.plot:
                plot_analysis(analysis, y, model.sample_rate, plots[p])
            analyses.append(analysis)
        except (MirzooError, OSError) as exc:
            failed.append((p, str(exc)))
            from tqdm.auto import tqdm  # deferred: only when a file fails

            tqdm.write(f"FAILED {p}: {exc}", file=sys.stderr)
        bar.update(1)
    bar.close()
    if not analyses:
        print("mirzoo analyze: error: every input failed; nothing written", file=sys.stderr)
        return 2
    _write_analyses(out, analyses, failed, frozenset(silent))
    if not args.quiet:
        msg = f"wrote the analysis of {len(analyses)} file(s) to {out}"
        if args.plot:
            msg += f" and {len(analyses)} figure(s) ({', '.join(str(plots[a.source]) for a in analyses[:3])}"
            msg += ", ...)" if len(analyses) > 3 else ")"
        print(msg + (f"; {len(failed)} failed" if failed else ""))
    if not model.pretrained:
        print(f"note: {model.name!r} is not pretrained: this analysis is meaningless", file=sys.stderr)
    return 1 if failed else 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def add_publish_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``publish`` options and handler on ``parser`` (also used by ``python -m training.publish``)."""
    parser.add_argument("model", help="a saved model directory (Extractor.save), a zoo name or an hf:// reference")
    parser.add_argument("--repo", required=True, metavar="OWNER/NAME", help="Hugging Face repo id")
    parser.add_argument("--out", metavar="DIR",
                        help="where to build the hub folder (default: ./<name>-hub; a previous build is replaced)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a previous build")
    parser.add_argument("--license", help="license to record instead of the model's (e.g. MIT, CC-BY-4.0)")
    parser.add_argument("--push", action="store_true", help="upload (token from $HF_TOKEN); default is a dry run")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--branch", help="branch to commit to (default: main)")
    parser.add_argument("--tag", help="tag the new commit, e.g. v1")
    parser.add_argument("--message", help="commit message")
    parser.add_argument("--update-manifest", action="store_true",
                        help="after --push, pin the zoo entry's hub repo_id and revision (the commit) in both "
                        "manifest copies")
    parser.set_defaults(func=_cmd_publish, command="publish")
    return parser


def _cmd_publish(args) -> int:
    result = publish.publish_model(
        args.model, args.repo, out=args.out, overwrite=args.overwrite, license=args.license, push_to_hub=args.push,
        private=args.private, branch=args.branch, tag=args.tag, message=args.message,
        update_manifest_entry=args.update_manifest,
    )
    print(f"hub folder for {args.repo}: {result.folder}")
    width = max(len(f) for f, _ in result.files)
    for f, size in result.files:
        print(f"  {f:<{width}}  {_human(size):>9}  ({size} bytes)")
    print(f"  {len(result.files)} files, {_human(result.total_bytes)}")
    if result.commit is None:
        print(f"dry run: nothing uploaded. Add --push to upload to https://huggingface.co/{args.repo}")
        return 0
    print(f"pushed {args.repo}: commit {result.commit}")
    print(f"load it with: mirzoo.load('hf://{args.repo}@{result.revision}')")
    if result.manifests:
        print(f"manifest entry {result.name!r} now pins {args.repo}@{result.commit} in "
              f"{', '.join(map(str, result.manifests))}")
    return 0


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
    p.add_argument("--precision", choices=sorted(PRECISIONS), default=None, help=PRECISION_HELP)
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
    p.add_argument("--precision", choices=sorted(PRECISIONS), default=None, help=PRECISION_HELP)
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="also draw a taggram (the head's labels over time) per file: OUT.png for one file, "
                   "OUT-<file stem>.png for several (pip install \"mirzoo[plot]\")")
    p.set_defaults(func=_cmd_tag)

    p = sub.add_parser(
        "fine-tune", help="train a classifier head on labelled audio and save it",
        description="Fine-tune MODEL on labelled audio: a new head on the frozen backbone (embeddings computed "
        "once), then, with --unfreeze N, the top N backbone blocks end to end. DATA is a folder per label, a CSV "
        "of path,label[;label...] (or one 0/1 column per class), or a data set on disk (GTZAN, MagnaTagATune, "
        "GiantSteps key, Ballroom, NSynth split). Prints the final validation metrics; the model is saved to "
        "DIR (written under a temporary name and renamed).",
    )
    p.add_argument("model", help="base model name, 'hf://owner/repo@rev', or a saved model directory")
    p.add_argument("data", help="labelled audio: folder per label, CSV file, or a data set folder")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to save the fine-tuned model to")
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs of head training (default 20)")
    p.add_argument("--unfreeze", type=int, default=0, metavar="N",
                   help="train the top N backbone blocks end to end after the head (default 0)")
    p.add_argument("--multi-label", action="store_true",
                   help="independent sigmoid outputs even when every clip has one label")
    p.add_argument("--validation", type=float, default=None, metavar="FRACTION",
                   help="clips held out for early stopping and metrics (default: 0.2 with 25+ clips per class, "
                   "else none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DIR")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fine_tune)

    p = sub.add_parser(
        "evaluate", help="score a model with a head on labelled test audio",
        description="Accuracy, macro-F1 and a confusion matrix for a single-label model; macro ROC-AUC and "
        "PR-AUC for a multi-label one. Probabilities are averaged over each clip's patches.",
    )
    p.add_argument("model", metavar="DIR", help="a fine-tuned model folder (or any model with a head)")
    p.add_argument("data", metavar="TESTDATA", help="labelled audio in a form 'mirzoo fine-tune' takes")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "analyze", help="key, tempo, meter, beats, downbeats and chords of audio files",
        description="Analyse audio files with a model that has frame-wise beats, key, chord, meter and tempo "
        f"heads (default {ANALYZE_DEFAULT_MODEL}). The first input is taken as the model when it names one "
        "(a zoo name, hf://..., or a saved model folder) and is not a file. Output: .json (one record per "
        "file: key with candidates, local keys, tempo, meter, beat and downbeat times, chord segments; times "
        "in seconds), .csv (long format: path, type, start, end, label, confidence) or .jams (JAMS 0.3, one "
        "input). Files that fail are reported and the others written; the output is written to a temporary "
        "file and renamed. Exit code 1 if some files failed, 2 if none could be done.",
    )
    p.add_argument("inputs", nargs="+", metavar="[MODEL] FILES", help="optional model, then audio files or folders")
    p.add_argument("-o", "--output", required=True, help="output file: .json, .csv or .jams")
    p.add_argument("--model", default=None, help=f"the model (default: {ANALYZE_DEFAULT_MODEL}, or the first input)")
    p.add_argument("--precision", choices=sorted(PRECISIONS), default=None, help=PRECISION_HELP)
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="draw the analysis over a constant-Q spectrogram: OUT.png for one file, OUT-<file stem>.png "
                   "for several (pip install \"mirzoo[plot]\")")
    p.add_argument("--rhythm-shifts", type=float, nargs="+", metavar="SEMITONES", default=None,
                   help="playback-rate shifts whose passes the beat, tempo and meter heads are averaged over "
                   "(default: 0, one pass; e.g. -0.667 -0.333 0 0.333 0.667 for five)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("publish", help="build a Hugging Face Hub model repo (and with --push, upload it)",
                       description="Build a hub-ready folder of a saved model, a zoo name or an hf:// reference (the "
                       "Keras layout, mirzoo.json with every file's sha256, a model card) and list it; --push uploads "
                       "it (token from $HF_TOKEN).")
    add_publish_arguments(p)

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


def publish_main(argv: Optional[Sequence[str]] = None, *, prog: str = "mirzoo publish") -> int:
    """The ``publish`` command on its own, under another program name (``python -m training.publish``)."""
    parser = add_publish_arguments(argparse.ArgumentParser(prog=prog, description=publish.__doc__.split("\n\n")[0]))
    args = parser.parse_args(argv)
    try:
        return _cmd_publish(args)
    except MirzooError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2


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
