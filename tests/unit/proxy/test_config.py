"""Unit tests of ascend_pd_proxy.config: the JSON file the ``pd_proxy`` role templates."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict

import pytest

from ascend_pd_proxy import config
from ascend_pd_proxy.config import Config, ConfigError, Health, Instance, Limits, Timeouts

PREFILL_URLS = ("http://10.0.0.1:7000", "http://10.0.0.1:7001")
DECODE_URLS = ("http://10.0.0.2:7100", "http://10.0.0.2:7101")


def role_config() -> Dict[str, Any]:
    """The file roles/pd_proxy renders (to_nice_json, sort_keys) for 2 prefill + 2 decode DP ranks."""
    return {
        "access_log": False,
        "admin_api_key": None,
        "api_keys": ["sk-client-one", "sk-client-two"],
        "balancing": {"affinity_prefix_chars": 2048, "prefix_affinity": False},
        "decode": {
            "api_key": "sk-decode",
            "instances": [
                {"name": "node2/dp0", "url": DECODE_URLS[0]},
                {"name": "node2/dp1", "url": DECODE_URLS[1]},
            ],
        },
        "drain_timeout": 60.0,
        "health": {
            "canary": False,
            "canary_model": None,
            "failures_to_eject": 2,
            "interval": 2.0,
            "successes_to_admit": 2,
            "timeout": 2.0,
        },
        "limits": {"max_body_bytes": 67108864, "max_in_flight": 4096},
        "listen": {"host": "0.0.0.0", "port": 8009},
        "log_level": "info",
        "prefill": {
            "api_key": None,
            "instances": [
                {"name": "node1/dp0", "url": PREFILL_URLS[0]},
                {"name": "node1/dp1", "url": PREFILL_URLS[1]},
            ],
        },
        "retries": {"attempts": 3},
        "timeouts": {"client_body": 60.0, "connect": 5.0, "decode_first_chunk": 300.0, "idle": 120.0, "prefill": 600.0},
        "tls": {"certfile": None, "keyfile": None},
        "workers": 1,
    }


def minimal() -> Dict[str, Any]:
    """Only the required keys: the backend lists, as bare URL strings."""
    return {"prefill": {"instances": list(PREFILL_URLS)}, "decode": {"instances": list(DECODE_URLS)}}


def with_value(path: str, value: Any) -> Dict[str, Any]:
    """role_config() with ``value`` set at a dotted ``path`` (``timeouts.connect``)."""
    raw = role_config()
    *parents, last = path.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return raw


def error_of(raw: Any) -> str:
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    return str(info.value)


# --- valid files ---------------------------------------------------------------------------------


def test_role_config_parses_to_the_rendered_values() -> None:
    cfg = config.parse(role_config())
    assert cfg.prefill.instances == (
        Instance(url=PREFILL_URLS[0], name="node1/dp0"),
        Instance(url=PREFILL_URLS[1], name="node1/dp1"),
    )
    assert [i.name for i in cfg.decode.instances] == ["node2/dp0", "node2/dp1"]
    assert cfg.prefill.api_key is None
    assert cfg.decode.api_key == "sk-decode"
    assert cfg.api_keys == ("sk-client-one", "sk-client-two")
    assert (cfg.host, cfg.port) == ("0.0.0.0", 8009)
    assert cfg.certfile is None and cfg.keyfile is None
    assert cfg.pool("prefill") is cfg.prefill and cfg.pool("decode") is cfg.decode
    assert config.instances_of(cfg) == [
        ("prefill", cfg.prefill.instances[0]),
        ("prefill", cfg.prefill.instances[1]),
        ("decode", cfg.decode.instances[0]),
        ("decode", cfg.decode.instances[1]),
    ]


def test_minimal_file_gets_every_default() -> None:
    cfg = config.parse(minimal())
    assert cfg.timeouts == Timeouts()
    assert cfg.health == Health()
    assert cfg.limits == Limits()
    assert (cfg.host, cfg.port) == ("0.0.0.0", 8009)
    assert (cfg.certfile, cfg.keyfile) == (None, None)
    assert cfg.api_keys == ()
    assert cfg.admin_api_key is None
    assert cfg.attempts == 3
    assert (cfg.prefix_affinity, cfg.affinity_prefix_chars) == (False, 2048)
    assert cfg.drain_timeout == 60.0
    assert (cfg.log_level, cfg.access_log) == ("info", False)
    assert cfg.workers == 1  # one process, no supervisor: as before the key existed
    assert cfg.prefill.api_key is None and cfg.decode.api_key is None
    # A bare URL string gets its host:port as its name.
    assert cfg.prefill.instances[1] == Instance(url="http://10.0.0.1:7001", name="10.0.0.1:7001")


def test_defaults_match_the_documented_values() -> None:
    assert Timeouts() == Timeouts(
        connect=5.0, prefill=600.0, decode_first_chunk=300.0, decode=1800.0, idle=120.0, client_body=60.0
    )
    assert Health() == Health(
        interval=2.0, timeout=2.0, failures_to_eject=2, successes_to_admit=2, canary=False, canary_model=None
    )
    assert Limits() == Limits(max_body_bytes=64 * 1024 * 1024, max_in_flight=4096)


def test_survey_style_strings_are_converted() -> None:
    """AWX surveys and `{{ x | int }}` without native types hand every value over as a string."""
    raw = role_config()
    raw["listen"]["port"] = "8010"
    raw["timeouts"] = {"connect": "5", "prefill": "900.5", "decode_first_chunk": "300", "idle": "120"}
    raw["health"] = {"failures_to_eject": "3", "successes_to_admit": "1", "canary": "true", "interval": "0.5"}
    raw["limits"] = {"max_body_bytes": "1048576", "max_in_flight": "64"}
    raw["retries"] = {"attempts": "5"}
    raw["balancing"] = {"prefix_affinity": "True", "affinity_prefix_chars": "4096"}
    raw["drain_timeout"] = "30"
    raw["access_log"] = "yes"
    raw["log_level"] = "DEBUG"
    cfg = config.parse(raw)
    assert cfg.port == 8010 and isinstance(cfg.port, int)
    assert cfg.timeouts.connect == 5.0 and isinstance(cfg.timeouts.connect, float)
    assert cfg.timeouts.prefill == 900.5
    assert cfg.timeouts.decode == Timeouts().decode  # not given: default
    assert (cfg.health.failures_to_eject, cfg.health.successes_to_admit) == (3, 1)
    assert cfg.health.interval == 0.5
    assert cfg.health.canary is True
    assert (cfg.limits.max_body_bytes, cfg.limits.max_in_flight) == (1048576, 64)
    assert cfg.attempts == 5 and isinstance(cfg.attempts, int)
    assert (cfg.prefix_affinity, cfg.affinity_prefix_chars) == (True, 4096)
    assert cfg.drain_timeout == 30.0
    assert cfg.access_log is True
    assert cfg.log_level == "debug"


@pytest.mark.parametrize(("value", "expected"), [(2, 2), ("4", 4), (3.0, 3), (1, 1)])
def test_workers_accepts_a_positive_integer(value: Any, expected: int) -> None:
    assert config.parse({**minimal(), "workers": value}).workers == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("True", True), ("yes", True), ("1", True), ("false", False), ("No", False), ("0", False)],
)
def test_flag_strings(value: str, expected: bool) -> None:
    assert config.parse(with_value("health.canary", value)).health.canary is expected


def test_integral_float_is_accepted_for_integer_keys() -> None:
    cfg = config.parse(with_value("retries.attempts", 4.0))
    assert cfg.attempts == 4 and isinstance(cfg.attempts, int)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("http://10.0.0.1:7000/", "http://10.0.0.1:7000"),
        ("https://prefill-0.example:8443", "https://prefill-0.example:8443"),
        ("http://[fd00::1]:7000", "http://[fd00::1]:7000"),
    ],
)
def test_urls_are_normalised(url: str, normalised: str) -> None:
    raw = minimal()
    raw["prefill"]["instances"] = [url]
    assert config.parse(raw).prefill.instances[0].url == normalised


def test_trailing_slash_duplicate_is_caught_after_normalisation() -> None:
    raw = minimal()
    raw["decode"]["instances"] = [DECODE_URLS[0], DECODE_URLS[0] + "/"]
    assert error_of(raw).startswith("decode.instances[1].url: http://10.0.0.2:7100 repeats decode.instances[0]")


@pytest.mark.parametrize("empty", ["", None])
def test_empty_optional_strings_are_none(empty: Any) -> None:
    raw = role_config()
    raw["admin_api_key"] = empty
    raw["prefill"]["api_key"] = empty
    raw["health"]["canary_model"] = empty
    cfg = config.parse(raw)
    assert (cfg.admin_api_key, cfg.prefill.api_key, cfg.health.canary_model) == (None, None, None)


def test_single_api_key_string_is_a_list_of_one() -> None:
    assert config.parse(with_value("api_keys", "sk-only")).api_keys == ("sk-only",)


def test_tls_both_set() -> None:
    cfg = config.parse(with_value("tls", {"certfile": "/etc/pki/proxy.crt", "keyfile": "/etc/pki/proxy.key"}))
    assert (cfg.certfile, cfg.keyfile) == ("/etc/pki/proxy.crt", "/etc/pki/proxy.key")


def test_null_sections_mean_defaults() -> None:
    raw = minimal()
    raw.update({"listen": None, "tls": None, "timeouts": None, "health": None, "limits": None})
    cfg = config.parse(raw)
    assert (cfg.port, cfg.timeouts, cfg.health, cfg.limits) == (8009, Timeouts(), Health(), Limits())


def test_config_is_frozen() -> None:
    cfg = config.parse(minimal())
    with pytest.raises(AttributeError):
        cfg.port = 1  # type: ignore[misc]
    assert isinstance(cfg, Config)


# --- errors: every message starts with the key path ----------------------------------------------

URL_ERRORS = [
    # (instance list entry, the message's start, a fragment of the message)
    ("http://10.0.0.2:7100/v1", "decode.instances[1].url:", "without a path"),
    ("http://10.0.0.2:7100/?a=1", "decode.instances[1].url:", "without a path"),
    ("http://10.0.0.2", "decode.instances[1].url:", "has no port"),
    ("http://10.0.0.2:99999", "decode.instances[1].url:", "bad port"),
    ("http://10.0.0.2:abc", "decode.instances[1].url:", "bad port"),
    ("10.0.0.2:7101", "decode.instances[1].url:", "expected a URL"),
    ("tcp://10.0.0.2:7101", "decode.instances[1].url:", "expected a URL"),
    ("http://:7101", "decode.instances[1].url:", "expected a URL"),
    ("", "decode.instances[1].url:", "expected a URL"),
    ({"name": "node2/dp1"}, "decode.instances[1].url:", "expected a URL"),
    ({"url": 7101}, "decode.instances[1].url:", "expected a URL"),
    ({"url": DECODE_URLS[1], "name": 1}, "decode.instances[1].name:", "expected a string"),
    ({"url": DECODE_URLS[1], "weight": 2}, "decode.instances[1].weight:", "unknown key"),
    (7101, "decode.instances[1]:", "expected an object"),
    (DECODE_URLS[0], "decode.instances[1].url:", "repeats decode.instances[0]"),
]


@pytest.mark.parametrize(("entry", "start", "fragment"), URL_ERRORS)
def test_instance_errors_name_their_path(entry: Any, start: str, fragment: str) -> None:
    raw = role_config()
    raw["decode"]["instances"][1] = entry
    message = error_of(raw)
    assert message.startswith(start), message
    assert fragment in message


VALUE_ERRORS = [
    # (dotted path, bad value, the message's start, a fragment)
    ("timeouts.connect", "abc", "timeouts.connect:", "expected a number"),
    ("timeouts.prefill", 0, "timeouts.prefill:", "greater than 0"),
    ("timeouts.idle", -1, "timeouts.idle:", "greater than 0"),
    ("timeouts.decode", True, "timeouts.decode:", "expected a number"),
    ("timeouts.client_body", [60], "timeouts.client_body:", "expected a number"),
    ("health.failures_to_eject", 1.5, "health.failures_to_eject:", "expected an integer"),
    ("health.successes_to_admit", "two", "health.successes_to_admit:", "expected a number"),
    ("health.interval", "0", "health.interval:", "greater than 0"),
    ("health.canary", "maybe", "health.canary:", "true or false"),
    ("health.canary", 1, "health.canary:", "true or false"),
    ("health.canary_model", 7, "health.canary_model:", "expected a string"),
    ("limits.max_body_bytes", "64MB", "limits.max_body_bytes:", "expected a number"),
    ("limits.max_in_flight", 0, "limits.max_in_flight:", "greater than 0"),
    ("listen.port", 70000, "listen.port:", "not a TCP port"),
    ("listen.port", "http", "listen.port:", "expected a number"),
    ("retries.attempts", 0, "retries.attempts:", "greater than 0"),
    ("balancing.prefix_affinity", "on", "balancing.prefix_affinity:", "true or false"),
    ("balancing.affinity_prefix_chars", -5, "balancing.affinity_prefix_chars:", "greater than 0"),
    ("drain_timeout", "soon", "drain_timeout:", "expected a number"),
    ("access_log", None, "access_log:", "true or false"),
    ("log_level", "trace", "log_level:", "expected debug"),
    ("admin_api_key", 12345, "admin_api_key:", "expected a string"),
    ("prefill.api_key", ["k"], "prefill.api_key:", "expected a string"),
    ("api_keys", ["sk-ok", ""], "api_keys:", "non-empty strings"),
    ("api_keys", {"key": "sk"}, "api_keys:", "non-empty strings"),
    ("timeouts", [5], "timeouts:", "expected an object"),
    ("listen", "0.0.0.0:8009", "listen:", "expected an object"),
    ("workers", 0, "workers:", "greater than 0"),
    ("workers", -2, "workers:", "greater than 0"),
    ("workers", 1.5, "workers:", "expected an integer"),
    ("workers", "many", "workers:", "expected a number"),
    ("workers", True, "workers:", "expected a number"),
]


@pytest.mark.parametrize(("path", "value", "start", "fragment"), VALUE_ERRORS)
def test_value_errors_name_their_path(path: str, value: Any, start: str, fragment: str) -> None:
    message = error_of(with_value(path, value))
    assert message.startswith(start), message
    assert fragment in message


UNKNOWN_KEYS = [
    ("proxy_port", "proxy_port:"),
    ("timeouts.conect", "timeouts.conect:"),
    ("health.checks", "health.checks:"),
    ("limits.max_tokens", "limits.max_tokens:"),
    ("listen.address", "listen.address:"),
    ("tls.cafile", "tls.cafile:"),
    ("retries.backoff", "retries.backoff:"),
    ("balancing.policy", "balancing.policy:"),
    ("prefill.urls", "prefill.urls:"),
    ("decode.weights", "decode.weights:"),
]


@pytest.mark.parametrize(("path", "start"), UNKNOWN_KEYS)
def test_unknown_keys_are_rejected_with_their_path(path: str, start: str) -> None:
    message = error_of(with_value(path, 1))
    assert message.startswith(start), message
    assert "unknown key" in message


def test_unknown_key_message_lists_the_allowed_keys() -> None:
    message = error_of(with_value("tls.cafile", "/etc/pki/ca.pem"))
    assert message == "tls.cafile: unknown key (allowed: certfile, keyfile)"


@pytest.mark.parametrize(
    "tls",
    [
        {"certfile": "/etc/pki/proxy.crt"},
        {"keyfile": "/etc/pki/proxy.key"},
        {"certfile": "/etc/pki/proxy.crt", "keyfile": ""},
        {"certfile": None, "keyfile": "/etc/pki/proxy.key"},
    ],
)
def test_tls_half_set_is_an_error(tls: Dict[str, Any]) -> None:
    message = error_of(with_value("tls", tls))
    assert message.startswith("tls:")
    assert "both certfile and keyfile" in message


@pytest.mark.parametrize("phase", ["prefill", "decode"])
@pytest.mark.parametrize(
    ("section", "start"),
    [
        (None, "{phase}: required"),
        ([], "{phase}: required"),
        ({}, "{phase}.instances: at least one"),
        ({"instances": []}, "{phase}.instances: at least one"),
        ({"instances": "http://10.0.0.1:7000"}, "{phase}.instances: at least one"),
    ],
)
def test_missing_pools(phase: str, section: Any, start: str) -> None:
    raw = role_config()
    raw[phase] = section
    assert error_of(raw).startswith(start.format(phase=phase))


def test_pool_missing_entirely() -> None:
    raw = role_config()
    del raw["prefill"]
    assert error_of(raw).startswith("prefill: required")


@pytest.mark.parametrize("raw", [[], "prefill", None, 3])
def test_document_must_be_an_object(raw: Any) -> None:
    assert error_of(raw) == "the configuration must be a JSON object"


def test_same_url_in_both_pools_is_not_a_duplicate() -> None:
    """Duplicates are per phase: the check names the phase's own list."""
    raw = role_config()
    raw["decode"]["instances"].append({"url": PREFILL_URLS[0]})
    cfg = config.parse(raw)
    assert cfg.decode.instances[-1].url == PREFILL_URLS[0]


@pytest.mark.parametrize("value", ["nan", "inf", float("nan"), float("inf")], ids=["str-nan", "str-inf", "nan", "inf"])
def test_non_finite_numbers_are_rejected(value: Any) -> None:
    message = error_of(with_value("timeouts.connect", value))
    assert message.startswith("timeouts.connect:")


def test_infinite_port_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    text = json.dumps(role_config()).replace('"port": 8009', '"port": Infinity')
    assert "Infinity" in text
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^listen\.port:"):
        config.load(str(path))


# --- load() --------------------------------------------------------------------------------------


def test_load_reads_the_rendered_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(role_config(), indent=2, sort_keys=True))
    assert config.load(str(path)) == config.parse(role_config())


def test_load_reports_json_position(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "prefill": {"instances": ["http://10.0.0.1:7000",]}\n}\n')
    with pytest.raises(ConfigError) as info:
        config.load(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: not valid JSON: line 2 column")


def test_load_reports_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match=r"cannot read"):
        config.load(str(path))


def test_parse_does_not_modify_its_input() -> None:
    raw = role_config()
    raw["prefill"]["instances"][0] = PREFILL_URLS[0]
    before = copy.deepcopy(raw)
    config.parse(raw)
    assert raw == before
