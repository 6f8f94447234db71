# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PD proxy package as one deterministic zip, imported from PYTHONPATH."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ansible_collections.ascend.vllm.plugins.module_utils.pyz import build_zip

PROXY = Path(__file__).resolve().parents[4] / "proxy" / "ascend_pd_proxy"


def test_same_sources_same_bytes_whatever_the_mtimes(tmp_path: Path) -> None:
    first = build_zip(str(PROXY))
    for path in PROXY.glob("*.py"):
        os.utime(path)  # a checkout touching the files
    assert build_zip(str(PROXY)) == first


def test_the_zip_holds_the_package_and_the_symlinked_module_as_a_file() -> None:
    archive = zipfile.ZipFile(io.BytesIO(build_zip(str(PROXY))))
    names = archive.namelist()
    assert names == sorted(names) and "ascend_pd_proxy/__init__.py" in names
    assert all(n.startswith("ascend_pd_proxy/") and n.endswith(".py") for n in names)
    assert not any("__pycache__" in n for n in names)
    assert archive.read("ascend_pd_proxy/sse.py") == (PROXY / "sse.py").read_bytes()


def test_python_runs_the_package_from_the_zip(tmp_path: Path) -> None:
    package = tmp_path / "ascend_pd_proxy.zip"
    package.write_bytes(build_zip(str(PROXY)))
    done = subprocess.run(
        [sys.executable, "-m", "ascend_pd_proxy", "--version"],
        env={"PYTHONPATH": str(package), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_a_source_change_changes_the_zip(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("A = 1\n")
    first = build_zip(str(package))
    (package / "__init__.py").write_text("A = 2\n")
    assert build_zip(str(package)) != first


def test_not_a_package(tmp_path: Path) -> None:
    (tmp_path / "lonely.py").write_text("")
    with pytest.raises(ValueError, match=r"no __init__\.py"):
        build_zip(str(tmp_path))
