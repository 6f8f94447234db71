"""The ``vllm serve`` argument parser, built from the real parser's option table.

``../data/vllm-serve-options.json`` lists every option of the real ``vllm serve`` (vLLM
0.33.0): names and aliases, argparse action, the *name* of the type function, choices,
nargs and default. Building the parser from that table makes the simulator accept exactly
the flags real vLLM accepts, and reject the rest with argparse's own wording, e.g.
``vllm serve: error: unrecognized arguments: --foo``.

The type functions are re-created under the names vLLM gives them, because argparse puts
that name in its error text (``invalid union_dict_and_str value: '{bad}'``):

- ``_optional_type``: vLLM's ``optional_type(inner)``: ``""``/``"None"`` -> None, else
  ``inner(val)``; a ValueError becomes ``Value X cannot be converted to <inner>.``. The JSON
  does not say what ``inner`` is, so ``_OPTIONAL_INNER`` below names it for the options that
  matter (configs parsed as JSON, numbers); the rest are strings.
- ``parse_dataclass``: a ``--*-config`` JSON object, validated like pydantic does (a bad JSON
  document is ``1 validation error for CompilationConfig / Invalid JSON: ...``).
- ``loads`` (json.loads), ``union_dict_and_str`` (JSON if it looks like ``{...}``, else the
  string), ``human_readable_int`` (``32k``, ``1M``, ``2Ki``), ``human_readable_int_or_auto``.

vLLM's FlexibleArgumentParser also treats ``_`` and ``-`` in option names as the same
(``--speculative_config``); ``normalize_argv`` does that before argparse sees the list.
Dotted sub-keys (``--compilation-config.mode 3``) and ``-O3`` are not simulated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, NoReturn

DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "vllm-serve-options.json"

# vLLM-Ascend registers this quantization method at import time (``--quantization ascend``).
ASCEND_QUANTIZATION = "ascend"


@lru_cache(maxsize=1)
def option_table() -> dict[str, Any]:
    with open(DATA_FILE, encoding="utf-8") as fh:
        return json.load(fh)


def tool_call_parsers() -> list[str]:
    return list(option_table()["value_sets"]["tool_call_parsers"])


def reasoning_parsers() -> list[str]:
    return list(option_table()["value_sets"]["reasoning_parsers"])


def quantization_methods() -> list[str]:
    methods = list(option_table()["value_sets"]["quantization_methods_upstream"])
    if ASCEND_QUANTIZATION not in methods:
        methods.append(ASCEND_QUANTIZATION)
    return methods


# ---------------------------------------------------------------------------------------------
# Type functions, named as in vLLM (argparse quotes the name in "invalid <name> value: ...").


def _camel(dest: str) -> str:
    """``kv_transfer_config`` -> ``KVTransferConfig`` (the class name pydantic reports)."""
    acronyms = {"kv": "KV", "eplb": "EPLB", "ec": "EC", "mm": "MM"}
    return "".join(acronyms.get(part, part.capitalize()) for part in dest.split("_"))


def _invalid_json(val: str, cls_name: str, exc: json.JSONDecodeError) -> argparse.ArgumentTypeError:
    shown = val if len(val) <= 40 else val[:37] + "..."
    return argparse.ArgumentTypeError(
        f"1 validation error for {cls_name}\n"
        f"  Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
        f"[type=json_invalid, input_value={shown!r}, input_type=str]"
    )


def make_parse_dataclass(dest: str) -> Callable[[str], Any]:
    cls_name = _camel(dest)

    def parse_dataclass(val: str) -> Any:
        try:
            value = json.loads(val)
        except json.JSONDecodeError as exc:
            raise _invalid_json(val, cls_name, exc) from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(
                f"1 validation error for {cls_name}\n  Input should be an object "
                f"[type=model_type, input_value={val!r}, input_type=str]"
            )
        return value

    return parse_dataclass


def loads(val: str) -> Any:
    return json.loads(val)  # JSONDecodeError is a ValueError: argparse reports it itself


def union_dict_and_str(val: str) -> Any:
    # vLLM: a value that looks like a JSON object must be one; anything else stays a string.
    if not re.match(r"(?s)^\s*\{.*\}\s*$", val):
        return val
    return json.loads(val)


_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


def human_readable_int(val: str) -> int:
    """``25600``, ``32k`` (x1000), ``32K`` (x1024), ``1.5m``, ``2Ki``/``1Mi`` (binary)."""
    text = val.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])(i?)", text)
    if match:
        number, suffix, binary = match.groups()
        binary_unit = bool(binary) or suffix.isupper()
        mult = 1024 ** ("kmgt".index(suffix.lower()) + 1) if binary_unit else _SUFFIXES[suffix]
        return int(float(number) * mult)
    return int(text)


def human_readable_int_or_auto(val: str) -> int:
    if val.strip().lower() in ("auto", "-1"):
        return -1
    return human_readable_int(val)


def make_optional_type(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    def _optional_type(val: str) -> Any:
        if val in ("", "None"):
            return None
        try:
            return inner(val)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"Value {val} cannot be converted to {inner}.") from exc

    return _optional_type


def _lambda(val: str) -> str:
    return val


_lambda.__name__ = "<lambda>"

# Inner types of the ``_optional_type`` options the simulator cares about; default str.
_OPTIONAL_INNER: dict[str, Callable[[str], Any]] = {
    "max_log_len": int,
    "grpc_port": int,
    "distributed_timeout_seconds": int,
    "cpu_distributed_timeout_seconds": int,
    "max_parallel_loading_workers": int,
    "kv_cache_memory_bytes": human_readable_int,
    "num_gpu_blocks_override": int,
    "prefix_cache_retention_interval": float,
    "mamba_block_size": int,
    "kv_offloading_size": float,
    "video_pruning_rate": float,
    "max_cpu_loras": int,
    "max_lora_cls_labels": int,
    "max_num_scheduled_tokens": int,
    "max_num_active_seqs": int,
    "max_num_queued_reqs": int,
    "max_num_queued_tokens": int,
    "speculative_config": loads,
    "mm_processor_kwargs": loads,
    "default_mm_loras": loads,
    "custom_histogram_buckets": loads,
}
# Optional config objects: ``_optional_type(parse_dataclass(<Config>))``.
_OPTIONAL_DATACLASS = {
    "kv_transfer_config",
    "kv_events_config",
    "ec_transfer_config",
    "pooler_config",
    "watermark_config",
    "diffusion_config",
    "engram_config",
    "reasoning_config",
    "weight_transfer_config",
    "quantization_config",
}
# The options whose value is a JSON document (for the "bad JSON" checks and logs).
JSON_TYPES = {"parse_dataclass", "loads", "union_dict_and_str", "_parse_type"}


def _type_function(opt: dict[str, Any]) -> Callable[[str], Any] | None:
    name = opt["type"]
    dest = opt["dest"]
    if name is None:
        return None
    if name == "int":
        return int
    if name == "float":
        return float
    if name == "str":
        return str
    if name == "loads":
        return loads
    if name == "_parse_type":
        # vLLM's parse_type(json.loads) for dict-valued options
        def _parse_type(val: str) -> Any:
            try:
                return json.loads(val)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(f"Value {val} cannot be converted to {json.loads}.") from exc

        return _parse_type
    if name == "union_dict_and_str":
        return union_dict_and_str
    if name == "human_readable_int":
        return human_readable_int
    if name == "human_readable_int_or_auto":
        return human_readable_int_or_auto
    if name == "parse_dataclass":
        return make_parse_dataclass(dest)
    if name == "_optional_type":
        if dest in _OPTIONAL_DATACLASS:
            return make_optional_type(make_parse_dataclass(dest))
        return make_optional_type(_OPTIONAL_INNER.get(dest, str))
    if name == "parse_reasoning_parser":
        return parse_reasoning_parser
    return _lambda


def parse_reasoning_parser(val: str) -> str:
    """``--reasoning-parser`` is checked while parsing (vLLM's type function does it)."""
    if val and val not in reasoning_parsers():
        raise argparse.ArgumentTypeError(
            f"invalid reasoning parser: {val} (chose from {{ {','.join(reasoning_parsers())} }})"
        )
    return val


# ---------------------------------------------------------------------------------------------
# Actions


class EnableDisableAction(argparse.Action):
    """``--x``/``--no-x`` or ``--enable-x``/``--disable-x``: one dest, polarity by name."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        kwargs["nargs"] = 0
        super().__init__(option_strings, dest, **kwargs)
        first = option_strings[0]
        self._negative = {o for o in option_strings if _is_negative(first, o)}
        # The spelling that turns the flag off, if the table has one.
        self.off_option = next((o for o in option_strings if o in self._negative), None)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, option_string not in self._negative)


def _is_negative(first: str, opt: str) -> bool:
    if opt.startswith("--no-"):
        return True
    if first.startswith("--enable-") and opt.startswith("--disable-"):
        return True
    return first.startswith("--disable-") and opt.startswith("--enable-")


class _DeprecatedStore(argparse.Action):
    """A deprecated option: stored, with the warning vLLM prints."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        sys.stderr.write(
            f"WARNING: argument '{option_string}' is deprecated and will be removed in a future release.\n"
        )
        setattr(namespace, self.dest, values)


# ---------------------------------------------------------------------------------------------
# Parser


class ServeArgumentParser(argparse.ArgumentParser):
    """argparse with vLLM's ``_``/``-`` equivalence and its ``vllm serve`` usage line."""

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_args(self._negated_forms(normalize_argv(argv)), namespace)

    def _negated_forms(self, argv: list[str]) -> list[str]:
        """Accept ``--no-<flag>`` for every on/off flag, as argparse's BooleanOptionalAction did.

        The table lists ``--enable-prefix-caching``/``--disable-prefix-caching``, yet users
        (and the MiniMax guide) still write ``--no-enable-prefix-caching``; vLLM maps such a
        form onto the flag's "off" spelling.
        """
        known = self._option_string_actions
        out: list[str] = []
        for arg in argv:
            name, sep, value = arg.partition("=")
            if name.startswith("--no-") and name not in known:
                action = known.get("--" + name[5:])
                if isinstance(action, EnableDisableAction) and action.off_option:
                    name = action.off_option
            out.append(name + sep + value)
        return out

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def normalize_argv(argv: list[str]) -> list[str]:
    """``--max_model_len=8`` -> ``--max-model-len=8`` (only the option name part)."""
    out: list[str] = []
    for arg in argv:
        if arg.startswith("--"):
            if "=" in arg:
                key, value = arg.split("=", 1)
                arg = f"{key.replace('_', '-')}={value}"
            else:
                arg = arg.replace("_", "-")
        out.append(arg)
    return out


def _choices(opt: dict[str, Any], conv: Callable[[str], Any] | None) -> list[Any] | None:
    raw = opt["choices"]
    if not raw:
        return None
    result: list[Any] = []
    for choice in raw:
        if choice == "None" and opt["type"] == "_optional_type":
            result.append(None)
        elif opt["type"] == "int":
            result.append(int(choice))
        else:
            result.append(choice)
    return result


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    """Add every ``vllm serve`` option of the table, plus the positional ``model_tag``."""
    parser.add_argument(
        "model_tag", nargs="?", default=None, help="The model tag to serve (optional if specified in config)"
    )
    for opt in option_table()["options"]:
        names = opt["options"]
        action = opt["action"]
        kwargs: dict[str, Any] = {"dest": opt["dest"]}
        default = opt["default"]
        if default == "==SUPPRESS==":
            default = argparse.SUPPRESS
        elif opt["type"] == "parse_dataclass" and isinstance(default, str):
            # The table holds the repr of the default config object; argparse would run the
            # type function on a string default, so keep "not given" as None instead.
            default = None
        kwargs["default"] = default
        if action == "EnableDisableAction":
            parser.add_argument(*names, action=EnableDisableAction, **kwargs)
            continue
        if action == "_StoreTrueAction":
            parser.add_argument(*names, action="store_true", **kwargs)
            continue
        conv = _type_function(opt)
        if conv is not None:
            kwargs["type"] = conv
        choices = _choices(opt, conv)
        if choices is not None:
            kwargs["choices"] = choices
        if opt["nargs"] not in (None, 0):
            kwargs["nargs"] = opt["nargs"]
        if action == "_AppendAction":
            kwargs["action"] = "append"
        elif action == "DeprecatedLogConfigFileAction" or opt.get("deprecated"):
            kwargs["action"] = _DeprecatedStore
        parser.add_argument(*names, **kwargs)


def build_serve_parser(prog: str = "vllm serve") -> ServeArgumentParser:
    parser = ServeArgumentParser(
        prog=prog,
        usage=f"{prog} [model_tag] [options]",
        description="Launch a local OpenAI-compatible API server to serve LLM completions via HTTP.",
        allow_abbrev=False,
    )
    add_serve_options(parser)
    return parser


def parse_serve_args(argv: list[str]) -> argparse.Namespace:
    """Parse ``vllm serve`` arguments; argparse exits with code 2 on errors."""
    return build_serve_parser().parse_args(argv)
