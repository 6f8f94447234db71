"""playbooks/rolling_restart.yml on the shared 1P2D deployment, under steady load through the proxy.

The two decode instances (one DP group each) roll one after the other onto a new image (the
upgrade path: the image comes as a tarball from the controller, as at an air-gapped site) while
clients keep sending streaming and non-streaming requests through the PD proxy: not one may
fail. Then they roll back to the inventory's image, so later tests find the deployment as it
was. Prefill, a single instance, is refused without accepting downtime.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Dict, Iterator

import pytest

from tests.integration.day2.conftest import Day2, explain
from tests.integration.day2.load import SteadyLoad
from tests.sim_cluster import node

pytestmark = pytest.mark.docker


def servers_inspected(day2: Day2, field: str) -> Dict[str, str]:
    """``host/container`` -> one ``docker inspect`` field (a Go template), for every server of the plan."""
    found = {}
    for host, record in day2.plan["hosts"].items():
        names = [s["container"]["name"] for s in record["servers"]]
        if names:
            out = node(host, "docker", "inspect", "-f", "{{.Name}} " + field, *names).stdout
            found.update({f"{host}/{line.split()[0].lstrip('/')}": line.split()[1] for line in out.splitlines()})
    return found


def started_at(day2: Day2) -> Dict[str, str]:
    return servers_inspected(day2, "{{.State.StartedAt}}")


def proxy_health(day2: Day2) -> Dict[str, Dict[str, int]]:
    proxy = next(h["proxy"] for h in day2.plan["hosts"].values() if h["proxy"])
    raw = node(proxy["host"], "curl", "-sS", f"http://127.0.0.1:{proxy['port']}/health").stdout
    health = json.loads(raw)
    return {"prefill": health["prefill"], "decode": health["decode"]}


def images(day2: Day2) -> Dict[str, str]:
    """``host/container`` -> the image reference it runs."""
    return servers_inspected(day2, "{{.Config.Image}}")


@pytest.fixture(scope="module")
def next_image(day2: Day2, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A new release of the plan's image (another image id, not just another name) and its tarball."""
    current = day2.plan["image"]
    upgrade = current.rsplit(":", 1)[0] + ":rolling-upgrade"
    build = f"FROM {current}\nLABEL ascend.vllm.test=rolling-upgrade\n"
    subprocess.run(
        ["docker", "build", "-q", "-t", upgrade, "-"], input=build, text=True, check=True, capture_output=True
    )
    tarball = tmp_path_factory.mktemp("upgrade") / "vllm-ascend-rolling-upgrade.tar"
    subprocess.run(["docker", "save", "-o", str(tarball), upgrade], check=True)
    yield upgrade, tarball
    subprocess.run(["docker", "rmi", upgrade], check=False, capture_output=True)


def load_on(day2: Day2) -> SteadyLoad:
    return SteadyLoad(day2.plan["endpoints"][0], day2.plan["served_model_name"])


def test_a_single_prefill_instance_is_refused_without_accepting_downtime(day2: Day2) -> None:
    before = started_at(day2)
    refused = day2.playbook("playbooks/rolling_restart.yml", "-e", "rolling_restart_role=prefill")
    assert refused.returncode != 0, explain(refused)
    said = " ".join(refused.stdout.split())  # the callback wraps long messages
    assert "Rolling restart refused, nothing changed: prefill has one instance (prefill0)" in said
    assert "rolling_restart_accept_downtime=true" in said
    assert started_at(day2) == before


def test_decode_groups_upgrade_one_at_a_time_without_a_failed_request(day2: Day2, next_image: tuple[str, Path]) -> None:
    upgrade, tarball = next_image
    before, images_before = started_at(day2), images(day2)
    with load_on(day2) as load:
        load.wait_for(10)
        rolled = day2.playbook(
            "playbooks/rolling_restart.yml",
            "-e",
            "rolling_restart_role=decode",
            "-e",
            f"ascend_vllm_image={upgrade}",
            "-e",
            f"vllm_image_tarball={tarball}",
        )
        # The last group back in the proxy takes traffic too before the count ends.
        load.wait_for(load.total + 10)
    print(f"\nrolling upgrade of decode0, decode1 under load: {load.summary()}")
    assert rolled.returncode == 0, explain(rolled)
    assert load.failed == 0, load.failures[:5]
    assert load.succeeded >= 20
    after = started_at(day2)
    decode = [name for name in before if "-decode" in name]
    prefill = [name for name in before if "-prefill" in name]
    assert len(decode) == 4 and len(prefill) == 2
    assert all(after[name] != before[name] for name in decode), (before, after)
    assert all(after[name] == before[name] for name in prefill), (before, after)
    images_after = images(day2)
    assert {images_after[name] for name in decode} == {upgrade}, images_after
    assert {images_after[name] for name in prefill} == {images_before[name] for name in prefill}, images_after
    assert proxy_health(day2) == {"prefill": {"healthy": 2, "total": 2}, "decode": {"healthy": 4, "total": 4}}
    # The groups went one at a time, in plan order: decode1 left the proxy after decode0 was back.
    lines = rolled.stdout.splitlines()
    proxy_steps = [line for line in lines if line.startswith("TASK [") and " PD proxy" in line]
    groups = [step.rsplit(": ", 1)[-1].split("]")[0] for step in proxy_steps]  # "TASK [...: decode0] ***"
    assert groups == ["decode0", "decode0", "decode1", "decode1"], proxy_steps


def test_decode_groups_roll_back_to_the_inventory_image(day2: Day2) -> None:
    """No image given: the groups come back on the plan's image, and the deployment is as before."""
    rolled = day2.playbook("playbooks/rolling_restart.yml", "-e", "rolling_restart_instances=decode0,decode1")
    assert rolled.returncode == 0, explain(rolled)
    assert set(images(day2).values()) == {day2.plan["image"]}
    assert proxy_health(day2) == {"prefill": {"healthy": 2, "total": 2}, "decode": {"healthy": 4, "total": 4}}
    again = day2.playbook("playbooks/pd_1p2d.yml")
    assert again.returncode == 0, explain(again)
    changed = [int(n) for n in re.findall(r"changed=(\d+)", again.stdout)]
    assert changed and not any(changed), again.stdout[-3000:]
