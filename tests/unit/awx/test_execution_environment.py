"""awx/ee: `ansible-builder create` writes the execution environment's build context (no image is
built here: that needs a registry and a container engine), and what it installs is pinned to the
versions this checkout is tested with."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from tests.awx import AWX_DIR, ROOT

CONTEXT = ROOT / ".build" / "ee" / "context"


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements" / "toolchain.txt").read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line)


def _bundled(collection: str) -> str:
    namespace, name = collection.split(".")
    site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    manifest = site / "ansible_collections" / namespace / name / "MANIFEST.json"
    return json.loads(manifest.read_text())["collection_info"]["version"]


def test_ansible_builder_create_writes_the_build_context() -> None:
    done = subprocess.run([str(ROOT / "tools" / "ee.sh"), "create"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    containerfile = (CONTEXT / "Dockerfile").read_text()
    lock = _lock()
    assert f"ansible-core=={lock['ansible-core']}" in containerfile
    assert f"ansible-runner=={lock['ansible-runner']}" in containerfile
    assert "ansible-galaxy collection install" in containerfile and "/opt/lm-eval/bin/pip install" in containerfile
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    assert (CONTEXT / "_build" / "collection" / f"ascend-vllm-{version}.tar.gz").is_file()
    assert (CONTEXT / "_build" / "lm-eval" / "evaluate.txt").read_text() == (
        ROOT / "requirements" / "evaluate.txt"
    ).read_text()


def test_dependencies_are_pinned_to_the_tested_versions() -> None:
    galaxy = yaml.safe_load((AWX_DIR / "ee" / "requirements.yml").read_text())["collections"]
    pins = {c["name"]: c.get("version") for c in galaxy}
    assert pins["community.docker"] == _bundled("community.docker")
    assert pins["ansible.posix"] == _bundled("ansible.posix")
    lock = _lock()
    for line in (AWX_DIR / "ee" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = re.split(r"==", line)
            assert lock[name] == version, name
    definition = yaml.safe_load((AWX_DIR / "ee" / "execution-environment.yml").read_text())
    assert definition["version"] == 3
    assert definition["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={lock['ansible-core']}"
