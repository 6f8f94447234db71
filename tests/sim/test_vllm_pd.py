"""Prefill/decode over the simulated Mooncake connector: a real TCP pull between two servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterator

import pytest

from ascend_sim import state as st
from ascend_sim.vllm import cli

from .vllm_helpers import (
    HOST,
    MODEL_NAME,
    InProcessServer,
    base_env,
    captured_logs,
    free_port,
    free_port_block,
    make_model,
    post_json,
    sim_environ,
    sse,
)

SIDES = {"prefill": {"dp_size": 1, "tp_size": 2}, "decode": {"dp_size": 1, "tp_size": 2}}


def kv_config(role: str, port: int, engine_id: str) -> str:
    return json.dumps(
        {
            "kv_connector": "MooncakeConnectorV1",
            "kv_role": role,
            "kv_port": str(port),
            "engine_id": engine_id,
            "kv_connector_extra_config": {"use_ascend_direct": True, **SIDES},
        }
    )


@pytest.fixture(scope="module")
def pd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, object]]:
    root = tmp_path_factory.mktemp("vllm-pd")
    prefill_node, decode_node = root / "p-state", root / "d-state"
    st.init_state("a3", directory=prefill_node)
    st.init_state("a3", directory=decode_node)
    model = make_model(root)
    p_kv, d_kv = free_port_block(2), free_port_block(2)
    common = ["--served-model-name", MODEL_NAME, "-tp", "2"]
    started: Dict[str, InProcessServer] = {}
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0"):
        try:
            started["prefill"] = InProcessServer(
                model,
                [*common, "--kv-transfer-config", kv_config("kv_producer", p_kv, "p0")],
                chips=[0, 1],
                state_dir=prefill_node,
            )
            started["decode"] = InProcessServer(
                model,
                [*common, "--kv-transfer-config", kv_config("kv_consumer", d_kv, "d0")],
                chips=[0, 1],
                state_dir=decode_node,
            )
            yield {**started, "p_kv": p_kv, "root": root, "model": model, "node": prefill_node}
        finally:
            for server in started.values():
                server.stop()


REQUEST = {
    "model": MODEL_NAME,
    "messages": [{"role": "user", "content": "Explain prefill and decode in one paragraph."}],
    "max_tokens": 20,
}
PREFILL_PARAMS = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


def prefill_once(pd: Dict[str, object], request_id: str) -> dict:
    prefill = pd["prefill"]
    assert isinstance(prefill, InProcessServer)
    body = {**REQUEST, "max_tokens": 1, "min_tokens": 1, "stream": False, "kv_transfer_params": PREFILL_PARAMS}
    status, result = post_json(prefill.url + "/v1/chat/completions", body, {"X-Request-Id": request_id})
    assert status == 200, result
    assert result["usage"]["completion_tokens"] == 1
    params = result["kv_transfer_params"]
    assert params is not None
    return params


def test_prefill_returns_kv_transfer_params(pd: Dict[str, object]) -> None:
    params = prefill_once(pd, "pd-params")
    assert params["do_remote_prefill"] is True and params["do_remote_decode"] is False
    assert params["remote_host"] == HOST
    assert params["remote_port"] == pd["p_kv"]  # kv_port + dp_rank 0 x tp
    assert params["remote_engine_id"].startswith("p0-") and len(params["remote_engine_id"]) == len("p0-") + 8
    assert params["remote_request_id"].startswith("chatcmpl-pd-params-")
    assert params["remote_block_ids"] and all(isinstance(b, int) for b in params["remote_block_ids"])
    assert params["tp_size"] == 2


def test_decode_pulls_the_blocks_over_tcp_then_generates(pd: Dict[str, object]) -> None:
    decode = pd["decode"]
    assert isinstance(decode, InProcessServer)
    params = prefill_once(pd, "pd-ok")
    status, result = post_json(
        decode.url + "/v1/chat/completions", {**REQUEST, "kv_transfer_params": params}, {"X-Request-Id": "pd-ok"}
    )
    assert status == 200, result
    assert result["id"] == "chatcmpl-pd-ok"
    # the same answer as a single node gives: PD changes where, not what
    local = post_json(decode.url + "/v1/chat/completions", REQUEST)[1]
    assert result["choices"][0]["message"] == local["choices"][0]["message"]
    assert result["usage"] == local["usage"]
    # both prefill TP workers were pulled once, so the blocks are gone: a replay fails
    status, again = post_json(decode.url + "/v1/chat/completions", {**REQUEST, "kv_transfer_params": params})
    assert status == 500
    assert "KV transfer failed" in again["error"]["message"]
    assert "unknown request" in again["error"]["message"]


def test_wrong_remote_port_fails_instead_of_hanging(pd: Dict[str, object]) -> None:
    decode = pd["decode"]
    assert isinstance(decode, InProcessServer)
    params = {**prefill_once(pd, "pd-bad-port"), "remote_port": free_port()}
    status, result = post_json(
        decode.url + "/v1/chat/completions", {**REQUEST, "kv_transfer_params": params}, timeout=5
    )
    assert status == 500
    assert result["error"]["type"] == "InternalServerError"
    assert f"cannot connect to the prefill engine at {HOST}:{params['remote_port']}" in result["error"]["message"]
    # streaming: the headers are out already, so the failure is an SSE error event
    status, events = sse(decode.url + "/v1/chat/completions", {**REQUEST, "stream": True, "kv_transfer_params": params})
    assert status == 200
    assert "KV transfer failed" in events[0]["error"]["message"] and events[-1] == "[DONE]"


def test_wrong_engine_id_is_refused(pd: Dict[str, object]) -> None:
    decode = pd["decode"]
    assert isinstance(decode, InProcessServer)
    params = {**prefill_once(pd, "pd-engine"), "remote_engine_id": "p0-00000000"}
    status, result = post_json(decode.url + "/v1/chat/completions", {**REQUEST, "kv_transfer_params": params})
    assert status == 500 and "engine id mismatch" in result["error"]["message"]


def test_kv_port_clash_is_a_startup_error(pd: Dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    node = pd["node"]
    assert isinstance(node, Path)
    for key, value in base_env(node, ASCEND_RT_VISIBLE_DEVICES="2,3").items():
        if key.startswith(("ASCEND", "VLLM")):
            monkeypatch.setenv(key, value)
    # a second producer on the same node and kv_port as the running prefill (run in-process)
    with captured_logs() as out:
        rc = cli.main(
            [
                "serve", str(pd["model"]), "--host", HOST, "--port", str(free_port()), "-tp", "2",
                "--kv-transfer-config", kv_config("kv_producer", int(str(pd["p_kv"])), "p1"),
            ]
        )  # fmt: skip
    assert rc == 1
    assert f"cannot listen on tcp://{HOST}:{pd['p_kv']}" in out.getvalue()
    assert {h["logic_id"] for h in st.live_holders(node)} == {0, 1}  # its chips 2, 3 were given back
