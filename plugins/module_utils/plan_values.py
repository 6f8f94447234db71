# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Value handling for the deployment plan: coercion of inventory values, merging, flag rendering.

Inventory values arrive from YAML (typed), from ``-e`` extra vars and from AWX surveys (always
strings: ``"4"``, ``"true"``, a JSON text for a mapping). Every coercion here accepts the
typed form and the string form, and raises ``CoerceError`` with a message that the caller
prefixes with the host and the variable. Nothing here imports Ansible.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

_INT_TEXT = re.compile(r"^[+-]?[0-9]+$")
TRUE_WORDS = frozenset(("true", "yes", "on", "1"))
FALSE_WORDS = frozenset(("false", "no", "off", "0"))


class CoerceError(ValueError):
    """A value that cannot be read as the type a variable needs."""


class Issues:
    """Errors and warnings, each naming the host (or group) and the variable concerned."""

    def __init__(self) -> None:
        self.errors: List[Dict[str, str]] = []
        self.warnings: List[Dict[str, str]] = []

    @staticmethod
    def _issue(host: str, variable: str, message: str) -> Dict[str, str]:
        return {"host": host, "variable": variable, "message": message, "text": f"{host}: {variable}: {message}"}

    def error(self, host: str, variable: str, message: str) -> None:
        issue = self._issue(host, variable, message)
        # The same bad group_vars value is read once per host; report each host once.
        if issue not in self.errors:
            self.errors.append(issue)

    def warn(self, host: str, variable: str, message: str) -> None:
        issue = self._issue(host, variable, message)
        if issue not in self.warnings:
            self.warnings.append(issue)


def plain(value: Any) -> Any:
    """A deep copy made of builtin types only (Ansible hands over tagged str/dict subclasses)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def to_int(value: Any, minimum: Optional[int] = None, maximum: Optional[int] = None) -> int:
    """An int from an int or a decimal string; bools are refused (``True`` is an int in Python)."""
    if isinstance(value, bool):
        raise CoerceError(f"{value!r} is a boolean, not an integer")
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        number = int(value)
    elif isinstance(value, str) and _INT_TEXT.match(value.strip()):
        number = int(value.strip())
    else:
        raise CoerceError(f"{value!r} is not an integer")
    if minimum is not None and number < minimum:
        raise CoerceError(f"{number} is below the minimum {minimum}")
    if maximum is not None and number > maximum:
        raise CoerceError(f"{number} is above the maximum {maximum}")
    return number


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise CoerceError(f"{value!r} is a boolean, not a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise CoerceError(f"{value!r} is not a number")


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise CoerceError(f"{value!r} is not a boolean (true/false)")


def to_str(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (Mapping, list, tuple)):
        raise CoerceError(f"{value!r} is not a string")
    return str(value)


def to_abs_path(value: Any) -> str:
    """An absolute path: a relative one would be taken from wherever a task or a container
    happens to run, and so read the wrong file or none."""
    text = to_str(value).strip()
    if not text.startswith("/"):
        raise CoerceError(f"{text!r} is not an absolute path")
    return text


# Docker's sizes (docker run --shm-size, community.docker's shm_size): a positive number and an
# optional unit, b k m g t p, binary multiples.
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([bkmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)


def to_size(value: Any) -> str:
    """A Docker size (``64g``, ``512m``, ``1073741824``) above zero, as text."""
    if isinstance(value, bool):
        raise CoerceError(f"{value!r} is a boolean, not a size")
    text = str(value).strip() if isinstance(value, (int, str)) else None
    match = _SIZE_RE.match(text or "")
    if text is None or match is None:
        raise CoerceError(f"{value!r} is not a size (a number and an optional unit b, k, m, g, t: e.g. 64g)")
    if float(match.group(1)) <= 0:
        raise CoerceError(f"{value!r} is not above zero")
    return text


def url_address(address: str) -> str:
    """An address as it goes into a URL or a ``host:port`` target: IPv6 literals in brackets
    (RFC 3986), since ``http://fd00::1:8000`` names no port."""
    try:
        literal = ipaddress.ip_address(address)
    except ValueError:
        return address
    return f"[{address}]" if literal.version == 6 else address


def to_mapping(value: Any) -> Dict[str, Any]:
    """A dict from a mapping, or from JSON text (how a survey or ``-e key=value`` passes one)."""
    if value is None or value == "":
        return {}
    if isinstance(value, Mapping):
        return plain(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise CoerceError(f"{value!r} is neither a mapping nor JSON text of one ({exc})") from None
        if isinstance(parsed, dict):
            return parsed
    raise CoerceError(f"{value!r} is not a mapping")


def to_str_list(value: Any) -> List[str]:
    """A list of strings from a list, JSON text of a list, or comma-separated text."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise CoerceError(f"{value!r} is not a JSON list ({exc})") from None
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [to_str(item) for item in value]
    raise CoerceError(f"{value!r} is not a list")


def to_chip_ids(value: Any, limit: Optional[int] = None) -> List[int]:
    """Chip ids from a list (``[0, 1]``), JSON text of one, or ranges text (``"0-7,12"``).

    With ``limit`` (the host's chip count) an id at or past it is refused before any range is
    expanded, so that a mistyped ``"0-99999999"`` fails at once instead of building the list.
    """

    def chip(item: Any) -> int:
        number = to_int(item, minimum=0)
        if limit is not None and number >= limit:
            raise CoerceError(f"chip {number} does not exist: the host has chips 0-{limit - 1} (ascend_chips_per_node)")
        return number

    if isinstance(value, str) and not value.strip().startswith("["):
        # Every bound is read and checked before any range is expanded: a mistyped part
        # anywhere fails in time linear in the text, never in the size of a range.
        spans: List[Tuple[int, int]] = []
        for part in (p.strip() for p in value.split(",")):
            first, sep, last = part.partition("-")
            if not sep:
                if part:
                    spans.append((chip(part), chip(part)))
                continue
            start, end = chip(first), chip(last)
            if end < start:
                raise CoerceError(f"chip range {part!r} runs backwards")
            spans.append((start, end))
        chips: List[int] = [c for start, end in spans for c in range(start, end + 1)]
    else:
        items = to_str_list(value) if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise CoerceError(f"{value!r} is not a list of chip ids")
        chips = [chip(item) for item in items]
    seen: set = set()
    duplicates = sorted({c for c in chips if c in seen or seen.add(c)})
    if duplicates:
        raise CoerceError(f"chips {duplicates} are listed more than once")
    return chips


def format_chips(chips: List[int]) -> str:
    """``[0, 1, 2, 3, 8]`` -> ``"0-3,8"`` for tables."""
    parts: List[str] = []
    start = prev = None
    for chip in chips:
        if start is not None and chip == prev + 1:
            prev = chip
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = chip
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts) or "-"


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> Dict[str, Any]:
    """``overlay`` over ``base``, mappings merged key by key; an overlay ``None`` removes the key.

    This is what lets an operator change one key of a nested dict (a scenario's tp, one entry of
    ``--additional-config``) without copying the whole dict, as Ansible's own variable
    precedence would require (it replaces dicts wholesale).
    """
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# vLLM's short aliases of the options the plan reads or owns (vllm serve --help), so that
# ``-tp 8`` in an override is recognised as the tensor parallel size it is.
FLAG_ALIASES = {
    "tp": "tensor-parallel-size",
    "pp": "pipeline-parallel-size",
    "dp": "data-parallel-size",
    "dpn": "data-parallel-rank",
    "dpr": "data-parallel-start-rank",
    "dpl": "data-parallel-size-local",
    "dpa": "data-parallel-address",
    "dpp": "data-parallel-rpc-port",
    "pcp": "prefill-context-parallel-size",
    "dcp": "decode-context-parallel-size",
    "ep": "enable-expert-parallel",
    "sc": "speculative-config",
    "cc": "compilation-config",
}


def flag_name(name: Any) -> str:
    """The canonical spelling of a ``vllm serve`` flag: no leading dashes, ``-`` not ``_``.

    vLLM treats ``--speculative_config`` and ``--speculative-config`` as the same option.
    """
    canonical = str(name).strip().lstrip("-").replace("_", "-")
    return FLAG_ALIASES.get(canonical, canonical)


def normalize_flags(flags: Mapping[str, Any]) -> Dict[str, Any]:
    """Flag names in canonical spelling; survey strings turned into the values they stand for.

    ``"true"``/``"false"`` become booleans (bare flag / omitted) and a ``--*-config`` value
    given as JSON text becomes a dict, so it merges with the scenario's dict. Raises
    ``CoerceError`` naming the flag.
    """
    out: Dict[str, Any] = {}
    for raw_name, value in flags.items():
        name = flag_name(raw_name)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in ("true", "false"):
                value = word == "true"
            elif name.endswith("-config") and value.strip().startswith("{"):
                try:
                    value = json.loads(value)
                except ValueError as exc:
                    raise CoerceError(f"--{name}: {value!r} is not valid JSON ({exc})") from None
        out[name] = value
    return out


def render_flags(flags: Mapping[str, Any]) -> List[str]:
    """argv words for flags: ``true`` a bare flag, ``false``/``None`` omitted, mappings as JSON,
    lists as several values (``nargs='+'`` options such as ``--served-model-name``)."""
    argv: List[str] = []
    for name, value in flags.items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(f"--{name}")
        elif isinstance(value, Mapping):
            argv += [f"--{name}", json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            argv += [f"--{name}", *(json.dumps(v) if isinstance(v, Mapping) else str(v) for v in value)]
        else:
            argv += [f"--{name}", str(value)]
    return argv


def env_value(value: Any) -> Optional[str]:
    """An environment value as text; ``None`` means "unset". Booleans are refused: YAML ``true``
    could mean ``1``, ``true`` or ``True`` to the program reading it, so it must be quoted."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise CoerceError(f"{value!r} is a YAML boolean; quote the value the program expects ('1', 'true', 'True')")
    if isinstance(value, (int, float, str)):
        return str(value)
    raise CoerceError(f"{value!r} is not a string")


SEE_ALSO = "see catalogue/defaults.yml"


class HostView:
    """One host's ``ascend_*`` variables, read with coercion; a bad value becomes an error.

    A variable the inventory leaves unset (or blank, as an empty survey answer) takes the
    ``default`` the caller computed (the recipe's, for those that depend on it), else the
    shipped default (catalogue/defaults.yml).
    """

    def __init__(
        self, name: str, raw: Mapping[str, Any], issues: Issues, defaults: Optional[Mapping[str, Any]] = None
    ) -> None:
        self.name = name
        self.raw = raw
        self.issues = issues
        self.defaults = defaults or {}

    def has(self, var: str) -> bool:
        return self.raw.get(var) not in (None, "")

    def get(self, var: str, coerce: Callable[[Any], Any], required: bool = True, default: Any = None) -> Any:
        """The coerced value (of the fallback when unset); when there is neither and the
        variable is required, an error naming host and variable. A value that cannot be
        coerced is an error too, and yields the fallback."""
        fallback = default if default is not None else self.defaults.get(var)
        if not self.has(var):
            if fallback in (None, ""):
                if required:
                    self.issues.error(self.name, var, f"not set ({SEE_ALSO})")
                return fallback
            value = fallback
        else:
            value = self.raw[var]
        try:
            return coerce(value)
        except CoerceError as exc:
            self.issues.error(self.name, var, str(exc))
        # Go on with the fallback, so that one bad value does not hide the other problems.
        try:
            return None if fallback in (None, "") or value is fallback else coerce(fallback)
        except CoerceError:
            return None

    def port(self, var: str) -> Optional[int]:
        return self.get(var, lambda v: to_int(v, minimum=1, maximum=65535))

    def choice(self, var: str, choices: Sequence[str], default: Optional[str] = None) -> Optional[str]:
        value = self.get(var, to_str, default=default)
        if value is not None and value not in choices:
            self.issues.error(self.name, var, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value


class Layered:
    """A mapping merged from layers (``deep_merge``), remembering which variable set each key last."""

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}
        self.origin: Dict[str, str] = {}

    def add(self, variable: str, layer: Mapping[str, Any]) -> None:
        self.values = deep_merge(self.values, layer)
        for key, value in layer.items():
            if value is None:
                self.origin.pop(key, None)
            else:
                self.origin[key] = variable

    def copy(self) -> Layered:
        other = Layered()
        other.values, other.origin = copy.deepcopy(self.values), dict(self.origin)
        return other
