"""The host-side CLI without Docker: its entry point from anywhere, the inventory it renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ascend_sim_host import inventory
from ascend_sim_host.config import VLLM_TARBALL
from ascend_sim_host.inventory import node_groups, render_inventory

from .conftest import SIM

CLI = SIM / "ascend-sim"


@pytest.mark.parametrize("how", ["python3 path", "executable", "symlink"])
def test_entry_point_works_from_any_directory(tmp_path: Path, how: str) -> None:
    if how == "symlink":
        link = tmp_path / "ascend-sim"
        link.symlink_to(CLI)
        argv = [str(link)]
    else:
        argv = [sys.executable, str(CLI)] if how == "python3 path" else [str(CLI)]
    res = subprocess.run([*argv, "--help"], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: ascend-sim [-h] COMMAND ...\n\nascend-sim: build, run and drive")


def test_entry_point_usage_error_exit_code(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(CLI), "up", "--profile", "a4"], cwd=tmp_path, capture_output=True)
    assert res.returncode == 2
    assert b"invalid choice: 'a4'" in res.stderr


@pytest.mark.parametrize(
    ("count", "groups"),
    [
        (1, {"prefill": ["n1"], "decode": [], "proxy": ["n1"], "single": ["n1"]}),
        (2, {"prefill": ["n1"], "decode": ["n2"], "proxy": ["n1"], "single": ["n1"]}),
        (3, {"prefill": ["n1"], "decode": ["n2"], "proxy": ["n3"], "single": ["n1"]}),
        (5, {"prefill": ["n1"], "decode": ["n2", "n4", "n5"], "proxy": ["n3"], "single": ["n1"]}),
    ],
)
def test_node_groups(count: int, groups: dict[str, list[str]]) -> None:
    assert node_groups([f"n{i}" for i in range(1, count + 1)]) == groups


def test_render_inventory_names_hosts_addresses_and_tarball(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "TAG", inventory.VERSION)
    nodes = [
        {"name": "c-node1", "profile": "a2", "ip": "172.30.5.11"},
        {"name": "c-node2", "profile": "a2", "ip": ""},
    ]
    text = render_inventory("c", nodes)
    assert "# (2 x A2 node(s))." in text
    assert f"    ascend_hardware: a2\n    vllm_image_source: tarball\n    vllm_image_tarball: {VLLM_TARBALL}\n" in text
    assert "    c-node1:\n      ansible_host: c-node1\n      ascend_local_ip: 172.30.5.11\n" in text
    assert "    c-node2:\n      ansible_host: c-node2\n  children:\n" in text  # no address: no ascend_local_ip
    assert text.endswith("    proxy:\n      hosts:\n        c-node1:\n    single:\n      hosts:\n        c-node1:\n")


def test_render_inventory_names_images_of_another_tag_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """ASCEND_SIM_TAG: the hosts get the tag's image and tarball as host variables, which win
    over the simulator inventory's group_vars (the version's image)."""
    monkeypatch.setattr(inventory, "TAG", "wt1")
    monkeypatch.setattr(inventory, "VLLM_IMAGE", "ascend-sim/vllm-ascend:wt1")
    monkeypatch.setattr(inventory, "VLLM_TARBALL", "/x/vllm-ascend-wt1.tar")
    text = render_inventory("c", [{"name": "c-node1", "profile": "a3", "ip": "172.30.5.11"}])
    assert (
        "    c-node1:\n      ansible_host: c-node1\n      ascend_local_ip: 172.30.5.11\n"
        "      ascend_vllm_image: ascend-sim/vllm-ascend:wt1\n      vllm_image_tarball: /x/vllm-ascend-wt1.tar\n"
    ) in text
