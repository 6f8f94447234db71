"""awx/: every survey passes AWX's own rules, every survey variable is one the playbook feeds to
the plan or a role (with a type that accepts the answer as AWX sends it), the references between
the definitions hold, and the secrets the credential type injects are never logged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from tests.awx import (
    AWX_DIR,
    ROOT,
    answer_errors,
    job_templates,
    launch_extra_vars,
    load_definitions,
    render_injected_extra_vars,
    stringify,
    survey_spec_errors,
)
from tests.unit.plugins.module_utils.plan_helpers import CATALOGUE, V021, errors, ok, plan

TEMPLATES = {t["name"]: t for t in job_templates()}
QUESTIONS = [(t["name"], q) for t in TEMPLATES.values() for q in t["survey_spec"]["spec"]]
PLAN_INPUTS = set(yaml.safe_load((ROOT / "catalogue" / "defaults.yml").read_text())["variables"])

# Survey variables read by a playbook itself rather than by the plan or a role's options:
# the playbook and the expression that reads them (each coerces the string AWX sends).
PLAYBOOK_OPTIONS = {
    "ascend_verify_max_tokens": ("playbooks/verify.yml", "ascend_verify_max_tokens | default(32)"),
    "ascend_verify_health_timeout": ("playbooks/verify.yml", "ascend_verify_health_timeout | default(900)"),
    "rolling_restart_role": ("playbooks/rolling_restart.yml", "role=rolling_restart_role"),
    "rolling_restart_instances": ("playbooks/rolling_restart.yml", "instances=rolling_restart_instances"),
    "rolling_restart_accept_downtime": (
        "playbooks/rolling_restart.yml",
        "accept_downtime=rolling_restart_accept_downtime",
    ),
    "rolling_restart_drain_timeout": ("playbooks/tasks/rolling_restart_instance.yml", "rolling_restart_drain_timeout"),
    "scale_in_drain_timeout": ("playbooks/pd.yml", "scale_in_drain_timeout | default(1800)"),
    "teardown_confirm": ("playbooks/teardown.yml", "teardown_confirm | default(false) | bool"),
    "teardown_revert_host_tuning": ("playbooks/teardown.yml", "teardown_revert_host_tuning | default(false) | bool"),
}
# The role whose options a playbook's survey feeds (through extra vars, the role's own names).
ROLE_OF_PLAYBOOK = {"playbooks/benchmark.yml": "benchmark", "playbooks/evaluate.yml": "evaluate"}
# What AWX question type may feed an argument_spec type; Ansible's validator converts the string.
COMPATIBLE = {
    "integer": {"int", "float", "raw", "str"},
    "float": {"float", "raw"},
    "text": {"str", "raw", "list", "path"},
    "multiplechoice": {"str", "raw", "bool"},
}


def role_options(role: str) -> Dict[str, Any]:
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return specs["argument_specs"]["main"]["options"]


def sample_answer(question: Dict[str, Any]) -> Any:
    """The default, or for an optional blank question a value inside its limits."""
    if question.get("default") not in (None, ""):
        return question["default"]
    if question["type"] == "multiplechoice":
        return question["choices"][-1]
    if question["type"] in ("integer", "float"):
        return max(question.get("min", 1), 1) * 2 if question["variable"] != "ascend_num_speculative_tokens" else 2
    return {"ascend_vllm_image_tag": "v0.23.0-a3", "benchmark_baseline": "/srv/baseline.json"}.get(
        question["variable"], "x"
    )


# --- AWX's own rules -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_survey_passes_awx_survey_spec_rules(name: str) -> None:
    assert TEMPLATES[name]["survey_enabled"] is True
    assert survey_spec_errors(TEMPLATES[name]["survey_spec"]) == []


@pytest.mark.parametrize(("name", "question"), QUESTIONS, ids=[f"{n}:{q['variable']}" for n, q in QUESTIONS])
def test_every_default_is_a_valid_answer_and_so_is_its_string(name: str, question: Dict[str, Any]) -> None:
    variable, default = question["variable"], question.get("default", "")
    if default == "":
        assert question["required"] is False, f"{name}: {variable} is required but has no default"
        return
    assert answer_errors(question, {variable: default}) == []
    if question["type"] in ("integer", "float"):
        assert question["min"] <= default <= question["max"]


@pytest.mark.parametrize(
    ("mutation", "text"),
    [
        ({"type": "number"}, "not one of the allowed"),
        ({"default": "8"}, "expected to be integer"),
        ({"min": "0"}, "expected to be integer"),
        ({"required": "yes"}, "wrong type"),
        ({"variable": "ascend_model"}, "duplicated"),
    ],
)
def test_the_spec_rules_refuse_what_awx_refuses(mutation: Dict[str, Any], text: str) -> None:
    spec = {
        "name": "s",
        "description": "",
        "spec": [
            {"question_name": "m", "variable": "ascend_model", "type": "text", "required": True, "default": "x"},
            {
                "question_name": "n",
                "variable": "n",
                "type": "integer",
                "required": False,
                "default": 1,
                "min": 0,
                "max": 2,
            },
        ],
    }
    spec["spec"][1].update(mutation)
    assert any(text in e for e in survey_spec_errors(spec)), survey_spec_errors(spec)
    choice = {"question_name": "c", "variable": "c", "type": "multiplechoice", "required": True, "choices": ["a"]}
    assert any("choices listed" in e for e in survey_spec_errors({**spec, "spec": [{**choice, "default": "b"}]}))


def test_answer_rules_as_awx_applies_them_at_launch() -> None:
    template = TEMPLATES["ascend.vllm deploy PD 1P1D"]
    tokens = next(q for q in template["survey_spec"]["spec"] if q["variable"] == "ascend_num_speculative_tokens")
    assert answer_errors(tokens, {"ascend_num_speculative_tokens": 9})
    assert answer_errors(tokens, {"ascend_num_speculative_tokens": "3"}), "an integer question takes numbers"
    # A blank integer default is not sent (it is no integer); a blank text default is sent as
    # "", which the plan reads as unset: either way the inventory's (or the scenario's) value stays.
    variables = launch_extra_vars(template)
    assert variables == {
        "ascend_scenario": "a3_pd_1p1d_200k",
        "ascend_model": "minimax-m2.7-w8a8",
        "ascend_vllm_image_tag": "",
    }
    with pytest.raises(ValueError, match="expected to be one of"):
        launch_extra_vars(template, {"ascend_scenario": "a3_pd_1p2d_200k"})


# --- choices from the catalogue ----------------------------------------------------------------


def _scenario_choices(name: str) -> List[str]:
    spec = TEMPLATES[name]["survey_spec"]["spec"]
    return next(q["choices"] for q in spec if q["variable"] == "ascend_scenario")


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("ascend.vllm deploy PD 1P1D", {"prefill": 1, "decode": 1}),
        ("ascend.vllm deploy PD 1P2D", {"prefill": 1, "decode": 2}),
    ],
)
def test_pd_scenario_choices_are_the_catalogues_of_that_shape(name: str, shape: Dict[str, int]) -> None:
    for scenario in _scenario_choices(name):
        # On the fewest sample hosts it fits (table 9.1's decode instances span two hosts).
        results = [plan(node3=node3, ascend_scenario=scenario) for node3 in (False, True)]
        document = ok(next((r for r in results if not r["errors"]), results[-1]))
        assert document["shape"] == shape, scenario
    # Every PD scenario of the shipped recipes is offered by the template of its shape.
    offered = set(_scenario_choices("ascend.vllm deploy PD 1P1D")) | set(
        _scenario_choices("ascend.vllm deploy PD 1P2D")
    )
    shipped = {s for r in CATALOGUE["recipes"].values() for s, v in r.get("scenarios", {}).items() if "_pd_" in s}
    assert shipped <= offered


def test_single_node_scenario_choices_are_the_catalogues_single_scenarios() -> None:
    for scenario in _scenario_choices("ascend.vllm deploy single node"):
        site = "a2" if scenario.startswith("a2") else "a3"
        extra = V021 if scenario == "a3_single_long" else {}
        document = ok(plan(site, ascend_scenario=scenario, **extra))
        assert document["mode"] == "single", scenario


def test_model_choices_are_the_catalogues_models() -> None:
    for _, question in QUESTIONS:
        if question["variable"] == "ascend_model":
            assert question["choices"] == list(CATALOGUE["models"])


# --- every survey variable feeds the plan or a role, with a compatible type -----------------


@pytest.mark.parametrize(("name", "question"), QUESTIONS, ids=[f"{n}:{q['variable']}" for n, q in QUESTIONS])
def test_every_survey_variable_is_read_and_takes_the_answer_as_a_string(name: str, question: Dict[str, Any]) -> None:
    variable, playbook = question["variable"], TEMPLATES[name]["playbook"]
    answer = stringify(sample_answer(question))
    if variable in PLAN_INPUTS:
        # The plan accepts the string (or names the variable when the value is wrong)...
        site = {"ascend_scenario": "a3_single_short"} if "single" in playbook else {}
        if variable == "ascend_scenario":
            site = {}
        result = plan(node3="1p2d" in playbook, **{**site, variable: answer})
        assert not [e for e in result["errors"] if e["variable"] == variable], result["errors"]
        # ...and refuses a value of the wrong kind, naming the variable.
        if question["type"] == "integer":
            assert any(e[1] == variable for e in errors(plan(**{**site, variable: "many"})))
    elif variable in PLAYBOOK_OPTIONS:
        path, expression = PLAYBOOK_OPTIONS[variable]
        assert path.startswith(str(Path(playbook).with_suffix(""))) or path in (
            "playbooks/tasks/rolling_restart_instance.yml",
        )
        assert expression in (ROOT / path).read_text(), f"{path} no longer reads {variable} as {expression}"
    else:
        role = ROLE_OF_PLAYBOOK[playbook]
        options = role_options(role)
        assert variable in options, f"{variable} is not an option of role {role}"
        spec_type = options[variable].get("type", "str")
        assert spec_type in COMPATIBLE[question["type"]], (variable, spec_type, question["type"])
        # Ansible's own argument_spec validation, as the role's entry point runs it, on the string.
        checked = {variable: {k: v for k, v in options[variable].items() if k in ("type", "elements", "choices")}}
        result = ArgumentSpecValidator(checked).validate({variable: answer})
        assert result.error_messages == [], result.error_messages
        if question["type"] == "integer":
            assert ArgumentSpecValidator(checked).validate({variable: "many"}).error_messages


# --- the definitions refer to each other -----------------------------------------------------


def test_templates_refer_to_defined_objects_and_existing_playbooks() -> None:
    credentials = {c["name"] for c in load_definitions("credentials")["controller_credentials"]}
    inventories = {i["name"] for i in load_definitions("inventories")["controller_inventories"]}
    projects = {p["name"] for p in load_definitions("projects")["controller_projects"]}
    environments = {e["name"] for e in load_definitions("execution_environments")["controller_execution_environments"]}
    assert len(TEMPLATES) == 9
    for template in TEMPLATES.values():
        assert (ROOT / template["playbook"]).is_file(), template["playbook"]
        assert set(template["credentials"]) <= credentials
        assert template["inventory"] in inventories and template["project"] in projects
        assert template["execution_environment"] in environments
    types = {t["name"] for t in load_definitions("credential_types")["controller_credential_types"]}
    assert {c["credential_type"] for c in load_definitions("credentials")["controller_credentials"]} <= types | {
        "Machine"
    }


def test_apply_playbook_loads_every_definition_file() -> None:
    apply = yaml.safe_load((AWX_DIR / "apply.yml").read_text())[0]
    files = {Path(f).stem for f in apply["vars_files"]}
    assert files == {p.stem for p in (AWX_DIR / "controller").glob("*.yml")}
    include = "ansible.builtin.include_role"
    included = [task[include]["name"] for task in apply["tasks"] if include in task]
    assert included == ["infra.controller_configuration.dispatch"] and "roles" not in apply


# --- secrets: injected as extra vars, never logged ----------------------------------------------

CREDENTIAL_TYPE = load_definitions("credential_types")["controller_credential_types"][0]
SECRET_INPUTS = {f["id"] for f in CREDENTIAL_TYPE["inputs"]["fields"] if f.get("secret")}
INJECTED = CREDENTIAL_TYPE["injectors"]["extra_vars"]
SECRET_VARIABLES = sorted(
    v for v, t in INJECTED.items() if re.search(r"\{\{\s*(\w+)\s*\}\}", t).group(1) in SECRET_INPUTS
)
TASK_KEYS = ("block", "rescue", "always")


def test_credential_type_follows_awx_input_schema_and_renders() -> None:
    for field in CREDENTIAL_TYPE["inputs"]["fields"]:
        assert re.match(r"^[a-zA-Z_]+[a-zA-Z0-9_]*$", field["id"]) and field["type"] in ("string", "boolean")
    rendered = render_injected_extra_vars(CREDENTIAL_TYPE, {"registry_password": "s3cret", "registry_username": ""})
    assert rendered["vllm_image_registry_password"] == "s3cret"
    assert rendered["vllm_image_registry_username"] == "" and rendered["ascend_vllm_api_key"] == ""
    # An empty input is "no key" to the plan: "" for both variables.
    assert rendered["ascend_proxy_api_keys"] == ""
    assert set(SECRET_VARIABLES) == {
        "vllm_image_registry_password",
        "ascend_vllm_api_key",
        "ascend_proxy_api_keys",
        "pd_proxy_admin_api_key",
    }


@pytest.mark.parametrize("variable", sorted(INJECTED))
def test_every_injected_variable_is_a_role_option_and_secrets_are_no_log(variable: str) -> None:
    if variable.startswith("ascend_"):
        # An inventory variable the plan validates (tests/unit/plugins/module_utils/test_plan_auth.py).
        assert variable in CATALOGUE["defaults"]
        return
    role = next(r.name for r in (ROOT / "roles").iterdir() if variable.startswith(f"{r.name}_"))
    option = role_options(role)[variable]
    assert option.get("type", "str") == "str"
    if variable in SECRET_VARIABLES:
        assert option.get("no_log") is True


def _tasks(node: Any) -> List[Dict[str, Any]]:
    found: List[Dict[str, Any]] = []
    if isinstance(node, list):
        for item in node:
            found += _tasks(item)
    elif isinstance(node, dict):
        if any(k in node for k in TASK_KEYS):
            for key in TASK_KEYS:
                found += _tasks(node.get(key, []))
        elif "tasks" in node or "roles" in node or "import_playbook" in str(node):
            found += _tasks(node.get("tasks", []))
        else:
            found.append(node)
    return found


def test_every_task_that_uses_a_secret_does_not_log() -> None:
    files = list((ROOT / "roles").glob("*/tasks/*.yml")) + list((ROOT / "playbooks").rglob("*.yml"))
    offenders = []
    for path in files:
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            # A condition on a secret's length logs no value; anything else that reads one must not log.
            body = {k: v for k, v in task.items() if k not in ("name", "when", "no_log")}
            if "ansible.builtin.assert" in body:
                # Its conditions are conditions too; its message is checked where it templates.
                message = str(body["ansible.builtin.assert"].get("fail_msg", ""))
                body = {"fail_msg": re.findall(r"\{\{.*?\}\}", message, re.DOTALL)}
            if any(re.search(rf"\b{v}\b", str(body)) for v in SECRET_VARIABLES) and "no_log" not in task:
                offenders.append(f"{path.relative_to(ROOT)}: {task.get('name')}")
    assert offenders == []
