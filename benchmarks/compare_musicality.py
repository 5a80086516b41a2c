"""Paired comparison of two ``musicality.py`` results on the same clips: is a candidate better, worse,
or within the noise of the test set, measure by measure?

```bash
python benchmarks/compare_musicality.py BASE.json CANDIDATE.json            # table on stdout
python benchmarks/compare_musicality.py BASE.json CANDIDATE.json --out cmp.md --boot 2000
python benchmarks/compare_musicality.py BASE.json CANDIDATE.json --exclude-clips-of OTHER.json   # only clips OTHER lacks
python benchmarks/compare_musicality.py RUN.json --evidence-reading     # a bar record against the evidence, one run
```

Both runs must have written their per-clip records (``musicality.py`` does since session 13: the
``.clips.json.gz`` file beside the report) for the same clips.  Every clip-level measure (key, beats, downbeats, tempo, chords, the mode of the reported
key, the meter ``analyze()`` reports, tag ROC-AUC) is recomputed on ``--boot`` bootstrap resamples of
the test *pieces* (clips of one piece are drawn together: they share a score, so they are not
independent), each resample scoring both models on the same clips.  A difference whose 95 %
interval lies above zero is *better*, below zero *worse*, otherwise *within noise*.  The probes are
compared repeat by repeat: ``musicality.py`` draws the same balanced subsets and folds for every
model, so the per-repeat differences are paired (with five repeats there is no interval, only the
mean difference and how many repeats went each way).

``--exclude-clips-of OTHER.json`` leaves out every clip that another run's per-clip records hold: on
``heldout-v3``, whose first 444 clips are ``heldout-v2``'s, it scores only the clips no earlier decision
has read.  The probes are whole-run figures and are not restricted, so they are then left out.

``--evidence-reading`` takes one report, of a run whose model carries a ``bar_model`` or
``downbeat_model`` record: ``musicality.py`` then keeps, for every clip, the downbeat F-measure and the
meter of the bars read from the downbeat evidence alone beside the record's, and the comparison pairs the
two readings within that run (every other measure is the same by construction).  No second run of the
model without the record is needed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from benchmarks.musicality import meter_agreement, mode_agreement  # noqa: E402  (the report's own readings)


def _mean(field):
    def f(rows):
        vals = [r[field] for r in rows if r.get(field) is not None]
        return float(np.mean(vals)) if vals else None
    return f


def _chord_ratio(num, den):
    def f(rows):
        tot = np.sum([r["chords"] for r in rows if r.get("chords")], axis=0) if any(r.get("chords") for r in rows) else None
        return None if tot is None or not tot[den] else float(tot[num] / tot[den])
    return f


def _mode(rows):
    pairs = [tuple(r["mode"]) for r in rows if r.get("mode")]
    return mode_agreement(pairs)["model"] if pairs else None


def _meter(field):
    def f(rows):
        pairs = [tuple(r["meter"]) for r in rows if r.get("meter")]
        return meter_agreement(pairs)[field] if pairs else None
    return f


def tag_auc(probs: np.ndarray, truth: np.ndarray) -> float | None:
    """Macro ROC-AUC over the columns with both classes present (ties get half credit, as sklearn's)."""
    from scipy.stats import rankdata

    pos = truth.sum(axis=0)
    usable = (pos > 0) & (pos < truth.shape[0])
    if not usable.any():
        return None
    p, t = probs[:, usable], truth[:, usable]
    ranks = rankdata(p, axis=0)
    n_pos, n_neg = t.sum(axis=0), (1 - t).sum(axis=0)
    auc = ((ranks * t).sum(axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(auc.mean())


def _tags(rows):
    rows = [r for r in rows if r.get("tags") is not None]
    if not rows:
        return None
    probs = np.array([r["tags"] for r in rows], dtype=np.float64)
    truth = np.zeros(probs.shape)
    for i, r in enumerate(rows):
        truth[i, r["tag_truth"]] = 1.0
    return tag_auc(probs, truth)


#: (name, function of a list of per-clip records) for every clip-level measure
MEASURES = (
    ("key, MIREX weighted", _mean("key")),
    ("key, head's clip mean", _mean("key_head_mean")),
    ("beat F", _mean("beat_f")),
    ("downbeat F", _mean("downbeat_f")),
    ("tempo Acc1", _mean("tempo_acc1")),
    ("tempo Acc2", _mean("tempo_acc2")),
    ("chord root", _chord_ratio(0, 2)),
    ("chord maj/min", _chord_ratio(1, 3)),
    ("mode of the key (balanced)", _mode),
    ("meter, time signature exact", _meter("exact")),
    ("meter class (balanced)", _meter("class_balanced")),
    ("tag ROC-AUC", _tags),
)


def load_report(path) -> dict:
    """A ``musicality.py`` report with its per-clip records (``per_clip``) read from the file it names,
    checked against the records' sha256 where the report holds one (``per_clip_path``: where they came from)."""
    import gzip
    import hashlib

    path = Path(path)
    report = json.loads(path.read_text(encoding="utf-8"))
    name = report.get("per_clip_file")
    if name and "per_clip" not in report:
        clips = path.parent / name
        if not clips.is_file():
            raise SystemExit(f"{path} names its per-clip records {name}, which is not beside it")
        with gzip.open(clips, "rb") as f:
            payload = f.read()
        want, got = report.get("per_clip_sha256"), hashlib.sha256(payload).hexdigest()
        if want and got != want:
            raise SystemExit(f"{path}: the per-clip records in {name} are not this report's (sha256 "
                             f"{got[:12]}..., expected {want[:12]}...): was the "
                             "report copied or renamed without its .clips.json.gz? Set per_clip_file to its own")
        report["per_clip"] = json.loads(payload.decode("utf-8"))
        report["per_clip_path"] = str(clips.resolve())
    return report


def check_distinct(base: dict, cand: dict, base_path, cand_path) -> None:
    """Two different reports must not read the same per-clip file: a report copied under a new name keeps
    the old ``per_clip_file``, and the comparison would then score one run against itself."""
    if (base.get("per_clip_path") and base.get("per_clip_path") == cand.get("per_clip_path")
            and Path(base_path).resolve() != Path(cand_path).resolve()):
        raise SystemExit(f"{base_path} and {cand_path} both read their per-clip records from "
                         f"{base['per_clip_path']}: give each report its own .clips.json.gz (per_clip_file)")


def paired_rows(base: dict, cand: dict) -> tuple[list, list]:
    """The two reports' per-clip records, matched by clip (both must hold the same clips)."""
    for name, rep in (("base", base), ("candidate", cand)):
        if not rep.get("per_clip"):
            raise SystemExit(f"the {name} report has no per_clip records: rerun benchmarks/musicality.py")
    a = {r["clip"]: r for r in base["per_clip"]}
    b = {r["clip"]: r for r in cand["per_clip"]}
    if set(a) != set(b):
        raise SystemExit(f"the reports hold different clips ({len(set(a) - set(b))} only in the base, "
                         f"{len(set(b) - set(a))} only in the candidate): compare runs on the same data")
    clips = sorted(a)
    return [a[c] for c in clips], [b[c] for c in clips]


def without_clips(report: dict, clips: set) -> dict:
    """``report`` with the per-clip records of ``clips`` left out, and its probes dropped (they were scored
    on every clip, so they no longer describe the rows kept)."""
    if not report.get("per_clip"):
        raise SystemExit("the report has no per_clip records: rerun benchmarks/musicality.py")
    kept = [r for r in report["per_clip"] if r["clip"] not in clips]
    if not kept:
        raise SystemExit(f"--exclude-clips-of leaves none of the report's {len(report['per_clip'])} clips")
    return _without_probes(report, per_clip=kept)


def _without_probes(report: dict, **changes) -> dict:
    """A copy of ``report`` with ``changes`` and no probes: its per-clip rows no longer describe the run the
    probes were scored on (some left out, or another reading of the same run)."""
    return {**report, **changes, "results": {**report.get("results", {}), "probes": {}}}


def evidence_reading(report: dict) -> dict:
    """``report`` as its model reads without its bar record: each clip's ``downbeat_f`` and ``meter`` replaced
    by the evidence reading's (``downbeat_f_evidence``, ``meter_evidence``), which ``musicality.py`` keeps
    beside them when the model carries a ``bar_model`` or ``downbeat_model``."""
    rows = report.get("per_clip") or []
    if not any("downbeat_f_evidence" in r for r in rows):
        raise SystemExit("--evidence-reading: the report's clips hold no downbeat_f_evidence; it needs a run whose "
                         "model carries a bar_model or downbeat_model record (benchmarks/musicality.py)")
    if any(r.get("meter") and "meter_evidence" not in r for r in rows):
        raise SystemExit("--evidence-reading: the report's clips hold no meter_evidence (a run from before "
                         "session 32): rerun benchmarks/musicality.py")
    swapped = [dict(r, downbeat_f=r.get("downbeat_f_evidence"), meter=r.get("meter_evidence")) for r in rows]
    return _without_probes(report, per_clip=swapped, per_clip_path=None)  # one run: the same probes for both


def compare(base: dict, cand: dict, boot: int = 2000, seed: int = 0) -> list[dict]:
    """One row per measure: both values on all clips, their difference and its piece-bootstrap 95 % interval."""
    rows_a, rows_b = paired_rows(base, cand)
    pieces = sorted({r["piece"] for r in rows_a})
    members = {p: [i for i, r in enumerate(rows_a) if r["piece"] == p] for p in pieces}
    rng = np.random.default_rng(seed)
    draws = [np.concatenate([members[pieces[j]] for j in rng.integers(0, len(pieces), len(pieces))])
             for _ in range(boot)]
    out = []
    for name, fn in MEASURES:
        va, vb = fn(rows_a), fn(rows_b)
        if va is None or vb is None:
            continue
        diffs = []
        for idx in draws:
            sa, sb = fn([rows_a[i] for i in idx]), fn([rows_b[i] for i in idx])
            if sa is not None and sb is not None:
                diffs.append(sb - sa)
        lo, hi = (np.percentile(diffs, [2.5, 97.5]) if diffs else (np.nan, np.nan))
        verdict = "better" if lo > 0 else "worse" if hi < 0 else "within noise"
        out.append({"measure": name, "base": va, "candidate": vb, "diff": vb - va,
                    "ci95": [float(lo), float(hi)], "verdict": verdict})
    return out


def compare_probes(base: dict, cand: dict) -> list[dict]:
    """Per probe task: the paired per-repeat differences of the two models' balanced accuracies."""
    out = []
    pa, pb = base["results"].get("probes", {}), cand["results"].get("probes", {})
    for task in pa:
        a = (pa[task] or {}).get(base["model"]) or {}
        b = (pb.get(task) or {}).get(cand["model"]) or {}
        ra, rb = a.get("per_repeat"), b.get("per_repeat")
        if not ra or not rb or len(ra) != len(rb):
            continue
        d = np.asarray(rb) - np.asarray(ra)
        out.append({"measure": f"probe {task}", "base": a["balanced_accuracy"], "candidate": b["balanced_accuracy"],
                    "diff": float(d.mean()), "repeats_up": int((d > 0).sum()), "repeats_down": int((d < 0).sum()),
                    "repeats": len(d)})
    return out


def render(rows: list[dict], probes: list[dict], base_name: str, cand_name: str, boot: int) -> str:
    lines = [f"Paired comparison: {cand_name} (candidate) against {base_name} (base); 95 % intervals from "
             f"{boot} bootstrap resamples of the test pieces.", "",
             "| measure | base | candidate | difference | 95 % interval | verdict |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['measure']} | {r['base']:.3f} | {r['candidate']:.3f} | {100 * r['diff']:+.1f} pt | "
                     f"[{100 * r['ci95'][0]:+.1f}, {100 * r['ci95'][1]:+.1f}] | {r['verdict']} |")
    for r in probes:
        lines.append(f"| {r['measure']} | {r['base']:.3f} | {r['candidate']:.3f} | {100 * r['diff']:+.1f} pt | "
                     f"up in {r['repeats_up']}, down in {r['repeats_down']} of {r['repeats']} paired draws | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="musicality results JSON of the shipped weights")
    parser.add_argument("candidate", nargs="?", default=None,
                        help="musicality results JSON of the candidate, on the same clips (not with --evidence-reading)")
    parser.add_argument("--evidence-reading", action="store_true",
                        help="compare the one report's bar record with its own evidence reading (base: the evidence)")
    parser.add_argument("--boot", type=int, default=2000, help="bootstrap resamples of the pieces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write the table (.md) and the rows (.json beside it)")
    parser.add_argument("--exclude-clips-of", default=None, metavar="REPORT",
                        help="leave out the clips another musicality results JSON holds (e.g. heldout-v2's within heldout-v3)")
    args = parser.parse_args(argv)
    if args.boot < 100:
        parser.error(f"--boot={args.boot}: expected at least 100 resamples")
    if args.out is not None and not args.out.endswith(".md"):
        # the rows go beside it with .json in place of .md (a name without it, such as
        # '...-py3.11-...', would lose everything after its last dot)
        parser.error(f"--out={args.out!r}: expected a path ending in .md")
    if (args.candidate is None) != args.evidence_reading:
        parser.error("expected BASE CANDIDATE, or one report with --evidence-reading")
    if args.evidence_reading:
        cand = load_report(args.base)
        base = evidence_reading(cand)
        base_name, cand_name = f"{args.base} (evidence reading)", args.base
    else:
        base, cand = load_report(args.base), load_report(args.candidate)
        check_distinct(base, cand, args.base, args.candidate)
        base_name, cand_name = args.base, args.candidate
    excluded = None
    if args.exclude_clips_of:
        other = load_report(args.exclude_clips_of).get("per_clip")
        if not other:
            raise SystemExit(f"--exclude-clips-of={args.exclude_clips_of!r}: the report has no per_clip records, "
                             "so it names no clips to leave out; expected a musicality.py report with its .clips.json.gz")
        drop = {r["clip"] for r in other}
        n = len(base.get("per_clip") or [])
        base, cand = without_clips(base, drop), without_clips(cand, drop)
        excluded = {"report": args.exclude_clips_of, "clips_left_out": n - len(base["per_clip"]),
                    "clips_kept": len(base["per_clip"])}
    rows, probes = compare(base, cand, args.boot, args.seed), compare_probes(base, cand)
    table = render(rows, probes, base_name, cand_name, args.boot)
    if excluded:
        table += (f"\n\nClips of {excluded['report']} left out: {excluded['clips_left_out']}; scored on the other "
                  f"{excluded['clips_kept']} (probes not compared: they were scored on every clip).")
    print(table)
    if args.out:
        from mirzoo.fileio import atomic_file, write_json_atomic

        out = Path(args.out)
        with atomic_file(out) as tmp:
            Path(tmp).write_text(table + "\n", encoding="utf-8")
        write_json_atomic(out.with_suffix(".json"), {"base": base_name, "candidate": cand_name, "boot": args.boot,
                                                     "excluded": excluded, "measures": rows, "probes": probes})
    return 0


if __name__ == "__main__":
    sys.exit(main())
