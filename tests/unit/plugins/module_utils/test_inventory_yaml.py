# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Locating an inventory's broken vars file (plugin_utils/inventory_yaml.py)."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.ascend.vllm.plugins.plugin_utils.inventory_yaml import yaml_errors


def test_the_broken_file_is_named_with_its_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "group_vars" / "all").mkdir(parents=True)
    (site / "host_vars").mkdir()
    (site / "hosts.yml").write_text("all:\n  hosts:\n    a:\n")
    (site / "group_vars" / "all" / "main.yml").write_text("---\nascend_model: m\n")
    (site / "group_vars" / "decode.yml").write_text("---\nascend_decode_port: 7100\nx: {a: 1\n")
    (site / "host_vars" / "a.yml").write_text("---\nascend_local_ip: 10.0.0.1\n  bad: indent\n")
    found = yaml_errors([str(site / "hosts.yml"), str(tmp_path / "elsewhere")])
    assert len(found) == 2, found
    assert found[0].startswith(f"{site}/group_vars/decode.yml:4:1: ")
    assert "flow mapping that starts on line 3" in found[0]
    assert found[1].startswith(f"{site}/host_vars/a.yml:3:")


def test_valid_files_give_nothing(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text("---\nascend_model: m\n")
    assert yaml_errors([str(tmp_path)]) == []
