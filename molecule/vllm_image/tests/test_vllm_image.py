"""Verify ascend.vllm.vllm_image on the simulated nodes (see ../molecule.yml).

The ``converged`` node got the image from the controller's tarball; the ``fresh`` node never
ran the role: there it runs in ``--check`` from here and must report the load without copying
or loading anything. A run for a tag the engine lacks, from a tarball that is not there, must
fail naming the host, the image and the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import testinfra
import testinfra.utils.ansible_runner

from tests.molecule_playbook import changed_tasks, failure_text, run_playbook, task_results

CONVERGE = Path(__file__).resolve().parent.parent / "converge.yml"
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
CONVERGED = sorted(RUNNER.get_hosts("converged"))
FRESH = sorted(RUNNER.get_hosts("fresh"))

IMAGE = "ascend-sim/vllm-ascend:0.1.0"
COPY_DIR = "/var/tmp/ascend-vllm"
ROLE_TASK = "ascend.vllm.vllm_image : "


def node(name):
    return testinfra.get_host(f"docker://{name}")


def image_tags(host):
    return host.check_output("docker images --format '{{.Repository}}:{{.Tag}}'").split()


@pytest.mark.parametrize("name", CONVERGED)
def test_image_loaded_and_copy_removed(name):
    host = node(name)
    assert IMAGE in image_tags(host)
    assert not host.file(f"{COPY_DIR}/vllm-ascend-0.1.0.tar").exists


@pytest.mark.parametrize("name", FRESH)
def test_check_mode_reports_the_load_and_loads_nothing(name):
    rc, report = run_playbook(CONVERGE, "--check", "-e", "vllm_image_molecule_hosts=fresh")
    assert rc == 0, report["stats"]
    assert report["stats"][name]["failures"] == 0
    tasks = task_results(report, name)
    would_load = tasks[ROLE_TASK + "Report the load check mode would do"]
    assert would_load.get("changed")
    assert f"{name}: would load {IMAGE} from {COPY_DIR}/vllm-ascend-0.1.0.tar" == would_load["msg"]
    assert any(task.startswith(ROLE_TASK + "Copy the tarball") for task in changed_tasks(report, name))

    host = node(name)
    assert image_tags(host) == []
    assert not host.file(COPY_DIR).exists


@pytest.mark.parametrize("name", CONVERGED)
def test_check_mode_on_the_converged_node_changes_nothing(name):
    rc, report = run_playbook(CONVERGE, "--check")
    assert rc == 0, report["stats"]
    assert changed_tasks(report, name) == []


@pytest.mark.parametrize("name", CONVERGED)
def test_missing_tarball_fails_naming_host_image_and_path(name):
    rc, report = run_playbook(
        CONVERGE,
        "--limit",
        name,
        "-e",
        '{"vllm_image_name": "ascend-sim/vllm-ascend:9.9.9", "vllm_image_tarball": "",'
        ' "vllm_image_tarball_remote": "/mnt/none.tar"}',
    )
    assert rc != 0
    text = failure_text(report, name)
    for part in (name, "/mnt/none.tar", "ascend-sim/vllm-ascend:9.9.9"):
        assert part in text, text
    assert "ascend-sim/vllm-ascend:9.9.9" not in image_tags(node(name))


@pytest.mark.parametrize("name", CONVERGED)
def test_a_new_image_is_checked_for_the_files_its_containers_expect(name):
    host = node(name)
    host.check_output(f"docker rmi {IMAGE}")
    wanted = ["/bin/sh", "/usr/lib/no-such-dir/libjemalloc.so.2"]
    rc, report = run_playbook(
        CONVERGE, "--limit", name, "-e", f'{{"vllm_image_required_files": {wanted!r}}}'.replace("'", '"')
    )
    assert rc == 0, failure_text(report, name)
    warned = next(r for t, r in task_results(report, name).items() if t.startswith(ROLE_TASK + "Warn about files"))
    assert warned.get("warnings") == [
        f"vllm_image on {name}: the image {IMAGE} has no /usr/lib/no-such-dir/libjemalloc.so.2, which its "
        "containers preload; install it in the image or set ascend_jemalloc_preload: false"
    ]
    assert IMAGE in image_tags(host)
    # Present already: not checked again (a re-run starts no throw-away container).
    rc, report = run_playbook(
        CONVERGE, "--limit", name, "-e", f'{{"vllm_image_required_files": {wanted!r}}}'.replace("'", '"')
    )
    checks = [
        r for t, r in task_results(report, name).items() if t.startswith(ROLE_TASK + "Check that the image carries")
    ]
    assert rc == 0 and checks and all(r.get("skipped") for r in checks)
