#!/bin/bash
# Makes a Python 3.7 venv with musicnn 0.1.0 (ISC licence; MTT/MSD weights ship inside the package) and the
# exact TensorFlow 2.7 stack it runs on, for side-by-side benchmarks and as a teacher for distillation.
#   usage: tools/setup-musicnn.sh [VENV_DIR]      (default ~/.cache/mirzoo-peers/musicnn)
# Then:   VENV_DIR/bin/python -c "from musicnn.extractor import extractor; ..."
# musicnn's own extractor rebuilds its TF graph on every call; build the graph once (tf.compat.v1 session,
# musicnn.models.define_model + a Saver restore of <package>/MTT_musicnn/) when timing it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$HOME/.cache/mirzoo-peers/musicnn}
py37=$(ls -d "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.7*/bin/python 2>/dev/null | head -1)
[ -n "$py37" ] || { echo "no Python 3.7 under pyenv: pyenv install 3.7" >&2; exit 1; }
"$py37" -m venv "$venv"
"$venv/bin/pip" install -q -U pip
"$venv/bin/pip" install -q -r "$here/musicnn-py37-requirements.txt"
"$venv/bin/python" -c "import musicnn, tensorflow as tf; print('musicnn venv ready:', '$venv', 'tf', tf.__version__)"
