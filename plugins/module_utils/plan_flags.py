# Copyright: Contributors to the ascend.vllm project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``vllm serve`` flags of a plan, checked against vLLM's own option table.

The table (catalogue/vllm-serve-options.json) lists every option of ``vllm serve`` as the
parser of vLLM 0.33.0 defines it: its spellings, type, choices and arity, plus the value sets
of the options whose choices are registries (quantization methods, tool call and reasoning
parsers). vLLM-Ascend adds no option, only values (``--quantization ascend``).

A flag the table does not know would stop ``vllm serve`` at start with "unrecognized
arguments" after the hosts were changed; a value of the wrong type, or a size of 0, a negative
one, NaN or infinity, would too, or worse, start a server that cannot serve. Each problem is
returned as a message; the caller names the host and the variable that set the flag.
Nothing here imports Ansible.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any, Dict, List, Mapping, Optional

from ansible_collections.ascend.vllm.plugins.module_utils.plan_values import CoerceError, to_float, to_int

# vLLM's human_readable_int: digits, or a decimal with a unit (k/m/g: powers of 1000,
# K/M/G: of 1024), e.g. 32k, 1.5M.
_HUMAN_INT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)\s*$")
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
# Sizes and counts vLLM needs at least 1 of; 0 or a negative value either fails at start or
# means something no operator wants (max-model-len: -1 and "auto" mean "fit the memory").
POSITIVE = frozenset(
    (
        "max-model-len",
        "max-num-seqs",
        "max-num-batched-tokens",
        "block-size",
        "pipeline-parallel-size",
        "prefill-context-parallel-size",
        "decode-context-parallel-size",
        "api-server-count",
        "max-num-partial-prefills",
        "max-long-partial-prefills",
    )
)
NON_NEGATIVE = frozenset(("swap-space", "cpu-offload-gb", "kv-cache-memory-bytes", "long-prefill-token-threshold"))
# Options whose value is a fraction of the device memory.
FRACTION = frozenset(("gpu-memory-utilization",))
# Registries of names: the option accepts what is registered (a plugin can add more).
VALUE_SETS = {
    "quantization": ("quantization_methods_upstream", ("ascend",), None),
    "tool-call-parser": ("tool_call_parsers", (), "tool-parser-plugin"),
    "reasoning-parser": ("reasoning_parsers", (), "reasoning-parser-plugin"),
}
INT_TYPES = ("int", "human_readable_int", "human_readable_int_or_auto")


class ServeOptions:
    """vLLM's ``vllm serve`` options by canonical name (no dashes in front, ``-`` not ``_``)."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.version = str(table.get("vllm_version", "?"))
        self.by_name: Dict[str, Mapping[str, Any]] = {}
        for option in table.get("options") or []:
            for spelling in option.get("options") or []:
                if spelling.startswith("--"):
                    self.by_name[spelling[2:]] = option
        # vLLM maps --no-<flag> of an on/off flag onto its "off" spelling, as argparse's
        # BooleanOptionalAction did (the guides still write --no-enable-prefix-caching).
        for option in table.get("options") or []:
            if option.get("action") == "EnableDisableAction":
                for spelling in option.get("options") or []:
                    if spelling.startswith("--") and f"no-{spelling[2:]}" not in self.by_name:
                        self.by_name[f"no-{spelling[2:]}"] = option
        self.value_sets: Mapping[str, List[str]] = table.get("value_sets") or {}

    def suggestion(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self.by_name), n=1, cutoff=0.75)
        return f"; did you mean --{close[0]}?" if close else ""

    def problems(self, flags: Mapping[str, Any]) -> Dict[str, str]:
        """Flag name -> what is wrong with it, for every flag of the merged ``flags``."""
        found: Dict[str, str] = {}
        for name, value in flags.items():
            option = self.by_name.get(name)
            if option is None:
                found[name] = f"--{name} is not an option of vllm serve (vLLM {self.version}){self.suggestion(name)}"
                continue
            problem = self._value_problem(name, option, value, flags)
            if problem:
                found[name] = f"--{name}: {problem}"
        return found

    def _value_problem(self, name: str, option: Mapping[str, Any], value: Any, flags: Mapping[str, Any]) -> str:
        if value is None or value is False:
            return ""  # omitted from the argv
        if option.get("nargs") == 0:
            return "" if value is True else f"{value!r} given to a switch; use true (on) or false (off)"
        if value is True:
            return "needs a value; true makes it a bare switch, which vLLM refuses"
        kind = option.get("type")
        try:
            if kind in INT_TYPES:
                self._check_int(name, kind, value)
            elif kind == "float" or name in FRACTION:
                self._check_float(name, value)
        except CoerceError as exc:
            return str(exc)
        choices = option.get("choices")
        if choices and not isinstance(value, (Mapping, list)) and str(value) not in choices:
            return f"{value!r} is not one of {', '.join(c for c in choices if c != 'None')}"
        if name in VALUE_SETS:
            key, extra, plugin = VALUE_SETS[name]
            known = [*self.value_sets.get(key, []), *extra]
            if known and str(value) not in known and not (plugin and flags.get(plugin)):
                close = difflib.get_close_matches(str(value), known, n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]}?" if close else ""
                return f"{value!r} is not a {name.replace('-', ' ')} vLLM {self.version} knows{hint}"
        return ""

    @staticmethod
    def _check_int(name: str, kind: str, value: Any) -> None:
        if kind == "human_readable_int_or_auto" and (str(value).strip().lower() == "auto" or value in (-1, "-1")):
            return
        if kind != "int" and isinstance(value, str) and not re.match(r"^\s*[+-]?[0-9]+\s*$", value):
            match = _HUMAN_INT_RE.match(value)
            if not match:
                raise CoerceError(f"{value!r} is not a size (digits, optionally with k, m, g, K, M or G)")
            number = float(match.group(1)) * _UNITS[match.group(2)]
        else:
            if isinstance(value, float) and not math.isfinite(value):
                raise CoerceError(f"{value!r} is not a finite number")
            number = to_int(value)
        if name in POSITIVE and number < 1:
            raise CoerceError(f"{value!r} must be at least 1")
        if name in NON_NEGATIVE and number < 0:
            raise CoerceError(f"{value!r} must not be negative")

    @staticmethod
    def _check_float(name: str, value: Any) -> None:
        number = to_float(value)
        if not math.isfinite(number):
            raise CoerceError(f"{value!r} is not a finite number")
        if name in FRACTION and not 0 < number <= 1:
            raise CoerceError(f"{value!r} is out of range: a fraction of the device memory, in (0, 1]")
        if name in NON_NEGATIVE and number < 0:
            raise CoerceError(f"{value!r} must not be negative")


def serve_options(catalogue: Mapping[str, Any]) -> Optional[ServeOptions]:
    """The catalogue's option table, or None when it ships none (the flags are then unchecked)."""
    table = catalogue.get("serve_options")
    return ServeOptions(table) if isinstance(table, Mapping) else None
