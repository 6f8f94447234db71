"""From parsed ``vllm serve`` flags to a checked ``ServeConfig``.

Every check here is one real vLLM (or vLLM-Ascend) makes before the engine starts, with its
error text where it is known, because those texts are what an operator searches for:

- the model directory (``Invalid repository ID or local directory specified``), its
  ``config.json`` architecture and ``max_position_embeddings`` (``User-specified
  max_model_len (X) is greater than the derived max_model_len``);
- ``--enable-auto-tool-choice`` needs a registered ``--tool-call-parser``;
- ``--quantization`` must be a registered method (upstream ones plus ``ascend``);
- ``--gpu-memory-utilization`` in (0, 1];
- data parallel ranks/sizes;
- ``--kv-transfer-config`` (``kv_role``, the Mooncake prefill/decode sizes, prefill tp >=
  decode tp) and ``--speculative-config`` (the draft model directory must exist).

A failed check raises ``StartupError``: the exception type and message vLLM would print.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ascend_sim.vllm import options

SUPPORTED_ARCHITECTURES = ("MiniMaxM2ForCausalLM",)
# MiniMax-M2's config.json value, used when config.json has no max_position_embeddings.
DEFAULT_MAX_POSITION_EMBEDDINGS = 196608
# Ascend attention backends use 128-token KV blocks.
DEFAULT_BLOCK_SIZE = 128
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_LOGPROBS = 20  # vLLM's ModelConfig.max_logprobs
DEFAULT_KV_PORT = 14579  # vLLM's KVTransferConfig.kv_port default
DEFAULT_DP_ADDRESS = "127.0.0.1"
DEFAULT_DP_RPC_PORT = 29550
KV_ROLES = ("kv_producer", "kv_consumer", "kv_both")
# Connectors vLLM and vLLM-Ascend register; only the Mooncake ones are simulated.
MOONCAKE_CONNECTORS = ("MooncakeConnectorV1", "MooncakeConnector")
KNOWN_CONNECTORS = (
    *MOONCAKE_CONNECTORS,
    "MooncakeLayerwiseConnector",
    "MooncakeConnectorStoreV1",
    "AscendStoreConnector",
    "LLMDataDistCMgrConnector",
    "NixlConnector",
    "P2pNcclConnector",
    "LMCacheConnectorV1",
    "SharedStorageConnector",
    "OffloadingConnector",
    "MultiConnector",
    "ExampleConnector",
)


class StartupError(Exception):
    """A check failed: ``kind`` is the exception class vLLM raises (``ValueError``...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass
class KVTransfer:
    """The parts of ``--kv-transfer-config`` the simulated Mooncake connector uses."""

    connector: str
    role: str
    port: int
    base_engine_id: str  # as configured (a uuid when not given)
    suffix: str  # random per start: a restarted engine is a new engine
    extra: dict[str, Any]
    data_parallel_size: int = 1
    prefill_tp: int | None = None
    decode_tp: int | None = None
    prefill_dp: int | None = None
    decode_dp: int | None = None

    def engine_id(self, dp_rank: int) -> str:
        """The engine id of one DP rank: vLLM appends ``_dp<rank>`` so ranks differ."""
        rank = f"_dp{dp_rank}" if self.data_parallel_size > 1 else ""
        return f"{self.base_engine_id}{rank}-{self.suffix}"

    def side_channel_port(self, dp_rank: int, tp_size: int) -> int:
        """First handshake port of a DP rank; its TP workers use this port and the next ones."""
        return self.port + dp_rank * tp_size

    @property
    def simulated(self) -> bool:
        return self.connector in MOONCAKE_CONNECTORS

    @property
    def is_producer(self) -> bool:
        return self.role in ("kv_producer", "kv_both")

    @property
    def is_consumer(self) -> bool:
        return self.role in ("kv_consumer", "kv_both")


@dataclass
class ServeConfig:
    model: str
    served_model_names: list[str]
    architecture: str
    max_model_len: int
    host: str | None
    port: int
    api_keys: list[str]
    tensor_parallel_size: int
    pipeline_parallel_size: int
    prefill_context_parallel_size: int
    data_parallel_size: int
    data_parallel_rank: int | None  # set: external DP (one rank per process)
    local_dp_ranks: list[int]
    data_parallel_address: str
    data_parallel_rpc_port: int
    gpu_memory_utilization: float
    enable_auto_tool_choice: bool
    tool_call_parser: str | None
    reasoning_parser: str | None
    quantization: str | None
    max_num_seqs: int
    block_size: int
    enable_prefix_caching: bool
    enable_prompt_tokens_details: bool
    enable_force_include_usage: bool
    max_logprobs: int
    enable_tokenizer_info_endpoint: bool
    disable_access_log: bool
    disable_log_stats: bool
    headless: bool
    seed: int
    kv_transfer: KVTransfer | None
    speculative: dict[str, Any] | None
    non_default_args: dict[str, Any] = field(default_factory=dict)

    @property
    def world_size_per_rank(self) -> int:
        """Chips one DP rank uses: tp x pp x pcp (vLLM-Ascend's world size per rank)."""
        return self.tensor_parallel_size * self.pipeline_parallel_size * self.prefill_context_parallel_size

    @property
    def chips_needed(self) -> int:
        return self.world_size_per_rank * len(self.local_dp_ranks)

    @property
    def tools_enabled(self) -> bool:
        return self.enable_auto_tool_choice and self.tool_call_parser is not None


def _invalid_model(model: str) -> StartupError:
    return StartupError(
        "ValueError",
        f"Invalid repository ID or local directory specified: '{model}'.\n"
        "Please verify the following requirements:\n"
        "1. Provide a valid Hugging Face repository ID.\n"
        "2. Specify a local directory that contains a recognized configuration file.\n"
        "   - For Hugging Face models: ensure the presence of a 'config.json'.\n"
        "   - For Mistral models: ensure the presence of a 'params.json'.",
    )


def read_model_config(model: str) -> dict[str, Any]:
    """``config.json`` of a local model directory (vLLM-Ascend nodes are offline: no Hub)."""
    path = Path(model)
    config_file = path / "config.json"
    if not path.is_dir() or not config_file.is_file():
        raise _invalid_model(model)
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StartupError(
            "OSError", f"It looks like the config file at '{config_file}' is not a valid JSON file. ({exc})"
        ) from None
    if not isinstance(data, dict):
        raise StartupError("OSError", f"It looks like the config file at '{config_file}' is not a valid JSON file.")
    return data


def _architecture(model_config: dict[str, Any]) -> str:
    archs = model_config.get("architectures") or []
    for arch in archs:
        if arch in SUPPORTED_ARCHITECTURES:
            return arch
    raise StartupError(
        "ValueError",
        f"Model architectures {archs!r} are not supported for now. "
        f"Supported architectures (simulated vLLM-Ascend): {list(SUPPORTED_ARCHITECTURES)!r}",
    )


def _max_model_len(requested: int | None, model_config: dict[str, Any]) -> int:
    derived = int(model_config.get("max_position_embeddings") or DEFAULT_MAX_POSITION_EMBEDDINGS)
    if requested is None or requested == -1:
        return derived
    if requested <= 0:
        raise StartupError("ValueError", f"max_model_len must be positive, got {requested}")
    if requested > derived and os.environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "0") not in ("1", "true", "True"):
        raise StartupError(
            "ValueError",
            f"User-specified max_model_len ({requested}) is greater than the derived max_model_len "
            f"(max_position_embeddings={derived} or model_max_length=None in model's config.json). "
            "To allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. "
            "VLLM_ALLOW_LONG_MAX_MODEL_LEN must be used with extreme caution. If the model uses "
            "relative position encoding (RoPE), positions exceeding derived_max_model_len lead to "
            "nan. If the model uses absolute position encoding, positions exceeding "
            "derived_max_model_len will cause a CUDA array out-of-bounds error.",
        )
    return requested


def _int_field(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StartupError(
            "ValueError",
            f"1 validation error for KVTransferConfig\n{what}\n  Input should be a valid integer, unable to parse "
            f"string as an integer [type=int_parsing, input_value={value!r}]",
        ) from None


def _side_sizes(extra: dict[str, Any], side: str) -> tuple[int | None, int | None]:
    block = extra.get(side)
    if block is None:
        return None, None
    if not isinstance(block, dict):
        raise StartupError("ValueError", f"kv_connector_extra_config.{side} must be an object, got {block!r}")
    tp = block.get("tp_size")
    dp = block.get("dp_size")
    return (
        _int_field(tp, f"kv_connector_extra_config.{side}.tp_size") if tp is not None else None,
        _int_field(dp, f"kv_connector_extra_config.{side}.dp_size") if dp is not None else None,
    )


def parse_kv_transfer(raw: dict[str, Any] | None, *, tp: int, dp: int) -> KVTransfer | None:
    """Check ``--kv-transfer-config`` like vLLM's KVTransferConfig and the Mooncake connector."""
    if raw is None:
        return None
    connector = raw.get("kv_connector")
    role = raw.get("kv_role")
    if role is not None and role not in KV_ROLES:
        raise StartupError("ValueError", f"Unsupported kv_role: {role}. Supported roles are {KV_ROLES}")
    if connector is None:
        return None
    if role is None:
        raise StartupError(
            "ValueError", f"Please specify kv_role when kv_connector is set, supported roles are {KV_ROLES}"
        )
    if connector not in KNOWN_CONNECTORS:
        raise StartupError("ValueError", f"Unsupported connector type: {connector}")
    port = _int_field(raw.get("kv_port", DEFAULT_KV_PORT), "kv_port")
    extra = raw.get("kv_connector_extra_config") or {}
    if not isinstance(extra, dict):
        raise StartupError("ValueError", f"kv_connector_extra_config must be an object, got {extra!r}")
    base_id = raw.get("engine_id")
    kv = KVTransfer(
        connector=connector,
        role=role,
        port=port,
        base_engine_id=str(base_id) if base_id is not None else secrets.token_hex(16),
        suffix=secrets.token_hex(4),
        extra=extra,
        data_parallel_size=dp,
    )
    if not kv.simulated:
        return kv
    kv.prefill_tp, kv.prefill_dp = _side_sizes(extra, "prefill")
    kv.decode_tp, kv.decode_dp = _side_sizes(extra, "decode")
    if kv.prefill_tp is None or kv.decode_tp is None:
        missing = "prefill" if kv.prefill_tp is None else "decode"
        raise StartupError(
            "AssertionError",
            f"MooncakeConnector needs kv_connector_extra_config.{missing}.tp_size "
            f'(assert "tp_size" in {missing}_parallel_config.keys())',
        )
    if kv.prefill_tp < kv.decode_tp:
        raise StartupError(
            "ValueError",
            f"prefill_tp_size: {kv.prefill_tp} must be greater than or equal to the decode_tp_size: {kv.decode_tp}",
        )
    side = "prefill" if role == "kv_producer" else "decode" if role == "kv_consumer" else None
    if side is not None:
        own_tp = kv.prefill_tp if side == "prefill" else kv.decode_tp
        own_dp = kv.prefill_dp if side == "prefill" else kv.decode_dp
        if own_tp != tp:
            raise StartupError(
                "ValueError",
                f"kv_connector_extra_config.{side}.tp_size ({own_tp}) does not match this {role}'s "
                f"--tensor-parallel-size ({tp})",
            )
        if own_dp is not None and own_dp != dp:
            raise StartupError(
                "ValueError",
                f"kv_connector_extra_config.{side}.dp_size ({own_dp}) does not match this {role}'s "
                f"--data-parallel-size ({dp})",
            )
    return kv


def _check_speculative(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise StartupError("ValueError", f"speculative_config must be a JSON object, got {spec!r}")
    method = spec.get("method")
    draft = spec.get("model")
    if method in ("eagle", "eagle3", "medusa", "mlp_speculator", "draft_model") and not draft:
        raise StartupError("ValueError", f'speculative_config: method {method!r} needs the draft "model"')
    if draft:
        path = Path(str(draft))
        if not path.is_dir() or not (path / "config.json").is_file():
            raise _invalid_model(str(draft))
    num = spec.get("num_speculative_tokens")
    if num is not None and (not isinstance(num, int) or num <= 0):
        raise StartupError("ValueError", f"Expected num_speculative_tokens to be greater than zero ({num}).")
    return spec


def _local_dp_ranks(args: argparse.Namespace) -> list[int]:
    size = args.data_parallel_size
    if size < 1:
        raise StartupError("ValueError", f"data_parallel_size must be >= 1, got {size}")
    if args.data_parallel_rank is not None:
        rank = args.data_parallel_rank
        if not 0 <= rank < size:
            raise StartupError(
                "ValueError", f"data_parallel_rank ({rank}) must be in [0, {size}) (data_parallel_size={size})"
            )
        return [rank]
    start = args.data_parallel_start_rank or 0
    local = args.data_parallel_size_local if args.data_parallel_size_local is not None else size - start
    ranks = list(range(start, start + local))
    if not ranks or ranks[-1] >= size:
        raise StartupError(
            "ValueError",
            f"data_parallel_size_local ({local}) and data_parallel_start_rank ({start}) do not fit "
            f"data_parallel_size ({size})",
        )
    return ranks


def _non_default(args: argparse.Namespace) -> dict[str, Any]:
    """What vLLM logs as ``non-default args``: options that differ from the table default."""
    defaults = {opt["dest"]: opt["default"] for opt in options.option_table()["options"]}
    result: dict[str, Any] = {}
    for key, value in sorted(vars(args).items()):
        if key == "model_tag":
            if value is not None:
                result[key] = value
            continue
        if key in defaults and value != defaults[key] and value is not None:
            result[key] = value
    return result


def build_config(args: argparse.Namespace) -> ServeConfig:
    """Run vLLM's pre-engine checks; raise StartupError on the first failure."""
    if args.enable_auto_tool_choice:
        if not args.tool_call_parser:
            raise StartupError("TypeError", "Error: --enable-auto-tool-choice requires --tool-call-parser")
        parsers = options.tool_call_parsers()
        if args.tool_call_parser not in parsers:
            raise StartupError(
                "KeyError",
                f"'invalid tool call parser: {args.tool_call_parser} (chose from {{ {','.join(parsers)} }})'",
            )
    model = args.model_tag if args.model_tag is not None else args.model
    if args.quantization is not None and args.quantization not in options.quantization_methods():
        raise StartupError(
            "pydantic_core._pydantic_core.ValidationError",
            "1 validation error for ModelConfig\n"
            f"  Value error, Unknown quantization method: {args.quantization}. "
            f"Must be one of {options.quantization_methods()}.",
        )
    if not 0 < args.gpu_memory_utilization <= 1:
        raise StartupError(
            "ValueError", f"GPU memory utilization must be within (0, 1]. Got {args.gpu_memory_utilization}."
        )
    for name in ("tensor_parallel_size", "pipeline_parallel_size", "prefill_context_parallel_size"):
        value = getattr(args, name, 1) or 1
        if value < 1:
            raise StartupError("ValueError", f"{name} must be >= 1, got {value}")
    model_config = read_model_config(model)
    arch = _architecture(model_config)
    max_model_len = _max_model_len(args.max_model_len, model_config)
    speculative = _check_speculative(args.speculative_config)
    local_ranks = _local_dp_ranks(args)
    tp = args.tensor_parallel_size
    dp = args.data_parallel_size
    kv = parse_kv_transfer(args.kv_transfer_config, tp=tp, dp=dp)
    api_keys = list(args.api_key or [])
    if not api_keys and os.environ.get("VLLM_API_KEY"):
        api_keys = [os.environ["VLLM_API_KEY"]]
    served = list(args.served_model_name or [model])
    return ServeConfig(
        model=model,
        served_model_names=served,
        architecture=arch,
        max_model_len=max_model_len,
        host=args.host,
        port=args.port,
        api_keys=api_keys,
        tensor_parallel_size=tp,
        pipeline_parallel_size=args.pipeline_parallel_size or 1,
        prefill_context_parallel_size=getattr(args, "prefill_context_parallel_size", 1) or 1,
        data_parallel_size=dp,
        data_parallel_rank=args.data_parallel_rank,
        local_dp_ranks=local_ranks,
        data_parallel_address=args.data_parallel_address or DEFAULT_DP_ADDRESS,
        data_parallel_rpc_port=args.data_parallel_rpc_port or DEFAULT_DP_RPC_PORT,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enable_auto_tool_choice=bool(args.enable_auto_tool_choice),
        tool_call_parser=args.tool_call_parser,
        reasoning_parser=args.reasoning_parser or None,
        quantization=args.quantization,
        max_num_seqs=args.max_num_seqs or DEFAULT_MAX_NUM_SEQS,
        block_size=args.block_size or DEFAULT_BLOCK_SIZE,
        enable_prefix_caching=args.enable_prefix_caching is not False,
        enable_prompt_tokens_details=bool(args.enable_prompt_tokens_details),
        enable_force_include_usage=bool(args.enable_force_include_usage),
        max_logprobs=args.max_logprobs if args.max_logprobs is not None else DEFAULT_MAX_LOGPROBS,
        enable_tokenizer_info_endpoint=bool(args.enable_tokenizer_info_endpoint),
        disable_access_log=bool(args.disable_uvicorn_access_log),
        disable_log_stats=bool(args.disable_log_stats),
        headless=bool(args.headless),
        seed=args.seed if args.seed is not None else 0,
        kv_transfer=kv,
        speculative=speculative,
        non_default_args=_non_default(args),
    )
