"""Pure pieces of the simulated vLLM: tokenizer, MiniMax parsers, tool rule, fake model, KV store."""

from __future__ import annotations

import asyncio
import json

import pytest

from ascend_sim.vllm import fakemodel, kv, parsers, tokens, tools
from ascend_sim.vllm.engine import PrefixCache
from ascend_sim.vllm.fakemodel import apply_stop as _apply_stop
from ascend_sim.vllm.options import human_readable_int

from .vllm_helpers import HOST, WEATHER_TOOL, free_port_block


@pytest.mark.parametrize(
    "text",
    ["Hello, who are you?", "请查询上海的天气。", "  two  spaces\n\nnew 12345 x", "a</think>\n\n<minimax:tool_call>b"],
)
def test_tokenizer_is_lossless(text: str) -> None:
    assert "".join(tokens.tokenize(text)) == text


def test_token_counts() -> None:
    assert tokens.tokenize("Hello, who are you?") == ["Hello", ",", " who", " are", " you", "?"]
    assert tokens.count_tokens("请查询上海的天气。") == 9  # one per CJK character
    assert tokens.tokenize("<think>x</think>") == ["<think>", "x", "</think>"]  # special tokens stay whole


SCHEMA_TOOL = {
    "type": "function",
    "function": {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "x": {"type": "number"},
                "whole": {"type": "number"},
                "b": {"type": "boolean"},
                "o": {"type": "object"},
                "a": {"type": "array"},
                "s": {"type": "string"},
                "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "level": {"enum": [1, 2, 3]},
            },
        },
    },
}


def test_minimax_tool_parser_converts_by_schema() -> None:
    args = {
        "n": 3,
        "x": 2.5,
        "whole": 4,
        "b": True,
        "o": {"k": [1]},
        "a": [1, "z"],
        "s": "07",
        "maybe": "null",
        "level": 2,
    }
    text = "thinking\n</think>\n\n" + tools.minimax_xml([("f", args), ("f", {})])
    content, calls = parsers.extract_tool_calls(text, [SCHEMA_TOOL])
    assert content == "thinking\n</think>\n\n"
    assert [c["function"]["name"] for c in calls] == ["f", "f"]
    first = json.loads(calls[0]["function"]["arguments"])
    assert first == {**args, "maybe": None}
    assert json.loads(calls[1]["function"]["arguments"]) == {}
    assert all(c["id"].startswith("call_") and len(c["id"]) == 29 for c in calls)
    # a parameter the tool's schema does not describe stays a string (as in vLLM)
    loose = json.loads(
        parsers.extract_tool_calls(tools.minimax_xml([("g", {"v": 5, "w": "hi"})]), None)[1][0]["function"]["arguments"]
    )
    assert loose == {"v": "5", "w": "hi"}
    assert parsers.extract_tool_calls("no call here", [SCHEMA_TOOL]) == ("no call here", [])


def test_streamed_tool_calls_equal_the_non_streamed_ones() -> None:
    raw = "r\n</think>\n\nLet me check." + tools.minimax_xml([("f", {"n": 1, "s": "x"}), ("f", {})])
    _, calls = parsers.extract_tool_calls(raw.partition("</think>")[2], [SCHEMA_TOOL])
    reasoning = parsers.ReasoningStreamer("minimax_m2")
    streamer = parsers.ToolCallStreamer([SCHEMA_TOOL])
    content, args, names = "", {}, {}
    for token in tokens.tokenize(raw):
        _, text = reasoning.feed(token)
        for kind, value in streamer.feed(text or ""):
            if kind == "content":
                content += value
            else:
                args[value["index"]] = args.get(value["index"], "") + value["function"].get("arguments", "")
                if "id" in value:
                    names[value["index"]] = value["function"]["name"]
    assert content == "\n\nLet me check."
    assert names == {0: "f", 1: "f"}
    assert [args[0], args[1]] == [c["function"]["arguments"] for c in calls]


def test_reasoning_split() -> None:
    raw = "why\n</think>\n\nanswer"
    assert parsers.split_reasoning(raw, "minimax_m2") == ("why\n", "\n\nanswer")
    assert parsers.split_reasoning(raw, "minimax_m2_append_think") == (None, "<think>" + raw)
    assert parsers.split_reasoning(raw, None) == (None, raw)
    assert parsers.split_reasoning("cut short", "minimax_m2") == ("cut short", None)


def test_tool_rule() -> None:
    msgs = [{"role": "user", "content": "请查询上海的天气。"}]
    tool = tools.choose_tool([WEATHER_TOOL], "auto", msgs, "请查询上海的天气。")
    assert tool is WEATHER_TOOL
    assert tools.arguments(WEATHER_TOOL, "请查询上海的天气。") == {"city": "上海"}
    english = "What's the weather like in San Francisco? use fahrenheit."
    props = {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}
    loc_tool = {
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "parameters": {"properties": props, "required": ["location", "unit"]},
        }
    }
    assert tools.arguments(loc_tool, english) == {"location": "San Francisco", "unit": "fahrenheit"}
    assert tools.choose_tool([WEATHER_TOOL], "auto", [{"role": "user", "content": "Hi"}], "Hi") is None
    after_result = [*msgs, {"role": "assistant", "content": ""}, {"role": "tool", "content": "sunny"}]
    assert tools.choose_tool([WEATHER_TOOL], "auto", after_result, "请查询上海的天气。") is None
    assert tools.choose_tool([WEATHER_TOOL], "none", msgs, "请查询上海的天气。") is None


def test_fake_model_limits() -> None:
    plan = fakemodel.completion_plan("a prompt")
    natural = len(plan.tokens)
    assert fakemodel.limit(plan, 1000) == (plan.tokens, "stop")
    out, finish = fakemodel.limit(plan, 3)
    assert (len(out), finish) == (3, "length")
    out, finish = fakemodel.limit(plan, natural + 10, ignore_eos=True)
    assert (len(out), finish) == (natural + 10, "length")
    out, finish = fakemodel.limit(plan, 1000, min_tokens=natural + 5)
    assert (len(out), finish) == (natural + 5, "stop")
    assert fakemodel.completion_plan("a prompt").tokens == plan.tokens  # deterministic


def test_stop_strings() -> None:
    out, finish, reason = _apply_stop([" the", " model", " answer"], "length", [" mod", "zzz"])
    assert ("".join(out), finish, reason) == (" the", "stop", " mod")
    assert _apply_stop([" a"], "length", None) == ([" a"], "length", None)


def test_human_readable_int() -> None:
    assert [human_readable_int(v) for v in ("25600", "32k", "32K", "1.5m", "2Ki")] == [
        25600,
        32000,
        32768,
        1500000,
        2048,
    ]


def test_prefix_cache_counts_whole_blocks() -> None:
    cache = PrefixCache(block_size=4)
    prompt = [f"t{i}" for i in range(10)]
    assert cache.match_and_insert(prompt) == 0
    assert cache.match_and_insert(prompt) == 8
    assert cache.match_and_insert(prompt[:8]) == 4  # never the whole prompt: the last token is recomputed
    assert cache.match_and_insert(["x", *prompt[1:]]) == 0  # chained: a different first block misses


def test_kv_side_channel_serves_each_worker_once() -> None:
    async def scenario() -> tuple[int, str]:
        store = kv.KVStore(tp_size=2)
        base = free_port_block(2)
        channel = kv.SideChannel(store, "p0-abc", HOST, base, 2)
        await channel.start()
        try:
            block_ids = store.park("p0-abc", "req-1", 300, 128, "hash")
            params = {
                "remote_host": HOST,
                "remote_port": base,
                "remote_engine_id": "p0-abc",
                "remote_request_id": "req-1",
                "remote_block_ids": block_ids,
            }
            got = await kv.pull(params, local_tp=1, prefill_tp=2, prompt_hash="hash")
            with pytest.raises(kv.KVTransferError) as again:
                await kv.pull(params, local_tp=1, prefill_tp=2, prompt_hash="hash")
            return got, str(again.value)
        finally:
            await channel.close()

    got, error = asyncio.run(scenario())
    assert got == 300
    assert "unknown request req-1" in error
