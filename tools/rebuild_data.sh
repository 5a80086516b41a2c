#!/usr/bin/env bash
# Rebuild every data set the training programmes and the musicality / real-audio benchmarks read,
# in the order the work needs them, on a fresh machine. Every step is deterministic (seed 0) and
# resumable: rerun the script after an interruption and finished clips are skipped.
#   usage: tools/rebuild_data.sh [DATA_DIR] [STEP ...]      (default /work/data, all steps)
#   steps: packages heldout real musicnn teacher corpus mix gmbank cache corpus3 cache3 heldout3 heldout4 heldout5 heldoutopl3
#   (corpus3 and cache3, corpus v2 extended to 90 h with the pieces past its 30-h cut, are not in the
#   default list: about 1 h of rendering and 1.5 h of features on 2 cores), nor is heldout3 (heldout-v2 run on to
#   10 h: 1539 TimGM6mb clips of 1051 test pieces, heldout-v2's 444 among them; about 4 min on 2 cores), heldout4
#   (the same settings with render seed 1: the same test split, excerpted and augmented afresh), heldout5 (render
#   seed 2) or heldoutopl3
#   (heldout-v2's settings and clips with the OPL3 FM soundfont, test only: a second unseen render)
#   e.g.   nohup tools/rebuild_data.sh /work/data > rebuild.log 2>&1 &
# About 1.5-2 hours on 2 cores in all (corpus v2 and its two mixes are most of it); the recipes and
# why they look like this are in training/README.md ("Corpus v2", "Real recordings").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
data=${1:-/work/data}
shift || true
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(packages heldout real musicnn teacher corpus mix gmbank cache)
mkdir -p "$data"
cd "$here"
cache="$data/score-cache"
build() {  # config out hours workers [more build flags]
  python3 -m training.corpus build --config "training/configs/$1" --out "$data/$2" --hours "$3" \
    --workers "$4" --cache-dir "$cache" --no-progress "${@:5}"
}
for step in "${steps[@]}"; do
  echo "== $step ($(date -u +%H:%M:%S))"
  case "$step" in
    packages)
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends fluidsynth libfluidsynth3 fluid-soundfont-gm \
        timgm6mb-soundfont musescore-general-soundfont-small csound-soundfont opl3-soundfont \
        ufoai-music supertuxkart-data hedgewars-data megaglest-data freedroidrpg-data supertux-data >/dev/null
      python3 -m pip install -q -e ".[corpus]" ;;
    heldout) build corpus-heldout.json heldout-v2 3 2 ;;          # musicality benchmark (TimGM6mb: never trained on)
    real) python3 -m training.real build --out "$data/real" ;;    # the six allowed packages only
    musicnn) bash tools/setup-musicnn.sh ;;                       # Python 3.7 venv: teacher and peer
    teacher)
      for split in valid test train; do
        python3 -m training.teacher --real "$data/real" --cache "$data/teacher" --split "$split"
      done ;;
    corpus) build corpus.json corpus-v2 30 2 ;;
    mix) build corpus-mix.json corpus-v2-mix 12 2 ;;
    gmbank) build corpus-mix-gmbank.json corpus-v2-gmbank 12 2 ;;
    cache)
      python3 -m training.musical cache --corpus "$data/corpus-v2" --corpus "$data/corpus-v2-mix" \
        --corpus "$data/corpus-v2-gmbank" --out "$data/cache-music2" --splits train,valid ;;
    corpus3)  # the same settings as corpus-v2, so its first 30 h are corpus-v2's clips: hard-linked, not rendered again
      [ -e "$data/corpus-v3" ] || { [ -d "$data/corpus-v2" ] && cp -al "$data/corpus-v2" "$data/corpus-v3"; } || true
      build corpus.json corpus-v3 90 2 ;;
    heldout4)  # heldout-v3's settings rendered afresh (render seed 1; the same split): new excerpts, and test
      # pieces v3 does not reach; session 34's fresh data for ship39, about 4 min on 2 cores
      build corpus-heldout.json heldout-v4 10 2 --render-seed 1 ;;
    heldout5)  # the same with render seed 2: session 35's fresh data for ship40, about 4 min on 2 cores
      build corpus-heldout.json heldout-v5 10 2 --render-seed 2 ;;
    heldoutopl3) build corpus-heldout.json heldout-opl3 3 2 --soundfont OPL3 ;;  # heldout-v2's settings, OPL3 FM soundfont
    heldout3)  # heldout-v2's settings run on to 10 h: its first 444 clips are heldout-v2's, hard-linked
      [ -e "$data/heldout-v3" ] || { [ -d "$data/heldout-v2" ] && cp -al "$data/heldout-v2" "$data/heldout-v3"; } || true
      build corpus-heldout.json heldout-v3 10 2 ;;
    cache3)
      python3 -m training.musical cache --corpus "$data/corpus-v3" --out "$data/cache-music3" --splits train,valid ;;
    *) echo "unknown step '$step' (steps: packages heldout real musicnn teacher corpus mix gmbank cache corpus3 cache3 heldout3 heldout4 heldout5 heldoutopl3)" >&2; exit 2 ;;
  esac
done
echo "== done ($(date -u +%H:%M:%S)): $data"
