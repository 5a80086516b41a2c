"""``mirzoo.publish``: the hub folder, its model card, the dry run and the (faked) push.

Nothing here reaches the network: ``HfApi`` is replaced by a recorder in the push tests.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

import mirzoo
from mirzoo import cli, publish
from mirzoo.errors import ParameterError, UnknownModelError, WeightsError
from mirzoo.spec import ModelSpec

from test_hub import add_to_cache  # noqa: E402  (tests/ is on sys.path under pytest's rootdir)

REPO_ROOT = Path(__file__).resolve().parents[1]
FILES = {"README.md", "config.json", "metadata.json", "model.weights.h5", "mirzoo.json"}


@pytest.fixture(scope="module")
def original():
    return mirzoo.load("random-cnn")


@pytest.fixture(scope="module")
def folder(original, tmp_path_factory) -> Path:
    return publish.build_repo_folder(original, tmp_path_factory.mktemp("pub") / "random-cnn-hub", "owner/my-model")


@pytest.fixture
def finetuned(original, tmp_path) -> Path:
    """A saved model directory that looks fine-tuned: new name, training data and metrics."""
    d = original.save(tmp_path / "my-finetuned")
    meta = json.loads((d / "mirzoo.json").read_text())
    meta["name"] = "my-finetuned"
    meta["entry"]["pretrained"] = True
    meta["entry"]["training"] = {"data": ["owner/bach-chorales"], "notes": "Fine-tuned for 3 epochs."}
    meta["entry"]["metrics"] = {"roc_auc": {"value": 0.91234, "split": "test", "n": 120}, "loss": 0.2}
    (d / "mirzoo.json").write_text(json.dumps(meta))
    return d


def front_matter(card: str) -> dict:
    yaml = pytest.importorskip("yaml")
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


REAL_HFAPI = huggingface_hub.HfApi  # before any test replaces it


def _bind_to_hfapi(method: str, *args, **kwargs) -> dict:
    """Bind a call to the real ``HfApi.<method>`` signature: a misnamed or missing argument is a TypeError."""
    bound = inspect.signature(getattr(REAL_HFAPI, method)).bind(None, *args, **kwargs)
    return {k: v for k, v in bound.arguments.items() if k not in ("self", "kwargs")}


class RecordingApi:
    """Stands in for ``huggingface_hub.HfApi``: records calls, returns a commit.

    Every call is bound to the real ``HfApi`` signature first, so an argument the real
    client does not take fails here as it would against the hub.
    """

    calls: list = []
    commit = "a" * 40

    def __init__(self, *args, **kwargs):
        RecordingApi.calls.append(("init", _bind_to_hfapi("__init__", *args, **kwargs).get("token")))

    def create_repo(self, *args, **kwargs):
        kwargs = _bind_to_hfapi("create_repo", *args, **kwargs)
        RecordingApi.calls.append(("create_repo", kwargs.pop("repo_id"), kwargs))

    def upload_folder(self, *args, **kwargs):
        kwargs = _bind_to_hfapi("upload_folder", *args, **kwargs)
        files = sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())
        RecordingApi.calls.append(("upload_folder", kwargs.pop("repo_id"), files, kwargs))
        return argparse.Namespace(oid=RecordingApi.commit)

    def create_tag(self, *args, **kwargs):
        kwargs = _bind_to_hfapi("create_tag", *args, **kwargs)
        RecordingApi.calls.append(("create_tag", kwargs["repo_id"], kwargs["tag"], kwargs.get("revision")))


@pytest.fixture
def online(monkeypatch):
    import huggingface_hub

    RecordingApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("MIRZOO_OFFLINE", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    return RecordingApi


@pytest.fixture
def no_network(monkeypatch):
    import huggingface_hub

    class Refuse:
        def __init__(self, *a, **k):
            raise AssertionError("a dry run must not touch the hub")

    monkeypatch.setattr(huggingface_hub, "HfApi", Refuse)


# -- the folder ----------------------------------------------------------------------------------


def test_folder_layout_and_mirzoo_json(folder):
    assert {p.name for p in folder.iterdir()} == FILES
    meta = json.loads((folder / "mirzoo.json").read_text())
    assert meta["name"] == "random-cnn"
    assert meta["entry"]["hub"] == {"repo_id": "owner/my-model", "revision": None}
    assert set(meta["files"]) == {"config.json", "metadata.json", "model.weights.h5"}
    for name, record in meta["files"].items():
        data = (folder / name).read_bytes()
        assert record == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert meta["entry"]["weights"]["sha256"] == meta["files"]["model.weights.h5"]["sha256"]


def test_model_card(folder):
    card = (folder / "README.md").read_text()
    fm = front_matter(card)
    assert fm["library_name"] == "keras" and fm["license"] == "mit"
    assert "mirzoo" in fm["tags"] and "random-weights" in fm["tags"] and fm["datasets"] == []
    for section in ("## Training data", "## Metrics", "## Intended use", "## Limitations", "## Citation"):
        assert section in card
    assert "Pons" in card  # the manifest's references
    assert 'mirzoo.load("hf://owner/my-model@' in card


def test_card_of_a_finetuned_directory(finetuned, tmp_path):
    out = publish.build_repo_folder(finetuned, tmp_path / "out", "owner/my-model", license="CC-BY-4.0")
    card = (out / "README.md").read_text()
    fm = front_matter(card)
    assert fm["license"] == "cc-by-4.0" and fm["datasets"] == ["owner/bach-chorales"]
    assert "| roc_auc | 0.9123 | split: test; n: 120 |" in card and "| loss | 0.2 |" in card
    assert "Fine-tuned for 3 epochs." in card and "Derived from the mirzoo model `random-cnn`" in card
    assert json.loads((out / "mirzoo.json").read_text())["name"] == "my-finetuned"
    entry = json.loads((out / "mirzoo.json").read_text())["entry"]
    unusual = publish.model_card(ModelSpec.from_entry("x", dict(entry, license="Custom")), "o/x")
    assert front_matter(unusual)["license"] == "other" and front_matter(unusual)["license_name"] == "Custom"


def test_card_of_a_shipped_training_record():
    """Training time, hardware and command, grouped split metrics and a second head all reach the card."""
    entry = json.loads(json.dumps(mirzoo.model_info("dense-frame")))
    entry["training"].update(train_minutes=12.5, hardware="x86_64, 2 CPU cores, no GPU", best_epoch=3,
                             command="python -m training.train --model dense-frame --ship")
    entry["metrics"] = {"test_fluidr3": {"frame_f1": 0.87, "n_frames": 1000, "tags_roc_auc_macro": 0.8,
                                         "tags_n_clips": 10},
                        "how": "frame-level pitch-class activity"}
    entry["layers"]["tags"] = 2
    entry["aux_heads"] = [{"output": "tags", "labels": ["instrument:piano", "style:folk"], "activation": "sigmoid"}]
    card = publish.model_card(ModelSpec.from_entry("dense-frame", entry), "o/dense-frame")
    assert "Training took 12.5 min on x86_64, 2 CPU cores, no GPU (best epoch 3 on the validation split)." in card
    assert "python -m training.train --model dense-frame --ship\n```" in card
    assert "| test_fluidr3: frame_f1 | 0.87 | n_frames: 1000; tags_n_clips: 10 |" in card
    assert "| test_fluidr3: tags_roc_auc_macro | 0.8 |" in card and "| test_fluidr3: n_frames" not in card
    assert "\nframe-level pitch-class activity\n" in card
    assert 'Second head `tags` (2 labels, read with `m.tag(audio, head="tags")`): `instrument:piano`' in card


def test_published_folder_loads_back_identically(folder, original):
    import keras

    loaded = mirzoo.load(str(folder))
    plain = keras.saving.load_model(str(folder))  # Keras alone (mirzoo's layers are registered by now)
    x = np.random.default_rng(1).standard_normal((2, original.patch_samples)).astype("float32")
    want = {k: keras.ops.convert_to_numpy(v) for k, v in original.model(x).items()}
    for model in (loaded.model, plain):
        got = {k: keras.ops.convert_to_numpy(v) for k, v in model(x).items()}
        assert set(got) == set(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_published_folder_loads_from_the_hub_cache(folder, original, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = add_to_cache(cache, "owner/my-model", folder, refs=("v1",))
    m = mirzoo.load("hf://owner/my-model@v1")
    assert all(np.array_equal(a, b) for a, b in zip(m.model.get_weights(), original.model.get_weights()))
    config = (cache / "models--owner--my-model" / "snapshots" / commit / "config.json").resolve()
    config.write_text(config.read_text().replace('"random_cnn"', '"random_cnn2"', 1))
    with pytest.raises(WeightsError, match="file 'config.json'.*fails its sha256 check"):
        mirzoo.load("hf://owner/my-model@v1")


def test_build_errors(folder, finetuned, tmp_path):
    with pytest.raises(ParameterError, match="'owner/my/model' is not a Hugging Face repo id"):
        publish.build_repo_folder(finetuned, tmp_path / "a", "owner/my/model")
    with pytest.raises(ParameterError, match="already exists"):
        publish.build_repo_folder(finetuned, folder, "owner/my-model")
    with pytest.raises(ParameterError, match="no mirzoo.json"):
        publish.build_repo_folder(tmp_path, tmp_path / "b", "owner/my-model")
    with open(finetuned / "model.weights.h5", "ab") as f:
        f.write(b"x")
    with pytest.raises(WeightsError, match="fails its sha256 check"):
        publish.build_repo_folder(finetuned, tmp_path / "c", "owner/my-model")
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.*"))  # nothing half-written


# -- command line --------------------------------------------------------------------------------


def test_dry_run(finetuned, tmp_path, capsys, no_network, monkeypatch):
    out = tmp_path / "hub-folder"
    assert cli.publish_main([str(finetuned), "--repo", "owner/my-model", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name in FILES:
        assert name in text and str((out / name).stat().st_size) in text
    assert "dry run: nothing uploaded" in text
    # A second dry run replaces its own previous build; an unrelated folder is kept.
    assert cli.publish_main([str(finetuned), "--repo", "owner/my-model", "--out", str(out)]) == 0
    assert cli.publish_main([str(finetuned), "--repo", "owner/my-model", "--out", str(finetuned)]) == 2
    assert "already exists" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    from training.publish import main as training_main

    assert training_main([str(finetuned), "--repo", "owner/my-model"]) == 0
    assert (tmp_path / "my-model-hub" / "README.md").is_file()


def test_add_cli_commands_registers_publish(finetuned, tmp_path, capsys, no_network):
    parser = argparse.ArgumentParser(prog="mirzoo")
    cli.add_publish_arguments(parser.add_subparsers(dest="command", required=True).add_parser("publish"))
    args = parser.parse_args(["publish", str(finetuned), "--repo", "owner/my-model", "--out", str(tmp_path / "o")])
    assert args.command == "publish" and args.func(args) == 0
    assert "dry run" in capsys.readouterr().out


def test_push_uploads_tags_and_pins_the_manifest(online, tmp_path, capsys, monkeypatch):
    manifests = []
    for name in ("weights_manifest.json", "package_manifest.json"):
        shutil.copyfile(REPO_ROOT / "mirzoo" / "weights_manifest.json", tmp_path / name)
        manifests.append(tmp_path / name)
    monkeypatch.setattr(publish, "manifest_paths", lambda: list(manifests))
    argv = ["random-cnn", "--repo", "owner/random-cnn", "--out", str(tmp_path / "o"), "--push", "--tag", "v1"]
    assert cli.publish_main(argv + ["--update-manifest"]) == 0
    text = capsys.readouterr().out
    commit = online.commit
    assert f"pushed owner/random-cnn: commit {commit}" in text and "hf://owner/random-cnn@v1" in text
    kinds = [c[0] for c in online.calls]
    assert kinds == ["init", "create_repo", "upload_folder", "create_tag"]
    assert online.calls[0] == ("init", "hf_test_token")
    assert online.calls[1][2]["exist_ok"] is True
    assert set(online.calls[2][2]) == FILES
    assert online.calls[3] == ("create_tag", "owner/random-cnn", "v1", commit)
    assert online.calls[2][3]["commit_message"] == "Upload mirzoo model random-cnn"
    for path in manifests:
        entry = json.loads(path.read_text())["models"]["random-cnn"]
        assert entry["hub"] == {"repo_id": "owner/random-cnn", "revision": commit}
        monkeypatch.setenv("MIRZOO_MANIFEST", str(path))
        assert mirzoo.model_info("random-cnn")["hub"]["revision"] == commit  # still a valid manifest


def test_recording_api_refuses_arguments_the_real_hfapi_does_not_take(online):
    api = online(token="t")
    with pytest.raises(TypeError):
        api.create_repo("owner/m", privat=True)  # misspelt keyword
    with pytest.raises(TypeError):
        api.upload_folder(repo_id="owner/m")  # folder_path is required
    with pytest.raises(TypeError):
        api.create_tag("owner/m", name="v1")  # the real keyword is tag=
    api.create_tag("owner/m", tag="v1", revision="b" * 40)
    assert online.calls == [("init", "t"), ("create_tag", "owner/m", "v1", "b" * 40)]


def test_push_errors(folder, online, tmp_path, monkeypatch, capsys):
    with pytest.raises(ParameterError, match="--update-manifest needs --push"):
        publish.publish_model(folder, "o/m", update_manifest_entry=True)
    with pytest.raises(UnknownModelError, match="'my-finetuned' is not in the manifest"):
        publish.update_manifest("my-finetuned", "o/m", "a" * 40, paths=[REPO_ROOT / "weights_manifest.json"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(publish.PublishError, match="offline mode is on"):
        publish.push(folder, "owner/my-model")
    out = tmp_path / "never-built"
    assert cli.publish_main([str(folder), "--repo", "o/m", "--out", str(out), "--push"]) == 2
    assert "offline mode is on" in capsys.readouterr().err and not out.exists()
    assert online.calls == []


def test_committed_model_cards_follow_the_manifest():
    """docs/model-cards/ holds each model's card as mirzoo publish would write it (tools/model_cards.py)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("model_cards", root / "tools" / "model_cards.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for name, text in tool.cards().items():
        path = root / "docs" / "model-cards" / f"{name}.md"
        assert path.exists(), f"no card for {name}: run python tools/model_cards.py"
        assert path.read_text(encoding="utf-8") == text, f"{path} is out of date: run python tools/model_cards.py"


def test_card_describes_a_downbeat_model_record():
    from training.musical import drop_bar_model

    entry = json.loads(json.dumps(mirzoo.model_info("tcn-music")))
    drop_bar_model(entry)  # the shipped entry's bar model (and its metrical layer) has a paragraph of its own
    record = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                         / "downbeat_model-session19-candidate.json").read_text())
    card = publish.model_card(ModelSpec.from_entry("tcn-music", dict(entry, downbeat_model=record)), "o/tcn-music")
    assert ("Bars: `analyze()` chooses the bar length (2, 3, 4 beats) and the downbeat phase together, with a small "
            "network (16 tanh units)") in card
    assert "downbeat F-measure 0.7452 on 755 valid clips, against 0.6467 for the downbeat evidence alone." in card
    assert "Bars:" not in publish.model_card(ModelSpec.from_entry("tcn-music", entry), "o/tcn-music")


def test_card_describes_a_profiles_clip_key_record():
    entry = json.loads(json.dumps(mirzoo.model_info("tcn-music")))
    record = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results"
                         / "clip_key-session33-profiles-candidate.json").read_text())
    card = publish.model_card(ModelSpec.from_entry("tcn-music", dict(entry, clip_key=record)), "o/tcn-music")
    assert ("from the key head's clip mean and learnt key profiles of the `pitch_classes` head: one for the whole clip "
            "and one for its last frames (4 s)") in card
    assert ("(a transposition-equivariant logistic regression, fitted on the train clips of corpus-v2 + corpus-v2-mix + "
            "corpus-v2-gmbank (6442) for the profiles and the valid clips of") in card
    assert ("MIREX weighted score cross-validated by piece 0.788 (0.7721 for the key and chord heads' regression on the "
            "same folds), against 0.7605 for the key head's clip mean alone; fitted in 351.3 s on x86_64, 2 CPU cores, "
            "no GPU.") in card
    assert "learnt key profiles" not in publish.model_card(ModelSpec.from_entry("tcn-music", entry), "o/tcn-music")


def test_card_describes_a_bar_model_record():
    import numpy as np

    from mirzoo.spec import BAR_MODEL_FORM
    from mirzoo.tasks.bar_model import BAR_CLASSES
    from mirzoo.tasks.clip_heads import encode_array

    entry = json.loads(json.dumps(mirzoo.model_info("tcn-music")))
    d, hidden, units = 6 + 128 + 12, 2, 3
    shapes = {"mean": (d,), "scale": (d,), "dense_kernel": (d, hidden), "dense_bias": (hidden,),
              "output_kernel": (2 * units, 9), "output_bias": (9,)}
    for side in ("forward", "backward"):
        shapes.update({f"{side}_kernel": (hidden, 3 * units), f"{side}_recurrent": (units, 3 * units),
                       f"{side}_bias": (2, 3 * units)})
    record = {"form": BAR_MODEL_FORM, "sources": ["beat_features", "embedding", "pitch_classes"],
              "classes": [list(c) for c in BAR_CLASSES], **{k: encode_array(np.ones(s)) for k, s in shapes.items()},
              "settings": {"units": units}, "fitted_on": "corpus-v3 split train, one clip in 3: 3000 clips",
              "valid": {"clips_with_downbeats": 1295, "downbeat_f": 0.797, "downbeat_f_evidence": 0.7556,
                        "time_signature": 0.709, "time_signature_evidence": 0.6602}}
    card = publish.model_card(ModelSpec.from_entry("tcn-music", dict(entry, bar_model=record)), "o/tcn-music")
    assert ("Bars: `analyze()` reads the bar length (2, 3, 4 beats) and the downbeat phase with a bidirectional GRU "
            "over the tracked beats (3 units each way), from the downbeat and beat evidence at each beat and the means "
            "of `embedding`, `pitch_classes` over each beat's interval") in card
    assert ("fitted on corpus-v3 split train, one clip in 3: 3000 clips; on 1295 valid clips, downbeat F-measure 0.797 "
            "against 0.7556 for the downbeat evidence alone, time signature 0.709 against 0.6602.") in card
    # with the fit's seconds, the card says how long it took and on what
    timed = dict(record, seconds={"inputs": 496.1, "fit": 147.9})
    entry["training"]["hardware"] = "x86_64, 2 CPU cores, no GPU"
    card = publish.model_card(ModelSpec.from_entry("tcn-music", dict(entry, bar_model=timed)), "o/tcn-music")
    assert ("3000 clips in 11 min on x86_64, 2 CPU cores, no GPU (496 s for the features, 148 s for the network); "
            "on 1295 valid clips") in card
    # the metrical layer the record gives, where the entry names it (the shipped one does)
    metrical = ("The record also gives the `metrical` layer (21 values a frame): the record's probabilities of its 9 "
                "(beats per bar, position) classes at the tracked beat that holds the frame, then the meter head's;")
    assert metrical in card and "metrical" in entry["layers"]
    without = dict(entry, layers={k: v for k, v in entry["layers"].items() if k != "metrical"},
                   all_layers=[layer for layer in entry["all_layers"] if layer != "metrical"])
    assert metrical not in publish.model_card(ModelSpec.from_entry("tcn-music", dict(without, bar_model=timed)), "o/tcn-music")
