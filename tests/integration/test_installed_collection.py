# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as a site installs it: built, installed offline, its playbooks run by FQCN.

Proves that what the plan needs ships in the tarball (the catalogue, the action, the
plugin_utils reader) and that `ansible-playbook ascend.vllm.<playbook>` works without this
checkout on the collection path.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def run(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    work = tmp_path_factory.mktemp("installed")
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "HOME": str(work),
        "ANSIBLE_NOCOLOR": "1",
        # No checkout ansible.cfg: only the installed copy can answer for ascend.vllm.
        "ANSIBLE_CONFIG": str(work / "none.cfg"),
        # community.docker and ansible.posix come from the `ansible` package's site-packages.
        "ANSIBLE_COLLECTIONS_PATH": str(work / "collections"),
    }
    (work / "none.cfg").write_text("[defaults]\n")
    built = run(
        str(BIN / "ansible-galaxy"), "collection", "build", str(ROOT), "--output-path", str(work), cwd=work, env=env
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = work.glob("ascend-vllm-*.tar.gz")
    # The bundled community.docker / ansible.posix satisfy the dependencies.
    args = ["collection", "install", "--offline", "--no-deps", "-p", str(work / "collections"), str(tarball)]
    done = run(str(BIN / "ansible-galaxy"), *args, cwd=work, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return work, env


def test_the_plan_playbook_runs_by_fqcn_from_the_installed_collection(installed) -> None:
    work, env = installed
    out = work / "plan"
    done = run(
        str(BIN / "ansible-playbook"), "ascend.vllm.plan", "-i", str(ROOT / "inventories/a3"),
        "-e", f"plan_dir={out}", cwd=work, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    plan = json.loads((out / "plan.json").read_text())
    assert plan["recipe"]["name"] == "v0.23" and plan["scenario"] == "a3_pd_1p1d_200k"


def test_pd_1p1d_by_fqcn_plans_then_goes_to_the_hosts(installed) -> None:
    work, env = installed
    done = run(
        str(BIN / "ansible-playbook"), "ascend.vllm.pd_1p1d", "-i", str(ROOT / "inventories/a3"),
        "-e", f"plan_dir={work / 'pd'}", cwd=work, env=env,
    )  # fmt: skip
    output = done.stdout + done.stderr
    # The sample hosts do not exist: past the plan, preflight is the first to try them.
    assert "Scenario a3_pd_1p1d_200k (PD, 1 prefill + 1 decode instance(s))" in output, output
    assert "UNREACHABLE" in output, output


def test_the_catalogue_and_the_docs_ship_in_the_tarball(installed) -> None:
    work, _ = installed
    root = work / "collections" / "ansible_collections" / "ascend" / "vllm"
    assert sorted(p.name for p in (root / "catalogue" / "recipes").glob("*.yml")) == ["v0.21.yml", "v0.23.yml"]
    assert (root / "docs" / "plan.md").is_file() and (root / "proxy" / "ascend_pd_proxy" / "sse.py").is_file()
    assert not (root / "sim").exists() and not (root / "pd_1p1d.yml").exists()
