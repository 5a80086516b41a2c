"""Loading from the Hugging Face Hub through a cache built in huggingface_hub's on-disk layout.

Every test runs offline (``HF_HUB_OFFLINE=1``) against a cache under ``tmp_path``::

    hub/models--owner--repo/blobs/<sha256>
                           /snapshots/<40-hex commit>/<file> -> ../../blobs/<sha256>
                           /refs/<branch or tag>          (holds the commit)

and goes through huggingface_hub's real ``snapshot_download`` / ``hf_hub_download``.
The one test of an unreachable network points the hub endpoint at a closed local port.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import mirzoo
from mirzoo.zoo import hub
from mirzoo.errors import ParameterError, UnknownModelError, WeightsError

REPO_ROOT = Path(__file__).resolve().parents[1]
REPO = "owner/repo"


def add_to_cache(cache: Path, repo_id: str, folder: Path, *, refs=("main",), salt: str = "") -> str:
    """Put the files of ``folder`` into ``cache`` as one commit of ``repo_id``; return the commit."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    digest = hashlib.sha1(salt.encode())
    for p in files:
        digest.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    commit = digest.hexdigest()
    snapshot = storage / "snapshots" / commit
    for p in files:
        data = p.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / p.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    for ref in refs:
        (storage / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    return commit


def blob_of(cache: Path, repo_id: str, commit: str, filename: str) -> Path:
    link = cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit / filename
    return link.resolve()


@pytest.fixture(scope="module")
def original():
    return mirzoo.load("random-cnn")


@pytest.fixture(scope="module")
def saved(original, tmp_path_factory) -> Path:
    return original.save(tmp_path_factory.mktemp("saved") / "random-cnn")


@pytest.fixture
def cache(hf_cache) -> Path:
    return hf_cache


@pytest.fixture
def repo(cache, saved) -> str:
    """``owner/repo`` cached with one commit, reachable as ``main`` and as tag ``v1``."""
    return add_to_cache(cache, REPO, saved, refs=("main", "v1"))


def same_weights(a, b) -> bool:
    wa, wb = a.model.get_weights(), b.model.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


# -- references --------------------------------------------------------------------------------


def test_parse_reference():
    assert hub.parse_reference("hf://owner/repo") == hub.HubReference("owner/repo", None)
    assert hub.parse_reference("hf://owner/repo@v1").revision == "v1"
    assert hub.parse_reference("hf://owner/repo@refs/pr/1").revision == "refs/pr/1"
    ref = hub.parse_reference("random-cnn@v1")
    assert (ref.repo_id, ref.revision, ref.name) == ("mirzoo/random-cnn", "v1", "random-cnn")
    assert str(hub.parse_reference("hf://owner/repo")) == "hf://owner/repo@main"


@pytest.mark.parametrize(
    "ref, needle",
    [
        ("hf://owner", "not a Hugging Face repo id"),
        ("hf://a/b/c@v1", "not a Hugging Face repo id"),
        ("hf://owner/repo@", "empty revision"),
        ("owner/repo@v1", "hf://owner/repo@v1"),
        ("random-cnn@", "'name@revision'"),
    ],
)
def test_parse_reference_errors(ref, needle):
    with pytest.raises(ParameterError) as info:
        hub.parse_reference(ref)
    assert needle in str(info.value) and repr(ref) in str(info.value)


def test_unknown_zoo_name_with_revision_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="random-cnn"):
        mirzoo.load("randm-cnn@v1")


def test_cache_dir_is_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert hub.cache_dir() == tmp_path / "c"


# -- loading from the cache --------------------------------------------------------------------


def test_load_by_branch_matches_the_saved_model(repo, original):
    m = mirzoo.load("hf://owner/repo@main")
    assert m.name == "random-cnn" and m.source == f"hf://owner/repo@main (commit {repo})"
    assert m.entry["hub"] == {"repo_id": REPO, "revision": repo}
    y = np.random.default_rng(0).standard_normal(16000).astype("float32")
    np.testing.assert_array_equal(m.extract(y, sr=16000).embeddings, original.extract(y, sr=16000).embeddings)


@pytest.mark.parametrize("revision", ["v1", "commit", None])
def test_load_by_tag_commit_or_default_branch(repo, original, revision):
    rev = repo if revision == "commit" else revision
    ref = f"hf://{REPO}" + (f"@{rev}" if rev else "")
    m = mirzoo.load(ref)
    assert same_weights(m, original)
    assert m.entry["hub"]["revision"] == repo


def test_branch_and_tag_follow_their_refs(cache, saved, original, tmp_path):
    first = add_to_cache(cache, REPO, saved, refs=("v1",))
    changed = tmp_path / "changed"
    original.save(changed)
    meta = json.loads((changed / "mirzoo.json").read_text())
    meta["entry"]["description"] = "second commit"
    (changed / "mirzoo.json").write_text(json.dumps(meta))
    second = add_to_cache(cache, REPO, changed, refs=("main",), salt="2")
    assert first != second
    assert mirzoo.load("hf://owner/repo@main").entry["description"] == "second commit"
    assert mirzoo.load("hf://owner/repo@v1").entry["description"] != "second commit"
    assert mirzoo.load(f"hf://owner/repo@{first}").entry["hub"]["revision"] == first


def test_zoo_name_at_revision_uses_the_manifest_repo(cache, saved, original):
    commit = add_to_cache(cache, "mirzoo/random-cnn", saved, refs=("v1",))
    m = mirzoo.load("random-cnn@v1")
    assert same_weights(m, original)
    assert m.entry["hub"] == {"repo_id": "mirzoo/random-cnn", "revision": commit}


# -- sha256 --------------------------------------------------------------------------------------


def test_tampered_blob_raises_sha256_error(cache, repo):
    blob = blob_of(cache, REPO, repo, "model.weights.h5")
    expected = hashlib.sha256(blob.read_bytes()).hexdigest()
    with open(blob, "ab") as f:
        f.write(b"tampered")
    actual = hashlib.sha256(blob.read_bytes()).hexdigest()
    with pytest.raises(WeightsError) as info:
        mirzoo.load("hf://owner/repo@v1")
    message = str(info.value)
    assert "model.weights.h5" in message and expected in message and actual in message
    assert "models--owner--repo" in message and "connected machine" in message


def test_manifest_pinned_sha256_is_checked(cache, saved, tmp_path, monkeypatch):
    commit = add_to_cache(cache, "mirzoo/random-cnn", saved)
    data = json.loads((REPO_ROOT / "mirzoo" / "weights_manifest.json").read_text())
    entry = data["models"]["random-cnn"]
    entry["hub"] = {"repo_id": "mirzoo/random-cnn", "revision": commit}
    entry["weights"] = {"kind": "file", "file": "model.weights.h5", "sha256": "0" * 64, "size": 1}
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(data))
    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifest))
    with pytest.raises(WeightsError, match="from the manifest") as info:
        mirzoo.load(f"random-cnn@{commit}")
    assert "0" * 64 in str(info.value)


def test_manifest_weight_file_resolves_through_the_cache(cache, saved, original, tmp_path, monkeypatch):
    """A bare name whose weight file is not bundled: bundled -> HF cache, sha256 from the manifest."""
    commit = add_to_cache(cache, "mirzoo/random-cnn", saved)
    weights = saved / "model.weights.h5"
    data = json.loads((REPO_ROOT / "mirzoo" / "weights_manifest.json").read_text())
    entry = data["models"]["random-cnn"]
    entry["hub"] = {"repo_id": "mirzoo/random-cnn", "revision": commit}
    entry["weights"] = {
        "kind": "file",
        "file": "model.weights.h5",
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "size": weights.stat().st_size,
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(data))
    monkeypatch.setenv("MIRZOO_MANIFEST", str(manifest))
    monkeypatch.setenv("MIRZOO_WEIGHTS_DIR", str(tmp_path / "no-bundled-weights"))
    assert same_weights(mirzoo.load("random-cnn"), original)

    entry["hub"]["revision"] = "f" * 40  # pinned commit that is not cached
    manifest.write_text(json.dumps(data))
    with pytest.raises(WeightsError) as info:
        mirzoo.load("random-cnn")
    message = str(info.value)
    assert "model.weights.h5" in message and "mirzoo/random-cnn" in message and "f" * 40 in message
    assert "offline" in message and "hf download" in message


# -- missing, unknown, offline ---------------------------------------------------------------------


def test_unknown_revision_names_repo_revision_and_cached_ones(repo):
    with pytest.raises(WeightsError) as info:
        mirzoo.load("hf://owner/repo@v9")
    message = str(info.value)
    assert "'owner/repo'" in message and "'v9'" in message
    assert "main" in message and "v1" in message and repo in message  # what is cached instead
    assert "hf download owner/repo --revision v9" in message


def test_offline_with_nothing_cached(cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("MIRZOO_OFFLINE", "1")  # mirzoo's own switch is enough: no network is tried
    with pytest.raises(WeightsError) as info:
        mirzoo.load("hf://someone/absent@v1")
    message = str(info.value)
    assert "'someone/absent'" in message and "'v1'" in message and "mirzoo.json" in message
    assert "offline mode" in message and "Nothing of someone/absent is cached" in message
    assert str(cache) in message and "HF_HOME" in message


def test_snapshot_missing_a_file(cache, repo):
    snapshot = cache / "models--owner--repo" / "snapshots" / repo
    (snapshot / "model.weights.h5").unlink()
    with pytest.raises(WeightsError, match="file 'model.weights.h5' of model repo 'owner/repo'"):
        mirzoo.load("hf://owner/repo@v1")


def test_unreachable_network_uses_the_cache(repo, original, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # closed local port: connection refused
    assert same_weights(mirzoo.load("hf://owner/repo@v1"), original)
    with pytest.raises(WeightsError, match="could not be reached"):
        mirzoo.load("hf://owner/repo@v9")


def test_two_processes_load_the_same_model_at_once(cache, repo):
    # The numpy backend starts fastest; resolving, verifying and building are the same on every backend.
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), KERAS_BACKEND="numpy", TF_CPP_MIN_LOG_LEVEL="3")
    code = "import mirzoo; m = mirzoo.load('hf://owner/repo@v1'); print(m.entry['hub']['revision'])"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
        assert out.decode().strip().splitlines()[-1] == repo


@pytest.fixture
def online_hub(monkeypatch):
    """Network allowed, but ``snapshot_download`` is a stand-in: only cache look-ups reach the real one.

    Each call is bound to the real ``snapshot_download`` signature (a misnamed argument fails).  A
    download of a repo in ``fake.serve`` (``repo_id -> folder``) puts the folder into the cache given
    by ``cache_dir``, in huggingface_hub's layout, as the commit that ``revision`` names (the
    revision is then a ref of it, unless it is that commit), and returns the snapshot; any other
    download raises ``fake.error``.
    """
    import huggingface_hub

    real = huggingface_hub.snapshot_download
    signature = inspect.signature(real)
    calls = []

    def fake(*args, **kwargs):
        arguments = signature.bind(*args, **kwargs).arguments
        repo_id, revision = arguments["repo_id"], arguments.get("revision")
        local_files_only = arguments.get("local_files_only", False)
        calls.append((revision, local_files_only))
        if local_files_only:
            return real(*args, **kwargs)
        if repo_id in fake.serve:
            cache = Path(arguments["cache_dir"])
            refs = () if revision == fake.commit_of(repo_id) else (revision,)
            commit = add_to_cache(cache, repo_id, fake.serve[repo_id], refs=refs)
            return str(cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit)
        raise fake.error

    def commit_of(repo_id):  # the commit add_to_cache gives the served folder
        return add_to_cache(Path(tempfile.mkdtemp()), repo_id, fake.serve[repo_id])

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    fake.calls, fake.serve, fake.commit_of = calls, {}, commit_of
    return fake


def _hub_error(cls, message):
    exc = cls.__new__(cls)  # the real constructors want an HTTP response
    Exception.__init__(exc, message)
    return exc


def test_online_commit_comes_from_the_cache_without_the_network(repo, original, online_hub):
    online_hub.error = AssertionError("the network must not be asked for a cached commit")
    assert same_weights(mirzoo.load(f"hf://owner/repo@{repo}"), original)
    assert online_hub.calls == [(repo, True)]


def test_online_unknown_revision_or_repo(repo, online_hub):
    from huggingface_hub.utils import RepositoryNotFoundError, RevisionNotFoundError

    online_hub.error = _hub_error(RevisionNotFoundError, "404 revision")
    with pytest.raises(WeightsError, match="model repo 'owner/repo' has no revision 'v9' on the Hugging Face Hub"):
        mirzoo.load("hf://owner/repo@v9")
    online_hub.error = _hub_error(RepositoryNotFoundError, "404 repo")
    with pytest.raises(WeightsError, match="'someone/absent' .* not found .* HF_TOKEN"):
        mirzoo.load("hf://someone/absent@main")
    assert online_hub.calls == [("v9", False), ("main", False)]  # branches and tags always ask the hub


@pytest.mark.parametrize("pin", ["tag", "commit"])
def test_online_download_at_a_pinned_revision(cache, saved, original, online_hub, pin, monkeypatch):
    online_hub.serve[REPO] = saved
    revision = "v2" if pin == "tag" else online_hub.commit_of(REPO)
    online_hub.error = AssertionError("only the served repo may be downloaded")
    m = mirzoo.load(f"hf://{REPO}@{revision}")
    commit = online_hub.commit_of(REPO)
    assert same_weights(m, original)
    assert m.entry["hub"] == {"repo_id": REPO, "revision": commit}
    assert m.source == f"hf://{REPO}@{revision}" + ("" if revision == commit else f" (commit {commit})")
    # a tag always asks the hub; a commit is looked up in the cache first (empty here), then downloaded
    assert online_hub.calls == ([("v2", False)] if pin == "tag" else [(commit, True), (commit, False)])
    snapshot = cache / "models--owner--repo" / "snapshots" / commit
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) == files
    assert all((snapshot / f).is_symlink() and (snapshot / f).resolve().parent.name == "blobs" for f in files)
    # the download landed in the real cache layout: offline, the real snapshot_download finds it
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    online_hub.calls.clear()
    assert mirzoo.load(f"hf://{REPO}@{revision}").entry["hub"]["revision"] == commit
    assert online_hub.calls == [(revision, True)]


def test_online_download_of_a_repo_that_is_not_a_mirzoo_repo(cache, saved, online_hub, tmp_path):
    other = tmp_path / "other"  # a Keras model repo without mirzoo.json
    other.mkdir()
    for name in ("config.json", "metadata.json", "model.weights.h5"):
        (other / name).write_bytes((saved / name).read_bytes())
    online_hub.serve["someone/keras-model"] = other
    with pytest.raises(WeightsError) as info:
        mirzoo.load("hf://someone/keras-model@v1")
    message = str(info.value)
    assert "'someone/keras-model' at revision 'v1' lacks 'mirzoo.json'" in message
    assert "not a mirzoo model repo" in message and "mirzoo publish" in message


def test_fake_snapshot_download_takes_only_real_arguments(online_hub):
    import huggingface_hub

    with pytest.raises(TypeError, match="revison"):
        huggingface_hub.snapshot_download("owner/repo", revison="v1")  # misspelt keyword
    assert online_hub.calls == []
