"""The simulated vLLM validates requests as vLLM 0.33 does: 400 in vLLM's shape, never 500 or 200."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

import pytest

from ascend_sim import state as st
from tests.faults import FaultRecorder

from .vllm_helpers import MODEL_NAME, InProcessServer, http, make_model, post_json, sim_environ

pytestmark = pytest.mark.fault

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
USER = [{"role": "user", "content": "hi"}]

# (route, the fields that make the body wrong): each must be refused with 400.
REFUSED: List[Tuple[str, Dict[str, Any]]] = [
    (CHAT, {"temperature": "hot"}),
    (CHAT, {"top_p": [1]}),
    (CHAT, {"top_k": 1.5}),
    (CHAT, {"seed": "x"}),
    (CHAT, {"max_tokens": "many"}),
    (CHAT, {"n": 0}),
    (CHAT, {"n": "two"}),
    (CHAT, {"stop": 5}),
    (CHAT, {"stop": ["a", 1]}),
    (CHAT, {"stop_token_ids": ["a"]}),
    (CHAT, {"stream": "maybe"}),
    (CHAT, {"logprobs": "lots"}),
    (CHAT, {"top_logprobs": "x"}),
    (CHAT, {"tools": "x"}),
    (CHAT, {"tools": [{"type": "function"}]}),
    (CHAT, {"tools": [{"function": {"name": 3}}]}),
    (CHAT, {"tool_choice": 5}),
    (CHAT, {"messages": [{"content": "no role"}]}),
    (CHAT, {"messages": [{"role": 1, "content": "x"}]}),
    (CHAT, {"messages": [{"role": "user", "content": 5}]}),
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "text", "text": 7}]}]}),
    (CHAT, {"messages": [{"role": "user", "content": [{"no": "type"}]}]}),
    (COMPLETIONS, {"temperature": {}}),
    (COMPLETIONS, {"echo": "sometimes"}),
    (COMPLETIONS, {"max_tokens": 2.5}),
    (COMPLETIONS, {"prompt": [7] * 5000}),  # over --max-model-len 4096
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    root = tmp_path_factory.mktemp("vllm-validation")
    st.init_state("a3", directory=root / "state")
    args = ["--served-model-name", MODEL_NAME, "--max-model-len", "4096"]
    args += ["--enable-auto-tool-choice", "--tool-call-parser", "minimax_m2"]
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0", VLLM_SIM_DECODE_S_PER_TOKEN="0"):
        srv = InProcessServer(make_model(root), args, chips=[0], state_dir=root / "state")
        try:
            yield srv
        finally:
            srv.stop()


def test_wrong_types_are_400_in_vllms_shape(server: InProcessServer, fault: FaultRecorder) -> None:
    fault.describe(
        case="wrong field types, roles, content shapes, tools, n, over max_model_len",
        layer="simulated vLLM",
        injected=f"{len(REFUSED)} bodies, each with one wrong field",
        expected="HTTP 400 {'error': {message, type, code 400}} for each, as vLLM 0.33",
    )
    seen = {}
    for route, wrong in REFUSED:
        base = {"model": MODEL_NAME, "max_tokens": 4}
        base.update({"messages": USER} if route == CHAT else {"prompt": "hi"})
        status, answer = post_json(server.url + route, {**base, **wrong})
        seen[f"{route.rsplit('/', 1)[1]} {sorted(wrong)[0]}"] = status
        assert status == 400, (wrong, answer)
        assert answer["error"]["code"] == 400 and answer["error"]["message"], answer
    fault.observe(f"{sum(s == 400 for s in seen.values())}/{len(seen)} answered 400")


def test_lax_values_are_parsed_as_vllm_does(server: InProcessServer) -> None:
    status, answer = post_json(
        server.url + CHAT, {"model": MODEL_NAME, "messages": USER, "max_tokens": "3", "stream": "false", "top_k": 2.0}
    )
    assert status == 200, answer
    assert answer["usage"]["completion_tokens"] <= 3


def test_a_body_not_declared_json_is_400(server: InProcessServer, fault: FaultRecorder) -> None:
    fault.describe(
        case="Content-Type not application/json",
        layer="simulated vLLM",
        injected="a valid chat body sent as text/plain",
        expected="400 'Unsupported Media Type: Only 'application/json' is allowed'",
    )
    status, _, raw = http(server.url + CHAT, b'{"messages": []}', {"Content-Type": "text/plain"})
    fault.observe(f"HTTP {status}: {raw[:120]!r}")
    assert status == 400 and b"Only 'application/json' is allowed" in raw
