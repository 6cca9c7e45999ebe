"""Python side of tests/fuyou/model/hf_llama_reference_test.cpp: Hugging Face `transformers` is the
reference for the Llama family's semantics (RMSNorm, rotary embeddings with rope scaling,
grouped-query attention, SwiGLU, Qwen2's q/k/v biases, tied or separate heads).

  hf_llama_reference.py DIR   for each case, builds a small random model (every parameter
                              perturbed, so norms and biases matter), saves it with save_pretrained
                              in shards (DIR/CASE: config.json, model-0000N-of-0000M.safetensors,
                              model.safetensors.index.json) and writes DIR/CASE/reference.json
                              (tokens, the shifted targets with the mask, the losses transformers
                              computed without and with a loss mask) and DIR/CASE/grads.safetensors
                              (every parameter's gradient of the masked loss, fp32).

Exits 77 (skip) when torch, safetensors or transformers is missing.
"""
import json
import os
import sys

try:
    import torch
    from safetensors.torch import save_file
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                              Qwen2Config, Qwen2ForCausalLM)
except ImportError as e:
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-5,
              attn_implementation="eager")
CASES = {
    # One K/V head for four query heads; Llama 3.1's rope scaling with a short original context,
    # so that all three frequency bands (kept, interpolated, divided) occur at head size 8.
    "llama-gqa1-llama3-rope": (LlamaForCausalLM, LlamaConfig(
        **COMMON, num_key_value_heads=1, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "llama-gqa2-tied": (LlamaForCausalLM, LlamaConfig(
        **COMMON, num_key_value_heads=2, tie_word_embeddings=True)),
    "llama-mha-linear-rope": (LlamaForCausalLM, LlamaConfig(
        **COMMON, num_key_value_heads=4, rope_scaling={"rope_type": "linear", "factor": 2.0})),
    "qwen2-biases": (Qwen2ForCausalLM, Qwen2Config(
        **{**COMMON, "rms_norm_eps": 1e-6}, num_key_value_heads=2, rope_theta=1000000.0,
        tie_word_embeddings=False)),
    "mistral": (MistralForCausalLM, MistralConfig(
        **COMMON, num_key_value_heads=2, sliding_window=None)),
}


def main(out_dir):
    tokens = torch.randint(0, 96, (3, 16), generator=torch.Generator().manual_seed(1))
    labels = tokens.clone()
    labels[:, :4] = -100  # a "prompt"
    labels[:, 9::5] = -100
    for name, (cls, config) in CASES.items():
        torch.manual_seed(0)
        model = cls(config).float().eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        case = os.path.join(out_dir, name)
        model.save_pretrained(case, max_shard_size="40KB")
        with torch.no_grad():
            loss = model(input_ids=tokens, labels=tokens).loss.item()
        masked = model(input_ids=tokens, labels=labels).loss
        masked.backward()
        grads = {n: p.grad.detach().float().contiguous() for n, p in model.named_parameters()}
        save_file(grads, os.path.join(case, "grads.safetensors"))
        shift = lambda t: torch.cat([t[:, 1:], torch.full((t.shape[0], 1), -100)], dim=1)
        with open(os.path.join(case, "reference.json"), "w") as f:
            json.dump({"inputs": tokens.tolist(), "targets": shift(tokens).tolist(),
                       "masked_targets": shift(labels).tolist(), "loss": loss,
                       "masked_loss": masked.item()}, f)
        print(f"ok {name}: loss {loss:.6f}, masked {masked.item():.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
