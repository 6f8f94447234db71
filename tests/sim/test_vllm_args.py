"""``vllm serve`` flags and pre-engine checks: what real vLLM accepts and rejects, and how."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ascend_sim.vllm import cli
from ascend_sim.vllm.config import StartupError, build_config
from ascend_sim.vllm.options import parse_serve_args

from .vllm_helpers import base_env, make_model, run_vllm

KV_BOTH_SIDES = {"prefill": {"dp_size": 2, "tp_size": 8}, "decode": {"dp_size": 2, "tp_size": 8}}


def kv_config(role: str, extra: dict | None = None, **more: object) -> str:
    cfg = {
        "kv_connector": "MooncakeConnectorV1",
        "kv_role": role,
        "kv_port": "35880",
        "engine_id": "0",
        "kv_connector_extra_config": {"use_ascend_direct": True, **(extra or KV_BOTH_SIDES)},
        **more,
    }
    return json.dumps(cfg)


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path)


def config_error(argv: list[str]) -> StartupError:
    with pytest.raises(StartupError) as info:
        build_config(parse_serve_args(argv))
    return info.value


def parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        parse_serve_args(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


# -- argparse ---------------------------------------------------------------------------------


def test_unknown_flag_is_an_argparse_error_exit_2(model: Path, tmp_path: Path) -> None:
    rc, out = run_vllm(["serve", str(model), "--foo", "1"], base_env(tmp_path))  # the real command line
    assert rc == 2
    assert "usage: vllm serve [model_tag] [options]" in out
    assert "vllm serve: error: unrecognized arguments: --foo 1" in out


def test_bad_json_in_config_flags(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = parse_error([str(model), "--kv-transfer-config", '{"kv_role": kv_producer}'], capsys)
    assert "argument --kv-transfer-config: 1 validation error for KVTransferConfig" in err
    assert "Invalid JSON" in err
    err = parse_error([str(model), "--compilation-config", "{'cudagraph_mode': 'FULL'}"], capsys)
    assert "argument --compilation-config/-cc: 1 validation error for CompilationConfig" in err
    err = parse_error([str(model), "--additional-config", '{"enable_cpu_binding":true,}'], capsys)
    assert "argument --additional-config: invalid union_dict_and_str value" in err
    err = parse_error([str(model), "--speculative-config", "{method: eagle3}"], capsys)
    assert "argument --speculative-config/-sc: Value {method: eagle3} cannot be converted" in err


def test_underscore_and_dash_are_the_same(model: Path) -> None:
    spec = json.dumps({"method": "eagle3", "model": str(model), "num_speculative_tokens": 3})
    args = parse_serve_args(
        [str(model), "--speculative_config", spec, "--max_model_len=32K", "--tensor_parallel_size", "4"]
    )
    assert args.speculative_config["method"] == "eagle3"
    assert args.max_model_len == 32768  # K = 1024, k = 1000, as vLLM's human_readable_int
    assert parse_serve_args([str(model), "--max-model-len", "32k"]).max_model_len == 32000
    assert args.tensor_parallel_size == 4


def test_no_forms_of_on_off_flags(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_serve_args([str(model), "--no-enable-prefix-caching", "--no-enforce-eager", "-ep"])
    assert args.enable_prefix_caching is False
    assert args.enforce_eager is False
    assert args.enable_expert_parallel is True
    assert parse_serve_args([str(model), "--disable-prefix-caching"]).enable_prefix_caching is False
    # a plain store_true flag has no --no- form
    assert "unrecognized arguments: --no-disable-log-stats" in parse_error(
        [str(model), "--no-disable-log-stats"], capsys
    )


def test_choices_and_types_are_checked(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "argument --dtype: invalid choice: 'fp8'" in parse_error([str(model), "--dtype", "fp8"], capsys)
    assert "argument --port: invalid int value: 'http'" in parse_error([str(model), "--port", "http"], capsys)


def test_unknown_reasoning_parser_is_an_argparse_error(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = parse_error([str(model), "--reasoning-parser", "minimax"], capsys)
    assert "argument --reasoning-parser: invalid reasoning parser: minimax" in err
    assert "minimax_m2_append_think" in err  # the registered names are listed
    assert parse_serve_args([str(model), "--reasoning-parser", "minimax_m2_append_think"]).reasoning_parser


def test_seed_commands_parse(model: Path) -> None:
    """The MiniMax guide's A3 single-node command line is accepted as written."""
    argv = [
        str(model), "--served-model-name", "MiniMax-M2.7", "--host", "0.0.0.0", "--port", "8000",
        "--trust-remote-code", "--quantization", "ascend",
        "--compilation-config", '{"cudagraph_mode": "FULL_DECODE_ONLY"}', "--async-scheduling",
        "--additional-config", '{"enable_cpu_binding":true,\n "enable_fused_mc2":true,\n "weight_nz_mode":true}',
        "--enable-expert-parallel", "--tensor-parallel-size", "4", "--data-parallel-size", "4",
        "--max-num-seqs", "48", "--max-model-len", "40690", "--max-num-batched-tokens", "16384",
        "--gpu-memory-utilization", "0.85", "--no-enable-prefix-caching",
        "--speculative_config", json.dumps({"enforce_eager": True, "method": "eagle3", "model": str(model)}),
        "--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2",
        "--reasoning-parser", "minimax_m2_append_think",
    ]  # fmt: skip
    cfg = build_config(parse_serve_args(argv))
    assert cfg.chips_needed == 16  # tp 4 x dp 4, all DP ranks in this one process
    assert cfg.served_model_names == ["MiniMax-M2.7"]
    assert cfg.max_model_len == 40690
    assert cfg.tools_enabled


# -- pre-engine checks ----------------------------------------------------------------------


def test_tool_parser_checks(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = config_error([str(model), "--enable-auto-tool-choice"])
    assert str(err) == "TypeError: Error: --enable-auto-tool-choice requires --tool-call-parser"
    rc = cli.main(["serve", str(model), "--enable-auto-tool-choice", "--tool-call-parser", "minimax"])
    out = capsys.readouterr().err
    assert rc == 1
    assert "KeyError: 'invalid tool call parser: minimax (chose from {" in out
    assert "minimax_m2" in out


def test_unknown_quantization(model: Path) -> None:
    err = config_error([str(model), "--quantization", "w8a8"])
    assert "Unknown quantization method: w8a8" in err.message
    assert "'ascend'" in err.message
    assert build_config(parse_serve_args([str(model), "-q", "ascend"])).quantization == "ascend"


def test_model_directory_must_hold_config_json(tmp_path: Path) -> None:
    err = config_error([str(tmp_path / "nope")])
    assert err.kind == "ValueError"
    assert f"Invalid repository ID or local directory specified: '{tmp_path / 'nope'}'" in err.message
    (tmp_path / "empty").mkdir()
    assert "config.json" in config_error([str(tmp_path / "empty")]).message
    other = tmp_path / "llama"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert "not supported" in config_error([str(other)]).message


def test_model_option_and_served_name_defaults(model: Path) -> None:
    cfg = build_config(parse_serve_args(["--model", str(model)]))
    assert cfg.model == str(model)
    assert cfg.served_model_names == [str(model)]
    assert cfg.max_model_len == 196608  # from config.json
    assert cfg.port == 8000


def test_max_model_len_beyond_the_model(model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    err = config_error([str(model), "--max-model-len", "200000"])
    assert "User-specified max_model_len (200000) is greater than the derived max_model_len" in err.message
    monkeypatch.setenv("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
    assert build_config(parse_serve_args([str(model), "--max-model-len", "200000"])).max_model_len == 200000


def test_speculative_draft_model_must_exist(model: Path, tmp_path: Path) -> None:
    spec = json.dumps({"method": "eagle3", "model": str(tmp_path / "Eagle3"), "num_speculative_tokens": 3})
    err = config_error([str(model), "--speculative-config", spec])
    assert "Eagle3" in err.message
    draft = make_model(tmp_path, "Eagle3")
    ok = json.dumps({"method": "eagle3", "model": str(draft), "num_speculative_tokens": 3})
    assert build_config(parse_serve_args([str(model), "--speculative-config", ok])).speculative is not None


def test_gpu_memory_utilization_range(model: Path) -> None:
    assert (
        "GPU memory utilization must be within (0, 1]"
        in config_error([str(model), "--gpu-memory-utilization", "1.5"]).message
    )


# -- --kv-transfer-config ---------------------------------------------------------------------


def test_kv_role_is_required_and_checked(model: Path) -> None:
    no_role = json.dumps({"kv_connector": "MooncakeConnectorV1", "kv_port": 30000})
    assert (
        "Please specify kv_role when kv_connector is set"
        in config_error([str(model), "--kv-transfer-config", no_role]).message
    )
    bad_role = json.dumps({"kv_connector": "MooncakeConnectorV1", "kv_role": "producer"})
    assert "Unsupported kv_role: producer" in config_error([str(model), "--kv-transfer-config", bad_role]).message
    bad_connector = json.dumps({"kv_connector": "Mooncake", "kv_role": "kv_producer"})
    assert (
        "Unsupported connector type: Mooncake"
        in config_error([str(model), "--kv-transfer-config", bad_connector]).message
    )


def test_kv_sizes_must_match_the_instance(model: Path) -> None:
    # the seed's prefill: tp 8, dp 2 -- accepted
    rank_1 = ["-tp", "8", "-dp", "2", "--data-parallel-rank", "1"]
    argv = [str(model), *rank_1, "--kv-transfer-config", kv_config("kv_producer")]
    cfg = build_config(parse_serve_args(argv))
    assert cfg.kv_transfer is not None and cfg.kv_transfer.port == 35880
    assert cfg.kv_transfer.side_channel_port(1, 8) == 35888
    assert cfg.kv_transfer.engine_id(1).startswith("0_dp1-")
    assert cfg.chips_needed == 8
    # a producer whose tp differs from kv_connector_extra_config.prefill.tp_size
    err = config_error([str(model), "-tp", "4", "-dp", "2", "--kv-transfer-config", kv_config("kv_producer")])
    assert "kv_connector_extra_config.prefill.tp_size (8) does not match" in err.message
    assert "--tensor-parallel-size (4)" in err.message
    # a consumer checks the decode side
    err = config_error([str(model), "-tp", "8", "-dp", "4", "--kv-transfer-config", kv_config("kv_consumer")])
    assert "kv_connector_extra_config.decode.dp_size (2) does not match" in err.message


def test_prefill_tp_must_not_be_smaller_than_decode_tp(model: Path) -> None:
    sides = {"prefill": {"dp_size": 1, "tp_size": 2}, "decode": {"dp_size": 1, "tp_size": 4}}
    err = config_error([str(model), "-tp", "2", "--kv-transfer-config", kv_config("kv_producer", sides)])
    assert err.message == "prefill_tp_size: 2 must be greater than or equal to the decode_tp_size: 4"


def test_engine_id_gets_a_random_suffix(model: Path) -> None:
    rank_0 = ["-tp", "8", "-dp", "2", "--data-parallel-rank", "0"]
    argv = [str(model), *rank_0, "--kv-transfer-config", kv_config("kv_producer")]
    first = build_config(parse_serve_args(argv)).kv_transfer
    second = build_config(parse_serve_args(argv)).kv_transfer
    assert first is not None and second is not None
    assert first.engine_id(0) != second.engine_id(0)
    assert first.engine_id(0).startswith("0_dp0-")
