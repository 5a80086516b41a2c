"""The conftest's CI guard: under CI=true a missing test dependency fails the run instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PROBE = '''
import pytest
from conftest import skip_unless_installed

def test_import_skip():
    pytest.importorskip("mirzoo_no_such_module")

def test_system_skip():
    skip_unless_installed(False, "frobnicator missing (apt-get install frob)")

def test_present():
    skip_unless_installed(True, "never shown")

def test_other_skip():
    pytest.skip("a skip for another reason")
'''

PROBE_MODULE = '''
import pytest
pytest.importorskip("mirzoo_no_such_module_either")

def test_never_runs():
    pass
'''


def _run(tmp_path: Path, ci: str | None) -> str:
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "test_probe_module.py").write_text(PROBE_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", "-c", os.devnull, str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    return done.stdout + done.stderr


def test_missing_dependencies_skip_outside_ci(tmp_path):
    out = _run(tmp_path, None)
    assert "1 passed, 4 skipped" in out, out
    assert "could not import 'mirzoo_no_such_module'" in out


def test_missing_dependencies_fail_under_ci(tmp_path):
    out = _run(tmp_path, "true")
    assert "2 failed, 1 passed, 1 skipped, 1 error" in out, out
    assert "CI=true and the test dependency 'mirzoo_no_such_module' cannot be imported" in out
    assert "ERROR collecting test_probe_module.py" in out
    assert "CI=true and the test dependency 'mirzoo_no_such_module_either'" in out
    assert "CI=true and a test dependency is missing: frobnicator missing (apt-get install frob)" in out
    assert "SKIPPED [1] test_probe.py" in out and "a skip for another reason" in out
