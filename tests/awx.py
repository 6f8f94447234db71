"""AWX's handling of job templates, re-implemented for tests that need no AWX server.

Three things AWX does, written from its source (ansible/awx 24.6.x, the version awx/ targets):

- ``survey_spec_errors``: the checks AWX makes when a survey spec is saved
  (``JobTemplateSurveySpec._validate_spec_data`` in awx/api/views/__init__.py), with
  ``SURVEY_TYPE_MAPPING`` of awx/main/constants.py;
- ``answer_errors``: the checks of one answer (``SurveyJobTemplateMixin._survey_element_validation``
  in awx/main/models/mixins.py), which AWX also applies to each default before using it;
- ``launch_extra_vars`` and ``launch``: the extra vars of a launch (``_update_unified_job_kwargs``:
  the template's extra_vars, then each survey default that passes the answer checks, then the
  launch's answers) written as AWX writes them (``build_extra_vars_file`` with
  awx/main/utils/safe_yaml.py: every string ``!unsafe``), the credential type's ``extra_vars``
  injectors rendered into a file of their own passed with ``-e @file`` (``inject_credential`` in
  awx/main/models/credential.py: an input left empty renders as ""), and the template's
  inventory, limit, tags and verbosity as the arguments of ``build_args`` (awx/main/tasks/jobs.py),
  run by ansible-runner as AWX's task runner does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import jinja2.sandbox
import yaml

ROOT = Path(__file__).resolve().parent.parent
AWX_DIR = ROOT / "awx"

# awx/main/constants.py SURVEY_TYPE_MAPPING: the Python type a default of each question type has.
SURVEY_TYPE_MAPPING: Dict[str, Any] = {
    "text": str,
    "textarea": str,
    "password": str,
    "multiplechoice": str,
    "multiselect": str,
    "integer": int,
    "float": (float, int),
}


class _DefinitionLoader(yaml.SafeLoader):
    """YAML with Ansible's ``!unsafe`` tag (the credential type's injectors use it)."""


_DefinitionLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_definitions(name: str) -> Dict[str, Any]:
    """One file of awx/controller/ as the applying playbook's vars_files reads it."""
    return yaml.load((AWX_DIR / "controller" / f"{name}.yml").read_text(), Loader=_DefinitionLoader)


def job_templates() -> List[Dict[str, Any]]:
    return load_definitions("job_templates")["controller_templates"]


def _choices(question: Mapping[str, Any]) -> List[str]:
    choices = question.get("choices", [])
    if isinstance(choices, str):
        return [choice for choice in choices.splitlines() if choice.strip() != ""]
    return list(choices)


def survey_spec_errors(spec: Mapping[str, Any]) -> List[str]:
    """What AWX's API answers 400 with when this spec is posted (JobTemplateSurveySpec._validate_spec_data)."""
    errors: List[str] = []
    for field, expected in (("name", str), ("description", str), ("spec", list)):
        if field not in spec:
            errors.append(f"Field '{field}' is missing from survey spec.")
        elif not isinstance(spec[field], expected):
            errors.append(f"Expected {expected.__name__} for field '{field}'")
    if isinstance(spec.get("spec"), list) and len(spec["spec"]) < 1:
        errors.append("'spec' doesn't contain any items.")
    if errors:
        return errors
    variables: set = set()
    for idx, item in enumerate(spec["spec"]):
        if not isinstance(item, dict):
            errors.append(f"Survey question {idx} is not a json object.")
            continue
        missing = [f for f in ("type", "question_name", "variable", "required") if f not in item]
        if missing:
            errors.append(f"'{missing[0]}' missing from survey question {idx}")
            continue
        wrong = [f for f in ("type", "question_name", "variable") if not isinstance(item[f], str)]
        if wrong or not isinstance(item["required"], bool):
            errors.append(f"'{(wrong or ['required'])[0]}' in survey question {idx} has the wrong type")
            continue
        if item["variable"] in variables:
            errors.append(f"'variable' '{item['variable']}' duplicated in survey question {idx}.")
        variables.add(item["variable"])
        qtype = item["type"]
        if qtype not in SURVEY_TYPE_MAPPING:
            errors.append(f"'{qtype}' in survey question {idx} is not one of the allowed question types.")
            continue
        default = item.get("default")
        # bool is an int in Python, and AWX's isinstance check lets True through as an integer
        # default; we refuse it, as the answer check (type() != int) would.
        wrong_type = not isinstance(default, SURVEY_TYPE_MAPPING[qtype]) or isinstance(default, bool)
        if "default" in item and default != "" and wrong_type:
            errors.append(f"Default value {default!r} in survey question {idx} expected to be {qtype}.")
        for key in ("min", "max"):
            if key in item and item[key] is not None and not isinstance(item[key], int):
                errors.append(f"The {key} limit in survey question {idx} expected to be integer.")
        if qtype in ("multiselect", "multiplechoice"):
            if "choices" not in item:
                errors.append(f"Survey question {idx} of type {qtype} must specify choices.")
                continue
            choices = _choices(item)
            if isinstance(default, str):
                defaults = [d for d in default.splitlines() if d.strip() != ""]
            else:
                defaults = list(default or [])
            if qtype == "multiplechoice" and len(defaults) > 1:
                errors.append("Multiple Choice (Single Select) can only have one default value.")
            if any(d not in choices for d in defaults):
                errors.append(f"Default choice must be answered from the choices listed (question {idx}).")
        if isinstance(default, str) and default.startswith("$encrypted$"):
            errors.append(f"$encrypted$ is a reserved keyword (question {idx}).")
    return errors


def answer_errors(question: Mapping[str, Any], data: Mapping[str, Any], validate_required: bool = True) -> List[str]:
    """AWX's check of one answer (SurveyJobTemplateMixin._survey_element_validation)."""
    variable, qtype = question["variable"], question["type"]
    limits = {k: question.get(k) for k in ("min", "max") if question.get(k) not in ("", None)}
    if variable not in data:
        return [f"'{variable}' value missing"] if question["required"] and validate_required else []
    value = data[variable]
    if qtype in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return [f"Value {value} for '{variable}' expected to be a string."]
        if "min" in limits and len(value) < int(limits["min"]):
            return [f"'{variable}' value {value} is too small (length {len(value)} < {limits['min']})."]
        if "max" in limits and len(value) > int(limits["max"]):
            return [f"'{variable}' value {value} is too large (must be no more than {limits['max']})."]
    elif qtype == "integer":
        if type(value) is not int:
            return [f"Value {value} for '{variable}' expected to be an integer."]
        if "min" in limits and value < int(limits["min"]):
            return [f"'{variable}' value {value} is too small (must be at least {limits['min']})."]
        if "max" in limits and value > int(limits["max"]):
            return [f"'{variable}' value {value} is too large (must be no more than {limits['max']})."]
    elif qtype == "float":
        if type(value) not in (float, int):
            return [f"Value {value} for '{variable}' expected to be a numeric type."]
        if "min" in limits and value < float(limits["min"]):
            return [f"'{variable}' value {value} is too small."]
        if "max" in limits and value > float(limits["max"]):
            return [f"'{variable}' value {value} is too large."]
    elif qtype == "multiselect":
        if not isinstance(value, list):
            return [f"'{variable}' value is expected to be a list."]
        return [
            f"Value {v} for '{variable}' expected to be one of {_choices(question)}."
            for v in value
            if v not in _choices(question)
        ]
    elif qtype == "multiplechoice" and value not in _choices(question):
        return [f"Value {value} for '{variable}' expected to be one of {_choices(question)}."]
    return []


def launch_extra_vars(template: Mapping[str, Any], answers: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The job's extra vars: the template's, then each survey default AWX accepts, then the answers.

    AWX keeps a default's type (an integer question's default is a number); ``as_strings``
    in ``launch`` turns every survey value into the string a text field would send, the case
    the collection must accept ("8", "true").
    """
    extra_vars = dict(template.get("extra_vars") or {})
    answers = dict(answers or {})
    spec = template["survey_spec"]["spec"] if template.get("survey_enabled") else []
    for question in spec:
        default = question.get("default")
        if default is not None and not answer_errors(question, {question["variable"]: default}):
            extra_vars[question["variable"]] = default
    errors = [e for q in spec for e in answer_errors(q, {**extra_vars, **answers})]
    if errors:
        raise ValueError(f"AWX would refuse this launch of {template['name']!r}: {errors}")
    extra_vars.update(answers)
    return extra_vars


def _unsafe_yaml(variables: Mapping[str, Any]) -> str:
    """YAML with every string tagged !unsafe, as AWX's safe_dump writes launch-time variables."""

    class UnsafeDumper(yaml.SafeDumper):
        def represent_data(self, data: Any) -> Any:
            if isinstance(data, str):
                return self.represent_scalar("!unsafe", data)
            return super().represent_data(data)

    return yaml.dump(dict(variables), Dumper=UnsafeDumper, default_flow_style=False)


def render_injected_extra_vars(credential_type: Mapping[str, Any], inputs: Mapping[str, str]) -> Dict[str, str]:
    """A credential's extra vars: each injector rendered in a sandbox with the inputs that are set."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    namespace = {k: v for k, v in inputs.items() if len(v)}
    return {
        k: env.from_string(v).render(**namespace) for k, v in credential_type["injectors"].get("extra_vars", {}).items()
    }


def stringify(value: Any) -> Any:
    """A survey value as a text field sends it: ``8`` -> ``"8"``; lists and strings unchanged."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    return value


def launch(
    template: Mapping[str, Any],
    private_data_dir: Path,
    inventory: Path,
    answers: Optional[Mapping[str, Any]] = None,
    credential_inputs: Optional[Mapping[str, str]] = None,
    limit: str = "",
    extra_vars: Optional[Mapping[str, Any]] = None,
    as_strings: bool = True,
    timeout: int = 1800,
) -> Any:
    """Run the template's playbook with ansible-runner as AWX would launch it; the runner object."""
    import ansible_runner

    variables = launch_extra_vars(template, answers)
    if as_strings:
        survey = {q["variable"] for q in template["survey_spec"]["spec"]}
        variables = {k: stringify(v) if k in survey else v for k, v in variables.items()}
    # Site-specific launch variables (paths on this controller) AWX would take with
    # ask_variables_on_launch; they come last, as a launch's do.
    variables.update(extra_vars or {})
    env_dir = private_data_dir / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    (env_dir / "extravars").write_text(_unsafe_yaml(variables))
    cmdline = []
    (credential_type,) = load_definitions("credential_types")["controller_credential_types"]
    if "ascend.vllm secrets" in template.get("credentials", []):
        injected = render_injected_extra_vars(credential_type, credential_inputs or {})
        path = env_dir / "credential_extravars.yml"
        path.write_text(_unsafe_yaml(injected))
        path.chmod(0o400)
        cmdline += ["-e", f"@{path}"]
    if template.get("job_tags"):
        cmdline += ["-t", template["job_tags"]]
    (env_dir / "settings").write_text(json.dumps({"job_timeout": timeout}))
    return ansible_runner.run(
        private_data_dir=str(private_data_dir),
        project_dir=str(ROOT),
        playbook=template["playbook"],
        inventory=str(inventory),
        limit=limit or template.get("limit") or None,
        verbosity=template.get("verbosity") or None,
        cmdline=" ".join(cmdline) or None,
        quiet=True,
    )
