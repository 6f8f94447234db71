"""The fake model's log-probabilities, and vLLM's ``logprobs`` object of ``/v1/completions``.

A real model scores each position of a sequence given what precedes it. The fake one does so
from a hash of the preceding tokens, so a score depends only on the text (any instance, any
batch, prompt as text or as token ids gives the same number) and evaluations are reproducible:

- at each position the model's favourite next token is one of the fake model's words, with a
  log-probability between -0.05 and -1.55; its other candidates follow, each lower;
- a token that is the favourite gets the favourite's log-probability, any other token one
  between -2.5 and -11.5 (derived from the position and the token);
- a token the model generated is its favourite at that position (greedy).

:func:`completion_logprobs` shapes a sequence the way vLLM's ``_create_completion_logprobs``
does: ``tokens``, ``token_logprobs``, ``top_logprobs`` (the token itself first, then the
``logprobs`` best candidates, keyed by token text so duplicates merge) and ``text_offset``;
a position without a score (the first prompt token) is ``None`` in the last three lists but
its text still advances the offsets. :func:`prompt_logprobs` gives vLLM's per-choice
``prompt_logprobs`` (token id -> ``{logprob, rank, decoded_token}``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ascend_sim.vllm import tokens

# vLLM clamps -inf and tiny values to this in the completions API.
FLOOR = -9999.0


@dataclass(frozen=True)
class Position:
    """One scored position: the token there, its log-probability and rank, the candidates."""

    token: str
    logprob: float
    rank: int
    candidates: tuple[tuple[str, float], ...]  # the model's best tokens here, best first


def _context_hashes(sequence: list[str]) -> list[bytes]:
    """For each position, a hash of every token before it."""
    hashes = []
    state = hashlib.sha256(b"ascend-sim-context").digest()
    for token in sequence:
        hashes.append(state)
        state = hashlib.sha256(state + token.encode("utf-8", "surrogatepass")).digest()
    return hashes


def _candidates(context: bytes, count: int, favourite: str | None) -> list[tuple[str, float]]:
    words = [" " + w for w in tokens.VOCAB]
    best = favourite if favourite is not None else words[context[0] % len(words)]
    top = -(0.05 + 1.5 * context[1] / 255)
    ranked = [(best, round(top, 6))]
    step = 0
    while len(ranked) < count:
        step += 1
        word = words[(context[0] + step * 7) % len(words)]
        if word == best or any(word == w for w, _ in ranked):
            continue
        ranked.append((word, round(ranked[-1][1] - 0.5 - context[(step + 1) % 32] / 255, 6)))
    return ranked[:count]


def score(sequence: list[str], generated_from: int, top: int) -> list[Position | None]:
    """Score each position of ``sequence``; positions from ``generated_from`` on were generated."""
    out: list[Position | None] = []
    for i, (token, context) in enumerate(zip(sequence, _context_hashes(sequence), strict=True)):
        if i == 0:
            out.append(None)  # nothing precedes the first token: vLLM reports no score
            continue
        generated = i >= generated_from
        candidates = _candidates(context, max(top, 1), token if generated else None)
        if token == candidates[0][0]:
            logprob, rank = candidates[0][1], 1
        else:
            mark = hashlib.sha256(context + token.encode("utf-8", "surrogatepass")).digest()
            logprob = round(-(2.5 + 9.0 * mark[0] / 255), 6)
            rank = next((r for r, (w, _) in enumerate(candidates, 1) if w == token), 0) or top + 2 + mark[1] % 50
        out.append(Position(token, max(logprob, FLOOR), rank, tuple(candidates[:top])))
    return out


def completion_logprobs(
    sequence: list[str], positions: list[Position | None], top: int, first_offset: int = 0
) -> dict[str, Any]:
    """vLLM's ``CompletionLogProbs`` for ``sequence`` (``top`` = the request's ``logprobs``)."""
    offsets: list[int] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    offset = first_offset
    for token, position in zip(sequence, positions, strict=True):
        offsets.append(offset)
        offset += len(token)
        if position is None:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        token_logprobs.append(position.logprob)
        entries = {position.token: position.logprob}
        for word, logprob in position.candidates[:top]:
            entries.setdefault(word, logprob)
        top_logprobs.append(entries)
    return {
        "text_offset": offsets,
        "token_logprobs": token_logprobs,
        "tokens": list(sequence),
        "top_logprobs": top_logprobs,
    }


def prompt_logprobs(prompt: list[str], positions: list[Position | None], top: int) -> list[dict[str, Any] | None]:
    """vLLM's ``prompt_logprobs`` of a choice: per prompt token, token id -> Logprob (first: None)."""
    out: list[dict[str, Any] | None] = []
    for token, position in zip(prompt, positions, strict=True):
        if position is None:
            out.append(None)
            continue
        own = {"logprob": position.logprob, "rank": position.rank, "decoded_token": token}
        entries = {str(tokens.token_id(token)): own}
        for rank, (word, logprob) in enumerate(position.candidates[:top], 1):
            entries.setdefault(str(tokens.token_id(word)), {"logprob": logprob, "rank": rank, "decoded_token": word})
        out.append(entries)
    return out
