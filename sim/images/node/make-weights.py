"""Write the simulated weights directories of a node (run at image build time).

    python3 make-weights.py /root/.cache

One directory per weight set of the seed's table (section 3.1), named like the ModelScope
repositories a site downloads: ``config.json`` (the real architecture and shape fields, which
the simulated vLLM reads: architectures, max_position_embeddings, ...),
``generation_config.json``, ``tokenizer_config.json``, ``model.safetensors.index.json``
naming a few shards, and the shards themselves as valid but empty safetensors files (a few
bytes each: the real ones are ~230 GB). The quantized sets also carry the
``quant_model_description.json`` that msModelSlim writes and ``--quantization ascend`` reads.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

SHARDS = 4

MINIMAX_M2 = {
    "architectures": ["MiniMaxM2ForCausalLM"],
    "model_type": "minimax_m2",
    "auto_map": {
        "AutoConfig": "configuration_minimax_m2.MiniMaxM2Config",
        "AutoModelForCausalLM": "modeling_minimax_m2.MiniMaxM2ForCausalLM",
    },
    "attention_dropout": 0.0,
    "bos_token_id": 200034,
    "eos_token_id": 200020,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 3072,
    "initializer_range": 0.02,
    "intermediate_size": 1536,
    "max_position_embeddings": 196608,
    "num_attention_heads": 48,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 62,
    "num_key_value_heads": 8,
    "num_local_experts": 256,
    "num_mtp_modules": 3,
    "qk_norm_type": "per_layer",
    "rms_norm_eps": 1e-06,
    "rope_theta": 5000000,
    "rotary_dim": 64,
    "scoring_func": "sigmoid",
    "shared_intermediate_size": 0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.1",
    "use_cache": True,
    "use_mtp": True,
    "use_qk_norm": True,
    "use_routing_bias": True,
    "vocab_size": 200064,
}

EAGLE3 = {
    "architectures": ["LlamaForCausalLMEagle3"],
    "model_type": "llama",
    "bos_token_id": 200034,
    "eos_token_id": 200020,
    "draft_vocab_size": 32000,
    "head_dim": 128,
    "hidden_act": "silu",
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "max_position_embeddings": 196608,
    "num_attention_heads": 48,
    "num_hidden_layers": 1,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06,
    "rope_theta": 5000000,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 200064,
}

# name -> (config, quantization description or None, total_size in bytes of the real shards)
WEIGHTS = {
    "MiniMax-M2.7-w8a8-QuaRot": (MINIMAX_M2, {"model_quant_type": "W8A8", "version": "1.0.0"}, 230_617_112_576),
    "MiniMax-M2.5-w8a8-QuaRot": (MINIMAX_M2, {"model_quant_type": "W8A8", "version": "1.0.0"}, 230_617_112_576),
    "MiniMax-M2.7-w8a8c8-QuaRot": (
        MINIMAX_M2,
        {"model_quant_type": "W8A8", "kv_quant_type": "C8", "kv_cache_type": "C8", "version": "1.0.0"},
        230_751_330_304,
    ),
    "MiniMax-M2.7-eagle-model-short": (EAGLE3, None, 1_744_830_464),
    "MiniMax-M2.5-eagle-model-0318": (EAGLE3, None, 1_744_830_464),
}


def empty_safetensors() -> bytes:
    header = json.dumps({"__metadata__": {"format": "pt", "ascend_sim": "placeholder"}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_weights(root: Path, name: str, config: dict, quant: dict | None, total_size: int) -> None:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "config.json", {**config, "_name_or_path": name})
    write_json(directory / "generation_config.json", {"bos_token_id": 200034, "eos_token_id": 200020, "top_p": 0.95})
    write_json(
        directory / "tokenizer_config.json",
        {"tokenizer_class": "GPT2Tokenizer", "model_max_length": config["max_position_embeddings"]},
    )
    shards = [f"model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in range(1, SHARDS + 1)]
    layers = config["num_hidden_layers"]
    weight_map = {"model.embed_tokens.weight": shards[0], "lm_head.weight": shards[-1], "model.norm.weight": shards[-1]}
    for layer in range(layers):
        shard = shards[min(layer * SHARDS // layers, SHARDS - 1)]
        for part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"):
            weight_map[f"model.layers.{layer}.{part}.weight"] = shard
    write_json(
        directory / "model.safetensors.index.json", {"metadata": {"total_size": total_size}, "weight_map": weight_map}
    )
    for shard in shards:
        (directory / shard).write_bytes(empty_safetensors())
    if quant is not None:
        write_json(directory / "quant_model_description.json", quant)


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "/root/.cache")
    for name, (config, quant, total_size) in WEIGHTS.items():
        write_weights(root, name, config, quant, total_size)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
