"""The pieces of the layered package: ModelSpec parsing, windowing plans, argument checks, a light CLI."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import mirzoo
from mirzoo._checks import valid_int, valid_number, valid_pool
from mirzoo.embeddings import POOLS
from mirzoo.errors import ManifestError, ParameterError
from mirzoo.inference.windows import ClipPlan, FramePlan, clip_patches, cut, frame_margin, pad_for_centres
from mirzoo.spec import ModelSpec
from mirzoo.zoo.manifest import PACKAGE_MANIFEST, get_entry, get_spec


def _entry(name):
    return json.loads(PACKAGE_MANIFEST.read_text())["models"][name]


# -- ModelSpec ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", mirzoo.list_models())
def test_spec_derived_values_match_the_manifest(name):
    entry = _entry(name)
    spec = ModelSpec.from_entry(name, entry)
    assert spec.name == name and spec.sample_rate == entry["sample_rate"]
    assert spec.is_clip == (entry["output"] == "clip") and spec.is_frame == (entry["output"] == "frame")
    assert spec.hop_length == entry["config"]["frontend"]["hop_length"]
    if spec.is_clip:
        assert spec.patch_samples == entry["config"]["patch_samples"]
        assert spec.patch_hop_samples == round(entry["patch_hop_seconds"] * entry["sample_rate"])
    else:
        assert spec.chunk_frames == round(entry["patch_seconds"] * entry["sample_rate"] / spec.hop_length)
    heads = ([entry["head"]] if entry.get("head") else []) + list(entry.get("aux_heads") or [])
    assert spec.heads == {h["output"]: h["labels"] for h in heads}
    assert spec.labels == (entry["head"]["labels"] if entry.get("head") else None)
    assert spec.embedding_dim == entry["layers"][entry["default_layer"]]
    assert spec.to_entry() == entry  # nothing lost, and a copy
    assert spec.to_entry() is not spec.to_entry()


def test_spec_is_frozen_and_parsed_once_per_extractor():
    spec = get_spec("random-cnn")
    with pytest.raises(AttributeError):
        spec.sample_rate = 8000
    with pytest.raises(TypeError):
        spec.layers["embedding"] = 1
    m = mirzoo.load("random-cnn")
    assert m.spec == spec and m.patch_samples == spec.patch_samples and m.heads == spec.heads


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda e: e.pop("license"), "'random-cnn' lacks the required field 'license'"),
        (lambda e: e.update(sample_rate="16k"), "field 'sample_rate' must be int, got str: '16k'"),
        (lambda e: e.update(sample_rate=True), "field 'sample_rate' must be int, got bool: True"),
        (lambda e: e.update(sample_rate=-1), "sample_rate=-1 must be a positive integer"),
        (lambda e: e.update(output="song"), "output='song' must be 'clip' or 'frame'"),
        (lambda e: e["layers"].update(embedding=0), "layers['embedding']=0 must be a positive integer"),
        (lambda e: e.update(default_layer="nope"), "default_layer 'nope' is not in its layers"),
        (lambda e: e.update(patch_hop_seconds=0), "clip models need a positive 'patch_hop_seconds', got 0"),
        (lambda e: e["config"].update(patch_samples=1), "config.patch_samples=1 does not match"),
        (lambda e: e["config"]["frontend"].update(hop_length=0), "config.frontend.hop_length=0 must be a positive"),
        (lambda e: e["weights"].update(kind="zip"), "weights.kind='zip' must be 'seeded' or 'file'"),
        (lambda e: e["weights"].update(seed="1"), "seeded weights need an integer 'seed', got '1'"),
        (lambda e: e.update(hub="owner/repo"), "hub='owner/repo' must be an object"),
    ],
)
def test_spec_errors_name_the_key_and_the_value(change, message):
    entry = _entry("random-cnn")
    change(entry)
    with pytest.raises(ManifestError, match=__import__("re").escape(message)):
        ModelSpec.from_entry("random-cnn", entry)


def test_spec_of_an_unknown_name_suggests_close_matches():
    with pytest.raises(mirzoo.UnknownModelError, match="random-cnn"):
        get_spec("random-cn")
    assert get_entry("random-cnn")["name"] == "random-cnn"


# -- windowing plans --------------------------------------------------------------------------------


def _old_clip_windows(n, patch, hop):
    """The clip windows of mirzoo before the windowing plans (Extractor._clip_windows)."""
    count = 1 if n <= patch else 1 + math.ceil((n - patch) / hop)
    return np.arange(count) * hop


def _old_frame_chunks(n, hop, chunk_frames, margin):
    """The frame chunks of mirzoo before the windowing plans (Extractor._frame_chunks)."""
    total = 1 + n // hop
    chunks = []
    for first in range(0, total, chunk_frames):
        keep = min(chunk_frames, total - first)
        left = max(0, (first - margin) * hop)
        right = min(n, (first + keep + margin) * hop)
        chunks.append((left, right, first - left // hop, keep))
    return chunks


@pytest.mark.parametrize("n", [0, 1, 47999, 48000, 48001, 71999, 72000, 72001, 16000 * 60 + 7])
def test_clip_plan_equals_the_old_windows(n):
    plan = ClipPlan(48000, 24000, 16000)
    np.testing.assert_array_equal(plan.starts(n), _old_clip_windows(n, 48000, 24000))
    assert plan.count(n) == len(plan.starts(n)) >= 1
    np.testing.assert_allclose(plan.timestamps(3), [1.5, 3.0, 4.5])


@pytest.mark.parametrize("n", [0, 100, 319, 320, 160000, 160321, 16000 * 37 + 5])
def test_frame_plan_equals_the_old_chunks_and_covers_every_frame(n):
    """The old chunks, but for the last window of a signal longer than one window: it ends where it
    did and starts earlier, spanning the first window's frames (so long signals share window lengths)."""
    margin = frame_margin(kernel_length=2048, hop_length=320, context_frames=7)
    plan = FramePlan(320, 500, margin, 2048, 16000)
    chunks = plan.chunks(n)
    old = _old_frame_chunks(n, 320, 500, margin)
    assert [tuple(c)[1:] for c in chunks][:-1] == [c[1:] for c in old][:-1] or len(chunks) == 1
    for c, (left, right, skip, keep) in zip(chunks, old):
        assert (c.right, c.keep, plan.first_frame(c)) == (right, keep, left // 320 + skip) and c.left <= left
        assert plan.first_frame(c) - c.left // 320 >= (margin if c.left > 0 else 0)  # context kept
    if len(chunks) > 1:  # windows ending at the end span as many frames as the first or the middle ones
        spans = {plan.n_frames(c.right - c.left) for c in chunks}
        assert plan.n_frames(chunks[0].right - chunks[0].left) == min(500 + margin + 1, plan.n_frames(n))
        assert spans <= {min(500 + margin + 1, plan.n_frames(n)), 500 + 2 * margin + 1}
    kept = np.concatenate([np.arange(plan.first_frame(c), plan.first_frame(c) + c.keep) for c in chunks])
    np.testing.assert_array_equal(kept, np.arange(plan.n_frames(n)))  # every frame once, in order
    assert all(plan.window(np.zeros(n, np.float32), c).shape[0] >= 2048 for c in chunks)


@pytest.mark.parametrize("n", [0, 100, 319, 320, 160000, 160321, 16000 * 37 + 5])
def test_frame_plan_without_shared_lengths_is_the_old_plan(n):
    margin = frame_margin(kernel_length=2048, hop_length=320, context_frames=7)
    plan = FramePlan(320, 500, margin, 2048, 16000, pad_constant=True, share_lengths=False)
    assert [tuple(c) for c in plan.chunks(n)] == _old_frame_chunks(n, 320, 500, margin)
    y = np.ones(n, np.float32)
    for c in plan.chunks(n):
        assert plan.window(y, c).shape[0] == max(c.right - c.left, 2048)


@pytest.mark.parametrize("n", [0, 100, 2047, 160000, 160321, 16000 * 37 + 5, 16000 * 41 + 313,
                               (1000 + 3) * 320 + 17, (1500 + 5) * 320])
def test_constant_padded_frame_plan_uses_few_window_lengths_and_adds_no_frame(n):
    margin = frame_margin(kernel_length=2048, hop_length=320, context_frames=7)
    plan = FramePlan(320, 500, margin, 2048, 16000, pad_constant=True)
    y = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    lengths = set()
    for c in plan.chunks(n):
        w = plan.window(y, c)
        lengths.add(w.shape[0])
        np.testing.assert_array_equal(w[: c.right - c.left], y[c.left : c.right])  # the audio, then zeros
        assert not w[c.right - c.left:].any()
        assert w.shape[0] == 2048 or plan.n_frames(w.shape[0]) == plan.n_frames(c.right - c.left)  # no extra frame
        assert w.shape[0] % 320 in (0, 319) or w.shape[0] == 2048
        size = c.right - c.left
        assert w.shape[0] == max(size if size % 320 == 0 else (size // 320 + 1) * 320 - 1, 2048)
    if plan.n_frames(n) > 500 + margin + 1:  # the first, middle and end windows of any long signal
        assert lengths <= {(500 + margin) * 320, (500 + 2 * margin) * 320,
                           (500 + margin + 1) * 320 - 1, (500 + 2 * margin + 1) * 320 - 1}


def test_frame_margin_is_the_old_formula():
    for kernel, hop, context in [(2048, 320, 7), (512, 256, 0), (1000, 333, 3)]:
        expected = math.ceil((kernel - kernel // 2) / hop) + context + 1
        assert frame_margin(kernel, hop, context) == expected


def test_cut_clip_patches_and_centred_windows():
    y = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(cut(y, 8, 4), [8, 9, 0, 0])
    patches = clip_patches(y, 4, 3)
    np.testing.assert_array_equal(patches, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    np.testing.assert_array_equal(ClipPlan(4, 3, 1).patches(y), patches)
    padded = pad_for_centres(y[None], 4)  # window centred on sample c is padded[c : c + 4]
    np.testing.assert_array_equal(padded[0, 0:4], [0, 0, 0, 1])
    np.testing.assert_array_equal(padded[0, 9:13], [7, 8, 9, 0])


def test_extractor_windows_follow_its_plan():
    m = mirzoo.load("random-cnn")
    y = np.random.default_rng(0).standard_normal(16000 * 5).astype(np.float32) * 0.1
    e = m.extract(y, sr=16000)
    assert len(e) == m.plan.count(y.shape[0])
    np.testing.assert_allclose(e.timestamps, m.plan.timestamps(len(e)))
    windows = [m.plan.window(y, s) for s in m.plan.starts(y.shape[0])]
    direct = np.stack([o["embedding"] for o in m.run_batch(windows, ["embedding"], 16)])
    np.testing.assert_allclose(e.embeddings, direct, rtol=1e-5, atol=1e-6)


# -- argument checks ------------------------------------------------------------------------------


def test_valid_checks_name_the_argument_and_the_value():
    assert valid_int("batch_size", np.int64(3)) == 3 and type(valid_int("batch_size", np.int64(3))) is int
    for bad in (0, -1, True, 2.0, "2"):
        with pytest.raises(ParameterError, match=f"batch_size={bad!r} must be a positive integer"):
            valid_int("batch_size", bad)
    with pytest.raises(ParameterError, match="workers=-1 must be a non-negative integer or None"):
        valid_int("workers", -1, minimum=0, allow_none=True)
    assert valid_int("workers", None, minimum=0, allow_none=True) is None
    with pytest.raises(ParameterError, match="epochs=1 must be an integer >= 2"):
        valid_int("epochs", 1, minimum=2)
    with pytest.raises(ParameterError, match=r"sr=nan must be a positive number of Hz or None"):
        valid_number("sr", float("nan"), unit="Hz", allow_none=True)
    assert valid_pool(None, POOLS) is None and valid_pool("max", POOLS) == "max"
    with pytest.raises(ParameterError, match=r"pool='median' is not one of .* \(or None for per-patch"):
        valid_pool("median", POOLS)


# -- a command line that starts fast ----------------------------------------------------------------


def test_list_info_and_help_import_neither_keras_nor_tensorflow():
    code = (
        "import sys, contextlib, io\n"
        "from mirzoo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    assert main(['list']) == 0 and main(['info', 'dense-frame']) == 0 and main(['list', '--json']) == 0\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0\n"
        "assert 'cnn-tagging' in out.getvalue() and 'usage: mirzoo' in out.getvalue()\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules)\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none", out.stdout + out.stderr


# -- library code never prints; the spec follows the entry ---------------------------------------


def _writes_to_a_terminal(tree) -> list:
    """``print(...)`` calls and ``sys.stdout`` / ``sys.stderr`` uses in a parsed module."""
    import ast

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            found.append(node.lineno)
        if (isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
                and isinstance(node.value, ast.Name) and node.value.id == "sys"):
            found.append(node.lineno)
    return found


def test_only_the_cli_prints():
    import ast
    from pathlib import Path

    root = Path(mirzoo.__file__).parent
    offenders = {}
    for path in sorted(root.rglob("*.py")):
        if path.name in ("cli.py", "__main__.py"):
            continue
        lines = _writes_to_a_terminal(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            offenders[str(path.relative_to(root))] = lines
    assert offenders == {}
    # the checker itself finds what it looks for
    assert _writes_to_a_terminal(ast.parse("import sys\nprint(1)\nsys.stderr.write('x')\n")) == [2, 3]


def test_update_entry_re_parses_the_spec():
    m = mirzoo.load("random-cnn")
    m.update_entry(metrics={"validation": {"accuracy": 0.5}}, hub={"repo_id": "o/m", "revision": "v1"})
    assert m.spec.metrics["validation"] == {"accuracy": 0.5} and m.entry["metrics"]["validation"] == {"accuracy": 0.5}
    assert (m.spec.hub_repo_id, m.spec.hub_revision) == ("o/m", "v1")
    with pytest.raises(ManifestError, match="output='nope'"):
        m.update_entry(output="nope")
    assert m.spec.output == m.entry["output"] == "clip"  # a refused change leaves both as they were


def test_every_function_level_import_says_why():
    """A function-level import defers something (a heavy or optional dependency); the reason is written on the
    import, on a line of its block, on the comment line just above the block, or in a "deferred" comment at
    the top of the function."""
    import ast
    from pathlib import Path

    root = Path(mirzoo.__file__).parent
    silent = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            rows = sorted({n.lineno for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))})
            blocks, current = [], []
            for row in rows:  # imports separated by blank lines only belong to one block
                if current and any(lines[i - 1].strip() for i in range(current[-1] + 1, row)):
                    blocks.append(current)
                    current = []
                current.append(row)
            blocks += [current] if current else []
            # a comment at the top of the function that says "deferred" covers all of its imports
            head = lines[fn.lineno - 1 : fn.body[0].lineno - 1]
            if any("#" in line and "deferred" in line for line in head):
                continue
            for block in blocks:
                said = [lines[r - 1] for r in block] + [lines[block[0] - 2]]
                if not any("#" in line for line in said):
                    silent.append(f"{path.relative_to(root)}:{block[0]}")
    assert silent == []
