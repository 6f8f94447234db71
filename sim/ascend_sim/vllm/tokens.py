"""The simulator's tokenizer and the fake model's words.

Token model (documented, deterministic, cheap; not MiniMax's BPE):

- the special tokens of MiniMax-M2's vocabulary (``<think>``, ``</think>``,
  ``<minimax:tool_call>``, ``</minimax:tool_call>`` and the chat-template markers
  ``]~!b[``, ``]~b]``, ``[e~[``) are one token each;
- otherwise ``TOKEN_RE``: an ASCII word with at most one leading space is one token, digits
  go in groups of up to three, every other non-space character (punctuation, each CJK
  character) is one token, and a remaining run of whitespace is one token.

Tokenizing is lossless (the tokens concatenate back to the text), so streaming one token per
chunk rebuilds exactly the non-streamed text. Token ids (``/tokenize``, ``/detokenize``, prompts
given as ids) are computed from the token itself, so every instance agrees on them without a
vocabulary file, and all stay below 2**63 as vLLM requires: the special tokens are 0..6, an ASCII
word of up to ``MAX_WORD_LETTERS`` letters is a number in base 52 above ``WORD_IDS``, anything
else its UTF-8 bytes (at most ``MAX_TOKEN_BYTES``) behind a marker byte. Longer words and
whitespace runs are cut into pieces that fit, as a BPE vocabulary cuts rare words.

English text comes out at roughly 1.3 tokens per word and Chinese at one token per character --
close enough to a real tokenizer for latency and ``max_model_len`` behaviour.

The fake model writes one-token words from ``VOCAB`` (each with a leading space), picked by a
hash of the prompt, so the same prompt always yields the same text -- on any instance, which
is what lets a PD deployment be compared with a single node.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

SPECIAL_TOKENS = ("<minimax:tool_call>", "</minimax:tool_call>", "<think>", "</think>", "]~!b[", "]~b]", "[e~[")
TOKEN_RE = re.compile(r" ?[A-Za-z]+| ?\d{1,3}| ?[^\sA-Za-z\d]|\s+")
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")

VOCAB = (
    "the", "model", "answer", "is", "simulated", "on", "an", "Ascend", "cluster", "with", "vLLM",
    "serving", "MiniMax", "tokens", "prefill", "decode", "cache", "blocks", "are", "sent", "over",
    "network", "and", "each", "request", "gets", "a", "reply", "that", "depends", "only", "prompt",
    "so", "every", "instance", "agrees", "for", "tests", "which", "makes", "results", "easy", "to",
    "compare", "across", "nodes", "chips", "stay", "busy", "while", "text", "streams", "back",
    "in", "small", "pieces", "until", "limit", "or", "natural", "end", "arrives",
)  # fmt: skip


MAX_WORD_LETTERS = 10
MAX_TOKEN_BYTES = 7
WORD_IDS = 1 << 59
_WORD_RE = re.compile(r" ?[A-Za-z]+")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_LETTER_INDEX = {c: i for i, c in enumerate(_LETTERS)}
_SPECIAL_IDS = {t: i for i, t in enumerate(SPECIAL_TOKENS)}


def _fit(piece: str) -> list[str]:
    """``piece`` cut so that each part has an id (see the module docstring)."""
    if _WORD_RE.fullmatch(piece):
        space = 1 if piece.startswith(" ") else 0
        limit = MAX_WORD_LETTERS + space
        return [piece[i : i + (limit if i == 0 else MAX_WORD_LETTERS)] for i in _word_cuts(len(piece), space)]
    if len(piece.encode("utf-8", "surrogatepass")) <= MAX_TOKEN_BYTES:
        return [piece]
    parts: list[str] = []
    current = ""
    for char in piece:
        if len((current + char).encode("utf-8", "surrogatepass")) > MAX_TOKEN_BYTES:
            parts.append(current)
            current = ""
        current += char
    return [*parts, current]


def _word_cuts(length: int, space: int) -> list[int]:
    first = MAX_WORD_LETTERS + space
    return [0, *range(first, length, MAX_WORD_LETTERS)]


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens (see the module docstring); ``"".join`` gives it back."""
    tokens: list[str] = []
    for piece in _SPECIAL_RE.split(text):
        if not piece:
            continue
        if piece in SPECIAL_TOKENS:
            tokens.append(piece)
        else:
            for token in TOKEN_RE.findall(piece):
                tokens.extend(_fit(token))
    return tokens


def token_id(token: str) -> int:
    """The id of one token as :func:`tokenize` cuts them."""
    if token in _SPECIAL_IDS:
        return _SPECIAL_IDS[token]
    if _WORD_RE.fullmatch(token) and len(token.lstrip(" ")) <= MAX_WORD_LETTERS:
        number = 0
        for char in token.lstrip(" "):
            number = number * 52 + _LETTER_INDEX[char] + 1  # bijective base 52: every length distinct
        return WORD_IDS + number * 2 + (1 if token.startswith(" ") else 0)
    raw = token.encode("utf-8", "surrogatepass")
    if not raw or len(raw) > MAX_TOKEN_BYTES:
        raise ValueError(f"{token!r} is not one token")
    return int.from_bytes(b"\x01" + raw, "big")


def token_text(ident: int) -> str | None:
    """The token of an id, or None if no token has it (out of vocabulary)."""
    if 0 <= ident < len(SPECIAL_TOKENS):
        return SPECIAL_TOKENS[ident]
    if ident >= WORD_IDS:
        number, space = divmod(ident - WORD_IDS, 2)
        letters: list[str] = []
        while number > 0 and len(letters) <= MAX_WORD_LETTERS:
            number -= 1
            number, index = divmod(number, 52)
            letters.append(_LETTERS[index])
        if number or not letters or len(letters) > MAX_WORD_LETTERS:
            return None
        return (" " if space else "") + "".join(reversed(letters))
    raw = ident.to_bytes((ident.bit_length() + 7) // 8 or 1, "big")
    if len(raw) < 2 or raw[0] != 1:
        return None
    try:
        return raw[1:].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None


def encode(text: str) -> list[int]:
    return [token_id(t) for t in tokenize(text)]


def out_of_vocabulary(ids: list[int]) -> int | None:
    """The first id no token has, or None."""
    return next((i for i in ids if not isinstance(i, int) or isinstance(i, bool) or token_text(i) is None), None)


def decode_tokens(ids: list[int]) -> list[str]:
    """The tokens of ``ids`` (each must be in the vocabulary: see :func:`out_of_vocabulary`)."""
    return [token_text(i) or "" for i in ids]


def count_tokens(text: str) -> int:
    return len(tokenize(text))


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def words(seed: bytes, start: int = 0) -> Iterator[str]:
    """An endless, deterministic stream of one-token words (leading space included)."""
    base = int.from_bytes(seed[:8], "big")
    i = start
    while True:
        yield " " + VOCAB[(base + i * 7919 + (i * i) % 13) % len(VOCAB)]
        i += 1


def natural_length(seed: bytes) -> int:
    """How many answer tokens the fake model writes before its end-of-sequence (8..63)."""
    return 8 + seed[8] % 56


# ---------------------------------------------------------------------------------------------
# Chat template (shaped like MiniMax-M2's, so prompt token counts grow the same way)


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content`` (a string or a list of parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "text" or "text" in part:
                    parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)


def _render_call(fn: dict[str, Any]) -> str:
    name = fn.get("name", "")
    return f'<invoke name="{name}">{fn.get("arguments", "")}</invoke>'


def render_chat(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The prompt text the chat template would produce (for counting and hashing)."""
    system = "You are a helpful assistant."
    body: list[str] = []
    for msg in messages:
        role = msg.get("role")
        text = message_text(msg.get("content"))
        if role in ("system", "developer"):
            system = text
        elif role == "user":
            body.append(f"]~b]user\n{text}[e~[\n")
        elif role == "assistant":
            calls = [c.get("function") or {} for c in msg.get("tool_calls") or [] if isinstance(c, dict)]
            rendered = "".join(_render_call(fn) for fn in calls)
            body.append(f"]~b]ai\n{text}{rendered}[e~[\n")
        elif role == "tool":
            body.append(f"]~b]tool\n<response>{text}</response>[e~[\n")
    head = f"]~!b[]~b]system\n{system}"
    if tools:
        listed = "\n".join(f"<tool>{json.dumps(t.get('function', t), ensure_ascii=False)}</tool>" for t in tools)
        head += (
            "\n\n# Tools\nYou may call one or more tools to assist with the user query.\n"
            f"Here are the tools available in JSONSchema format:\n\n<tools>\n{listed}\n</tools>\n\n"
            "When making tool calls, use XML format to invoke tools and pass parameters:\n\n"
            '<minimax:tool_call>\n<invoke name="tool-name-1">\n'
            '<parameter name="param-key-1">param-value-1</parameter>\n...\n</invoke>'
        )
    return head + "[e~[\n" + "".join(body) + "]~b]ai\n<think>\n"
