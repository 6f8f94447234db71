"""The proxy's configuration file: JSON, written by the ``pd_proxy`` role, read at start-up.

Only ``prefill.instances`` and ``decode.instances`` are required; everything else has the
default below. Loading is pure (:func:`parse`), so a bad file is reported with the path of the
offending key (``decode.instances[1].url``) before the proxy binds anything; ``--check-config``
runs only this step.

Example::

    {
      "listen": {"host": "0.0.0.0", "port": 8009},
      "prefill": {"instances": [{"url": "http://10.0.0.1:7000", "name": "node1/dp0", "group": "prefill0"}]},
      "decode": {"api_key": "...", "instances": [{"url": "http://10.0.0.2:7100"}]},
      "api_keys": ["client-key"],
      "timeouts": {"connect": 5, "prefill": 600, "decode_first_chunk": 300, "idle": 120}
    }
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

PHASES = ("prefill", "decode")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names its key path."""


@dataclass(frozen=True)
class Instance:
    url: str  # scheme://host:port, no trailing slash
    name: str  # shown in logs and metrics labels
    # The data-parallel group (the plan's instance, e.g. "decode1") this rank belongs to. With
    # expert parallelism the ranks of a group run every forward pass together: when one dies
    # the others stall, so the group is served whole or not at all. "": a rank on its own.
    group: str = ""


@dataclass(frozen=True)
class Pool:
    instances: Tuple[Instance, ...]
    api_key: Optional[str] = None  # sent as "Authorization: Bearer KEY" to this phase's backends


@dataclass(frozen=True)
class Timeouts:
    connect: float = 5.0  # TCP connect to a backend
    prefill: float = 600.0  # whole prefill phase (a 200k-token prompt takes minutes)
    decode_first_chunk: float = 300.0  # streaming decode: headers + first event (includes the KV pull)
    decode: float = 1800.0  # non-streaming decode: the whole answer (vLLM replies when generation ends)
    idle: float = 120.0  # longest gap between two decode chunks / response body reads
    client_body: float = 60.0  # reading the client's request body
    # A connection's request line and headers, from its opening or its previous answer (which
    # also bounds idle keep-alive connections): a client that never finishes them is dropped.
    client_headers: float = 20.0


@dataclass(frozen=True)
class Health:
    interval: float = 2.0  # between active checks of one backend
    timeout: float = 2.0  # one check
    failures_to_eject: int = 2  # consecutive failures (checks or requests) before ejection
    successes_to_admit: int = 2  # consecutive passing checks before an ejected backend is trial-admitted
    canary: bool = False  # a check also runs a one-token generation, not only GET /health
    canary_model: Optional[str] = None  # model for the canary; default: the first of /v1/models


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 1024 * 1024  # a 200k-token prompt is ~1 MB of JSON; leave room
    max_in_flight: int = 4096  # beyond this the proxy answers 503 at once instead of queueing


@dataclass(frozen=True)
class Config:
    prefill: Pool
    decode: Pool
    host: str = "0.0.0.0"
    port: int = 8009
    certfile: Optional[str] = None
    keyfile: Optional[str] = None
    api_keys: Tuple[str, ...] = ()  # empty: no inbound authentication
    admin_api_key: Optional[str] = None  # enables /admin/*; None: admin API off
    attempts: int = 3  # PD attempts per request (prefill or decode failing before the first chunk)
    prefix_affinity: bool = False  # keep requests that share a prompt prefix on one prefill
    affinity_prefix_chars: int = 2048
    timeouts: Timeouts = field(default_factory=Timeouts)
    health: Health = field(default_factory=Health)
    limits: Limits = field(default_factory=Limits)
    drain_timeout: float = 60.0  # SIGTERM: how long in-flight requests may take to finish
    log_level: str = "info"
    access_log: bool = False
    # Processes serving the port (SO_REUSEPORT): one is bound to one core. 1: no supervisor.
    workers: int = 1

    def pool(self, phase: str) -> Pool:
        return self.prefill if phase == "prefill" else self.decode


# --- parsing -------------------------------------------------------------------------------------


def _expect_keys(raw: Dict[str, Any], allowed: Tuple[str, ...], where: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (allowed: {', '.join(allowed)})")


def _section(raw: Dict[str, Any], key: str, where: str = "") -> Dict[str, Any]:
    value = raw.get(key, {})
    path = f"{where}.{key}" if where else key
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _number(raw: Dict[str, Any], key: str, default: float, path: str, *, integer: bool = False) -> Any:
    value = raw.get(key, default)
    # Survey and template values arrive as strings ("5"); accept them, reject "abc" and booleans.
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if integer and value != int(value):
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if value <= 0:
        raise ConfigError(f"{path}: must be greater than 0, got {value!r}")
    return int(value) if integer else float(value)


def _flag(raw: Dict[str, Any], key: str, default: bool, path: str) -> bool:
    value = raw.get(key, default)
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    return value


def _optional_str(raw: Dict[str, Any], key: str, path: str) -> Optional[str]:
    value = raw.get(key)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {type(value).__name__}")
    return value


def parse_url(url: Any, path: str) -> str:
    """A backend base URL, normalised (no trailing slash); errors name ``path``."""
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{path}: expected a URL such as http://10.0.0.1:7000, got {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{path}: expected a URL such as http://10.0.0.1:7000, got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{path}: bad port in {url!r}") from None
    if not port:
        raise ConfigError(f"{path}: {url!r} has no port (vLLM instances listen on their --port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"{path}: {url!r} must be a base URL without a path (the proxy adds /v1/...)")
    return f"{parts.scheme}://{parts.netloc}"


def parse_instance(raw: Any, path: str) -> Instance:
    if isinstance(raw, str):
        raw = {"url": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected an object with 'url' (and optional 'name', 'group'), got {raw!r}")
    _expect_keys(raw, ("url", "name", "group"), path)
    url = parse_url(raw.get("url"), f"{path}.url")
    name = raw.get("name") or urlsplit(url).netloc
    if not isinstance(name, str):
        raise ConfigError(f"{path}.name: expected a string, got {name!r}")
    group = raw.get("group") or ""
    if not isinstance(group, str):
        raise ConfigError(f"{path}.group: expected a string (the DP group's name), got {group!r}")
    return Instance(url=url, name=name, group=group)


def _pool(raw: Dict[str, Any], phase: str) -> Pool:
    section = raw.get(phase)
    if not isinstance(section, dict):
        raise ConfigError(f"{phase}: required, an object with 'instances' (every DP rank's URL)")
    _expect_keys(section, ("instances", "api_key"), phase)
    items = section.get("instances")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{phase}.instances: at least one instance URL is required")
    instances = tuple(parse_instance(item, f"{phase}.instances[{i}]") for i, item in enumerate(items))
    for key in ("url", "name"):  # names label the metrics, so they must be unique too
        seen: Dict[str, int] = {}
        for i, inst in enumerate(instances):
            value = getattr(inst, key)
            if value in seen:
                raise ConfigError(f"{phase}.instances[{i}].{key}: {value} repeats {phase}.instances[{seen[value]}]")
            seen[value] = i
    return Pool(instances=instances, api_key=_optional_str(section, "api_key", f"{phase}.api_key"))


def _string_list(raw: Dict[str, Any], key: str) -> Tuple[str, ...]:
    value = raw.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: expected a list of non-empty strings")
    return tuple(value)


TOP_KEYS = (
    "listen",
    "tls",
    "api_keys",
    "admin_api_key",
    "prefill",
    "decode",
    "retries",
    "balancing",
    "timeouts",
    "health",
    "limits",
    "drain_timeout",
    "log_level",
    "access_log",
    "workers",
)


def parse(raw: Any) -> Config:
    """Validate a decoded JSON document and build the :class:`Config`."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a JSON object")
    _expect_keys(raw, TOP_KEYS, "")
    listen = _section(raw, "listen")
    _expect_keys(listen, ("host", "port"), "listen")
    port = _number(listen, "port", 8009, "listen.port", integer=True)
    if port > 65535:
        raise ConfigError(f"listen.port: {port} is not a TCP port")
    tls = _section(raw, "tls")
    _expect_keys(tls, ("certfile", "keyfile"), "tls")
    certfile = _optional_str(tls, "certfile", "tls.certfile")
    keyfile = _optional_str(tls, "keyfile", "tls.keyfile")
    if bool(certfile) != bool(keyfile):
        raise ConfigError("tls: set both certfile and keyfile, or neither")

    t = _section(raw, "timeouts")
    _expect_keys(t, tuple(Timeouts.__dataclass_fields__), "timeouts")
    d = Timeouts()
    timeouts = Timeouts(**{k: _number(t, k, getattr(d, k), f"timeouts.{k}") for k in Timeouts.__dataclass_fields__})

    h = _section(raw, "health")
    _expect_keys(h, tuple(Health.__dataclass_fields__), "health")
    dh = Health()
    counts = {
        k: _number(h, k, getattr(dh, k), f"health.{k}", integer=True)
        for k in ("failures_to_eject", "successes_to_admit")
    }
    health = Health(
        interval=_number(h, "interval", dh.interval, "health.interval"),
        timeout=_number(h, "timeout", dh.timeout, "health.timeout"),
        canary=_flag(h, "canary", dh.canary, "health.canary"),
        canary_model=_optional_str(h, "canary_model", "health.canary_model"),
        **counts,
    )

    lim = _section(raw, "limits")
    _expect_keys(lim, tuple(Limits.__dataclass_fields__), "limits")
    dl = Limits()
    limits = Limits(
        max_body_bytes=_number(lim, "max_body_bytes", dl.max_body_bytes, "limits.max_body_bytes", integer=True),
        max_in_flight=_number(lim, "max_in_flight", dl.max_in_flight, "limits.max_in_flight", integer=True),
    )

    retries = _section(raw, "retries")
    _expect_keys(retries, ("attempts",), "retries")
    balancing = _section(raw, "balancing")
    _expect_keys(balancing, ("prefix_affinity", "affinity_prefix_chars"), "balancing")

    log_level = str(raw.get("log_level", "info")).lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level: expected debug, info, warning or error, got {log_level!r}")

    return Config(
        prefill=_pool(raw, "prefill"),
        decode=_pool(raw, "decode"),
        host=str(listen.get("host") or "0.0.0.0"),
        port=port,
        certfile=certfile,
        keyfile=keyfile,
        api_keys=_string_list(raw, "api_keys"),
        admin_api_key=_optional_str(raw, "admin_api_key", "admin_api_key"),
        attempts=_number(retries, "attempts", 3, "retries.attempts", integer=True),
        prefix_affinity=_flag(balancing, "prefix_affinity", False, "balancing.prefix_affinity"),
        affinity_prefix_chars=_number(
            balancing, "affinity_prefix_chars", 2048, "balancing.affinity_prefix_chars", integer=True
        ),
        timeouts=timeouts,
        health=health,
        limits=limits,
        drain_timeout=_number(raw, "drain_timeout", 60.0, "drain_timeout"),
        log_level=log_level,
        access_log=_flag(raw, "access_log", False, "access_log"),
        workers=_number(raw, "workers", 1, "workers", integer=True),
    )


def load(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    return parse(raw)


def instances_of(cfg: Config) -> List[Tuple[str, Instance]]:
    return [(phase, inst) for phase in PHASES for inst in cfg.pool(phase).instances]
