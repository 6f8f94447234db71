"""The simulated ``/v1/completions`` with prompt lists, ``logprobs`` and ``echo``, and the
tokenizer routes, as vLLM 0.33 answers them (what lm-eval's ``local-completions`` relies on)."""

from __future__ import annotations

import json
from typing import Dict, Iterator

import pytest

from ascend_sim import state as st
from ascend_sim.vllm import logprobs, tokens

from .vllm_helpers import API_KEY, MODEL_NAME, InProcessServer, http, make_model, post_json, sim_environ, sse

COMPLETIONS = "/v1/completions"
PROMPT = "Question: what is 12 plus 30?\nAnswer:"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, InProcessServer]]:
    root = tmp_path_factory.mktemp("vllm-logprobs")
    node = root / "state"
    st.init_state("a3", directory=node)
    model = make_model(root)
    common = ["--served-model-name", MODEL_NAME, "--max-model-len", "4096"]
    started: Dict[str, InProcessServer] = {}
    with sim_environ(VLLM_SIM_LOAD_SECONDS="0", VLLM_SIM_DECODE_S_PER_TOKEN="0"):
        try:
            started["info"] = InProcessServer(
                model,
                [*common, "--enable-tokenizer-info-endpoint", "--api-key", API_KEY, "--max-logprobs", "5"],
                chips=[0],
                state_dir=node,
            )
            started["plain"] = InProcessServer(model, common, chips=[1], state_dir=node)
            yield started
        finally:
            for server in started.values():
                server.stop()


def _complete(server: InProcessServer, **body: object) -> Dict:
    status, answer = post_json(server.url + COMPLETIONS, {"model": MODEL_NAME, **body})
    assert status == 200, answer
    return answer


def test_token_ids_round_trip_and_stay_below_2_63() -> None:
    texts = [PROMPT, " internationalization   \n\n\n\n\n\n\n\n x", "a\u3000\u3000\u3000b"]
    texts.append("请查询上海的天气。<think>ok</think>")
    for text in texts:
        ids = tokens.encode(text)
        assert "".join(tokens.decode_tokens(ids)) == text
        assert all(0 <= i < 2**63 for i in ids)
        assert len(ids) == len(tokens.tokenize(text))
    assert tokens.token_text(12345) is None and tokens.out_of_vocabulary([tokens.token_id(" x"), 12345]) == 12345
    # the fake model's words stay one token each (vllm bench serve's random prompts count on it)
    assert all(len(tokens.tokenize(" " + w)) == 1 for w in tokens.VOCAB)


def test_scores_depend_only_on_the_text() -> None:
    seq = tokens.tokenize(PROMPT + " 42")
    first = logprobs.score(seq, len(seq), 3)
    assert first == logprobs.score(seq, len(seq), 3)
    assert first[0] is None and all(p is not None and p.logprob < 0 for p in first[1:])
    shown = logprobs.completion_logprobs(seq, first, 1)
    assert shown["text_offset"] == [sum(len(t) for t in seq[:i]) for i in range(len(seq))]


def test_lm_eval_loglikelihood_request(servers: Dict[str, InProcessServer]) -> None:
    """What lm-eval sends for a loglikelihood: token ids, echo, logprobs 1, max_tokens 1."""
    server = servers["plain"]
    context, continuation = tokens.encode(PROMPT), tokens.encode(" 42")
    answer = _complete(
        server, prompt=[context + continuation], echo=True, logprobs=1, max_tokens=1, temperature=0, seed=1234
    )
    choice = answer["choices"][0]
    lp = choice["logprobs"]
    n = len(context) + len(continuation)
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"]) == n + 1
    assert lp["tokens"][:n] == tokens.decode_tokens(context + continuation)
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert choice["text"].startswith(PROMPT + " 42") and choice["text"] == "".join(lp["tokens"])
    for token, value, top in zip(lp["tokens"][1:], lp["token_logprobs"][1:], lp["top_logprobs"][1:]):
        assert top[token] == value and 1 <= len(top) <= 2  # the token itself + the 1 best
    # lm-eval's parse: sum over the continuation, greedy if each token is the best
    assert lp["token_logprobs"][-1] == max(lp["top_logprobs"][-1].values())  # the generated token is greedy
    assert answer["usage"]["prompt_tokens"] == n and answer["usage"]["completion_tokens"] == 1
    assert choice["prompt_logprobs"][0] is None and len(choice["prompt_logprobs"]) == n
    # the same text as a string scores the same: reproducible whatever the client sends
    again = _complete(server, prompt=PROMPT + " 42", echo=True, logprobs=1, max_tokens=1)
    assert again["choices"][0]["logprobs"]["token_logprobs"] == lp["token_logprobs"]


def test_prompt_lists_give_one_choice_per_prompt_in_order(servers: Dict[str, InProcessServer]) -> None:
    server = servers["plain"]
    prompts = ["1 + 1 =", "The sky is", "Name a colour:"]
    batch = _complete(server, prompt=prompts, max_tokens=4)
    singles = [_complete(server, prompt=p, max_tokens=4) for p in prompts]
    assert [c["index"] for c in batch["choices"]] == [0, 1, 2]
    assert [c["text"] for c in batch["choices"]] == [s["choices"][0]["text"] for s in singles]
    assert batch["usage"]["prompt_tokens"] == sum(s["usage"]["prompt_tokens"] for s in singles)
    assert batch["usage"]["completion_tokens"] == 12
    ids = _complete(server, prompt=[tokens.encode(p) for p in prompts], max_tokens=4)
    assert [c["text"] for c in ids["choices"]] == [c["text"] for c in batch["choices"]]
    streamed = {"model": MODEL_NAME, "prompt": prompts, "max_tokens": 4, "stream": True}
    status, events = sse(server.url + COMPLETIONS, streamed)
    assert status == 200
    texts = ["", "", ""]
    for event in events[:-1]:
        texts[event["choices"][0]["index"]] += event["choices"][0]["text"]
    assert texts == [c["text"] for c in batch["choices"]]


def test_echo_without_generation(servers: Dict[str, InProcessServer]) -> None:
    answer = _complete(servers["plain"], prompt=PROMPT, echo=True, max_tokens=0, logprobs=0)
    choice = answer["choices"][0]
    assert choice["text"] == PROMPT
    assert choice["logprobs"]["tokens"] == tokens.tokenize(PROMPT)
    assert all(top is None or len(top) == 1 for top in choice["logprobs"]["top_logprobs"])
    assert answer["usage"]["completion_tokens"] == 1  # vLLM runs (and counts) one engine step
    plain = _complete(servers["plain"], prompt=PROMPT, max_tokens=3, logprobs=2)
    lp = plain["choices"][0]["logprobs"]
    assert lp["text_offset"][0] == 0 and len(lp["tokens"]) == 3 and None not in lp["token_logprobs"]
    assert plain["choices"][0]["prompt_logprobs"] is None


def test_streamed_logprobs_and_echo(servers: Dict[str, InProcessServer]) -> None:
    body = {"model": MODEL_NAME, "prompt": PROMPT, "max_tokens": 3, "echo": True, "logprobs": 1}
    whole = _complete(servers["plain"], **{k: v for k, v in body.items() if k != "model"})
    status, events = sse(servers["plain"].url + COMPLETIONS, {**body, "stream": True})
    assert status == 200
    chunks = [e["choices"][0] for e in events[:-1]]
    assert "".join(c["text"] for c in chunks) == whole["choices"][0]["text"]
    assert chunks[0]["text"].startswith(PROMPT)
    offsets = [o for c in chunks for o in c["logprobs"]["text_offset"]]
    assert offsets == whole["choices"][0]["logprobs"]["text_offset"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "x", "logprobs": 6}, "Requested sample logprobs of 6, which is greater than max allowed: 5"),
        ({"prompt": "x", "logprobs": "1"}, "`logprobs` must be an integer."),
        ({"prompt": "x", "logprobs": -2}, "`logprobs` must be a positive value or -1."),
        ({"prompt": "x", "prompt_logprobs": 1, "stream": True}, "`prompt_logprobs` are not available when"),
        ({"prompt": [[300, 2], [12345]]}, "Token id 12345 is out of vocabulary"),
        ({"prompt": ["a", ""]}, "Either prompt or prompt_embeds must be provided"),
        ({"prompt": ["a", [3]]}, "prompt: Input should be"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens must be at least 1"),
    ],
)
def test_refused_like_vllm(servers: Dict[str, InProcessServer], body: Dict, message: str) -> None:
    status, answer = post_json(
        servers["info"].url + COMPLETIONS, {"model": MODEL_NAME, **body}, {"Authorization": f"Bearer {API_KEY}"}
    )
    assert status == 400 and message in answer["error"]["message"], answer


def test_tokenizer_routes(servers: Dict[str, InProcessServer]) -> None:
    info = servers["info"]  # with --api-key: these routes are outside /v1, so no key is needed
    status, got = post_json(info.url + "/tokenize", {"prompt": PROMPT, "add_special_tokens": False})
    assert status == 200 and got["count"] == len(got["tokens"]) and got["max_model_len"] == 4096
    assert got["token_strs"] is None
    status, back = post_json(info.url + "/detokenize", {"tokens": got["tokens"]})
    assert status == 200 and back == {"prompt": PROMPT}
    status, chat = post_json(
        info.url + "/tokenize", {"messages": [{"role": "user", "content": "hi"}], "return_token_strs": True}
    )
    assert status == 200 and "".join(chat["token_strs"]).endswith("]~b]ai\n<think>\n")
    status, bad = post_json(info.url + "/detokenize", {"tokens": [12345]})
    assert status == 400 and "out of vocabulary" in bad["error"]["message"]
    status, _ = post_json(info.url + "/tokenize", {"model": "nope", "prompt": "x"})
    assert status == 404
    status, _, raw = http(info.url + "/tokenizer_info")
    described = json.loads(raw)
    assert status == 200 and described["eos_token"] == "[e~[" and described["model_max_length"] == 4096
    status, _, _ = http(servers["plain"].url + "/tokenizer_info")
    assert status == 404  # off by default, as in vLLM
