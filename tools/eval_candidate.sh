#!/bin/bash
# Benchmark training runs' best students side by side with the shipped models, without touching the
# package: each run is shipped into a private manifest + weights copy, which the benchmarks read through
# MIRZOO_MANIFEST / MIRZOO_WEIGHTS_DIR.
#
#   tools/eval_candidate.sh TAG "RUN_DIR:NAME [RUN_DIR:NAME ...]" [real_audio] [downstream] [finetune] [musicality] [tags]
#
# REPEATS (default 3) sets real_audio's outer-CV repeats (its per-repeat spread is several points).
# BASE (default cnn-tagging) is the shipped model measured beside the candidates (crnn-tagging for a crnn student).
# DATA (default /work/data) holds the real build (DATA/real), the teacher cache (DATA/teacher) and the
# candidates (DATA/cand/TAG: manifest.json, weights/, results/); HELDOUT (default DATA/heldout6) the
# TimGM6mb render for downstream (it must have split_key).  Default benchmark: real_audio.
set -euo pipefail
TAG=$1; PAIRS=$2; shift 2
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-/work/data}
C=$DATA/cand/$TAG
rm -rf "$C"; mkdir -p "$C/weights"
cp "$REPO"/mirzoo/weights/* "$C/weights/"
cp "$REPO/mirzoo/weights_manifest.json" "$C/manifest.json"
cd "$REPO"
NAMES=""
for p in $PAIRS; do
  RUN=${p%%:*}; NAME=${p##*:}; NAMES="$NAMES $NAME"
  PYTHONPATH="$REPO" python3 -m training.distill ship --run "$RUN" --name "$NAME" --manifest "$C/manifest.json" \
    --weights-dir "$C/weights"
done
export MIRZOO_MANIFEST=$C/manifest.json MIRZOO_WEIGHTS_DIR=$C/weights PYTHONPATH=$REPO
for b in "${@:-real_audio}"; do
  case $b in
    real_audio) python3 benchmarks/real_audio.py --data "$DATA/real" --teacher-cache "$DATA/teacher" \
                  --models ${BASE:-cnn-tagging} random-cnn $NAMES --repeats "${REPEATS:-3}" --out "$C/results" ;;
    downstream) python3 benchmarks/downstream.py --data "${HELDOUT:-$DATA/heldout6}" --models ${BASE:-cnn-tagging} random-cnn $NAMES --no-oracles --out "$C/results" ;;
    finetune) python3 benchmarks/finetune.py --real "$DATA/real" --models ${BASE:-cnn-tagging} random-cnn $NAMES \
                --seeds 0 1 2 --out "$C/results" ;;
    musicality) python3 benchmarks/musicality.py --probe-models ${BASE:-cnn-tagging} $NAMES --out "$C/musicality" ;;
    tags) python3 benchmarks/tags.py --models ${BASE:-cnn-tagging} $NAMES --out "$C/results" ;;
    *) echo "unknown benchmark '$b': expected real_audio, downstream, finetune, musicality or tags" >&2; exit 2 ;;
  esac
done
