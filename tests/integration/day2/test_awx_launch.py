"""Every AWX job template of awx/, launched as AWX launches it (tests/awx.py: the template's
extra vars, its survey defaults and answers as strings marked !unsafe, the credential type's
extra vars in a file of their own, the template's inventory, limit, tags and verbosity, through
ansible-runner) against the shared 1P2D deployment, which it leaves as it found it.

The template's inventory ("ascend.vllm site") is the day-2 cluster's inventory directory; the
single-node template gets a copy whose group single is the spare node5 (its server is removed by
the teardown template launched with limit node5 and teardown_confirm true), and the 1P1D template
a copy without node3 (the proxy drops decode1's ranks; the 1P2D template launched next puts them
back, decode1's containers having run all along)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest
import yaml

from tests.awx import job_templates, launch
from tests.integration.day2.conftest import Day2
from tests.integration.day2.test_evaluate import lm_eval
from tests.sim_cluster import node

pytestmark = pytest.mark.docker

TEMPLATES = {t["name"]: t for t in job_templates()}
# Set in the credential, never in a template or a survey; must not appear in any job output.
# (The deployment's API keys stay empty: later tests expect an unkeyed deployment;
# tests/integration/day2/test_zx_keys.py runs a keyed one.)
SECRET = "awx-test-registry-secret-5f1c"
CREDENTIAL = {
    "registry": "quay.io",
    "registry_username": "",
    "registry_password": SECRET,
    "vllm_api_key": "",
    "proxy_api_key": "",
}


def run(day2: Day2, tmp_path: Path, name: str, inventory: Path | None = None, **kwargs: Any):
    job_dir = tmp_path / name.replace(" ", "_").replace(".", "_")
    extra = {"plan_dir": str(tmp_path / "plan"), **kwargs.pop("extra_vars", {})}
    runner = launch(
        TEMPLATES[name], job_dir, inventory or day2.inventory, credential_inputs=CREDENTIAL, extra_vars=extra, **kwargs
    )
    output = runner.stdout.read()
    assert SECRET not in output, f"{name}: the credential's secret is in the job output"
    return runner, output


def succeeded(runner: Any, output: str) -> str:
    assert runner.status == "successful" and runner.rc == 0, output[-4000:]
    return output


def inventory_copy(day2: Day2, tmp_path: Path, label: str, **groups: list[int]) -> Path:
    target = tmp_path / f"inventory-{label}"
    shutil.copytree(day2.inventory, target)
    path = target / "hosts.yml"
    inventory = yaml.safe_load(path.read_text())
    children = inventory["all"]["children"]
    for group, members in groups.items():
        children[group] = {"hosts": {day2.node(i): None for i in members}} if members else {}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return target


def containers(host: str) -> Dict[str, str]:
    out = node(host, "docker", "ps", "--filter", "label=ascend.vllm.role", "--format", "{{.Names}} {{.ID}}").stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def test_verify_and_scale_templates_with_their_defaults(day2: Day2, tmp_path: Path) -> None:
    output = succeeded(*run(day2, tmp_path, "ascend.vllm verify"))
    assert "Deployment summary: scenario a3_pd_1p2d_200k" in output
    before = {i: containers(day2.node(i)) for i in (1, 2, 3, 4)}
    # Scale with the inventory unchanged: nothing to start or drop, no container recreated.
    succeeded(*run(day2, tmp_path, "ascend.vllm scale (pd.yml)"))
    assert {i: containers(day2.node(i)) for i in (1, 2, 3, 4)} == before


def test_deploy_1p1d_then_1p2d_templates(day2: Day2, tmp_path: Path) -> None:
    decode1 = containers(day2.node(3))
    one_decode = inventory_copy(day2, tmp_path, "1p1d", prefill=[1], decode=[2], proxy=[4], single=[])
    # node3 is in no group of this inventory copy and not in it at all: the 1P1D plan drops its
    # ranks from the proxy and leaves its containers alone.
    hosts = yaml.safe_load((one_decode / "hosts.yml").read_text())
    del hosts["all"]["hosts"][day2.node(3)]
    (one_decode / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    output = succeeded(*run(day2, tmp_path, "ascend.vllm deploy PD 1P1D", inventory=one_decode))
    assert "a3_pd_1p1d_200k" in output
    output = succeeded(*run(day2, tmp_path, "ascend.vllm deploy PD 1P2D"))
    assert "Deployment summary: scenario a3_pd_1p2d_200k" in output
    assert containers(day2.node(3)) == decode1, "decode1 was restarted"


def test_benchmark_and_evaluate_templates_with_string_answers(day2: Day2, tmp_path: Path) -> None:
    answers = {
        "benchmark_num_prompts": 4,
        "benchmark_max_concurrency": 2,
        "benchmark_output_len": 16,
        "benchmark_label": "awx",
    }
    output = succeeded(
        *run(
            day2,
            tmp_path,
            "ascend.vllm benchmark",
            answers=answers,
            extra_vars={"benchmark_results_root": str(tmp_path / "bench")},
        )
    )
    assert list((tmp_path / "bench").glob("*-awx/report.md")), output[-3000:]
    answers = {
        "evaluate_tasks": "ascend_sample_arith,ascend_sample_choice",
        "evaluate_limit": 3,
        "evaluate_batch_size": 2,
    }
    succeeded(
        *run(
            day2,
            tmp_path,
            "ascend.vllm evaluate",
            answers=answers,
            extra_vars={"evaluate_lm_eval": lm_eval(), "evaluate_results_dir": str(tmp_path / "eval")},
        )
    )
    assert list((tmp_path / "eval").glob("*/report.md"))


def test_rolling_restart_template_rolls_one_decode_group(day2: Day2, tmp_path: Path) -> None:
    answers = {"rolling_restart_role": "decode", "rolling_restart_instances": "decode1"}
    output = succeeded(*run(day2, tmp_path, "ascend.vllm rolling restart", answers=answers))
    assert "Rolling restart, one DP group at a time: decode1 on image" in output, output[-3000:]
    assert set(containers(day2.node(3))) == {"vllm-decode1-dp0", "vllm-decode1-dp1"}


def test_single_node_template_on_the_spare_node_then_teardown_template_with_limit(day2: Day2, tmp_path: Path) -> None:
    spare = day2.node(5)
    single = inventory_copy(day2, tmp_path, "single", prefill=[], decode=[], proxy=[], single=[5])
    answers = {"ascend_max_model_len": 32768, "ascend_num_speculative_tokens": 2}
    output = succeeded(*run(day2, tmp_path, "ascend.vllm deploy single node", inventory=single, answers=answers))
    assert "a3_single_short" in output
    command = node(spare, "docker", "inspect", "--format", "{{json .Config.Cmd}}", "vllm-single").stdout
    assert re.search(r'"--max-model-len",\s*"32768"', command), command
    assert re.search(r'num_speculative_tokens\\*"?:\s*2\b', command), command

    # Teardown refuses with its survey's defaults (teardown_confirm "false"), changing nothing...
    runner, output = run(day2, tmp_path, "ascend.vllm teardown", inventory=single, limit=spare)
    assert runner.status == "failed" and "Teardown refused, nothing changed" in output
    assert "vllm-single" in containers(spare)
    # ...and removes the spare node's server once confirmed, limited to it.
    succeeded(
        *run(
            day2, tmp_path, "ascend.vllm teardown", inventory=single, limit=spare, answers={"teardown_confirm": "true"}
        )
    )
    assert containers(spare) == {}
    succeeded(*run(day2, tmp_path, "ascend.vllm verify"))
