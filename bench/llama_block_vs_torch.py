#!/usr/bin/env python3
"""A Llama block's forward + backward: ours (build/bench/llama_block_bench) beside PyTorch eager.

The same shapes, fp32, the same number of threads, on the CPU. PyTorch runs transformers'
LlamaDecoderLayer (SDPA attention, rotary from LlamaRotaryEmbedding, the input's gradient and every
weight's) two ways:
  eager         forward with autograd, then backward (keeps the block's activations);
  checkpointed  forward without autograd, then forward again with autograd and backward — what our
                trainers do (they keep only block inputs), so this is the like-for-like peer.
Ours recomputes the forward except down_proj's product (its backward needs only its input,
silu(gate) * up, and the output gradient) and runs each piece's backward by hand (llama_model.h).

Rounds alternate ours and PyTorch (the machine's load drifts); each side reports the median of
--reps timed repetitions after a warm-up, per round; the result is the median over rounds and
the ratio PyTorch / ours (> 1: ours is faster). Prints one JSON document.

  .venv/bin/python bench/llama_block_vs_torch.py --bench build/bench/llama_block_bench \\
      --hidden 2048 --heads 32 --kv-heads 8 --intermediate 8192 --seq 256 --rounds 3
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch


def torch_block_times(args):
    """Median seconds of transformers' LlamaDecoderLayer, eager and checkpointed."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    config = LlamaConfig(hidden_size=args.hidden, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads, intermediate_size=args.intermediate,
                         num_hidden_layers=1, vocab_size=256, max_position_embeddings=max(
                             8192, args.seq), rope_theta=500000.0, attention_bias=False,
                         mlp_bias=False, torch_dtype=torch.float32)
    config._attn_implementation = "sdpa"
    torch.manual_seed(1)
    layer = LlamaDecoderLayer(config, layer_idx=0).float()
    for p in layer.parameters():  # the same init scale as ours: N(0, 0.02), norms at 1
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)
    rotary = LlamaRotaryEmbedding(config)
    torch.manual_seed(2)
    x = torch.randn(args.batch, args.seq, args.hidden)
    g = torch.randn(args.batch, args.seq, args.hidden)
    position_ids = torch.arange(args.seq).unsqueeze(0).expand(args.batch, -1)
    cos_sin = rotary(x, position_ids)

    def run(inp):
        out = layer(inp, attention_mask=None, position_ids=position_ids,
                    position_embeddings=cos_sin)
        return out[0] if isinstance(out, tuple) else out

    def eager():
        layer.zero_grad(set_to_none=True)
        inp = x.detach().requires_grad_(True)
        t0 = time.perf_counter()
        y = run(inp)
        t1 = time.perf_counter()
        y.backward(g)
        return t1 - t0, time.perf_counter() - t1

    def checkpointed():
        layer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        with torch.no_grad():
            run(x)
        t1 = time.perf_counter()
        inp = x.detach().requires_grad_(True)
        run(inp).backward(g)
        return t1 - t0, time.perf_counter() - t1

    result = {}
    for name, fn in (("eager", eager), ("checkpointed", checkpointed)):
        fn()  # warm-up
        samples = [fn() for _ in range(args.reps)]
        result[name] = {"forward": statistics.median(s[0] for s in samples),
                        "backward": statistics.median(s[1] for s in samples),
                        "total": statistics.median(s[0] + s[1] for s in samples)}
    return result


def ours_block_times(args):
    cmd = [args.bench, "--hidden", str(args.hidden), "--heads", str(args.heads), "--kv-heads",
           str(args.kv_heads), "--intermediate", str(args.intermediate), "--batch",
           str(args.batch), "--seq", str(args.seq), "--reps", str(args.reps), "--threads",
           str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"llama_block_vs_torch: {' '.join(cmd)} failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)["median_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="build/bench/llama_block_bench")
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="both sides (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()

    rounds = []
    for _ in range(args.rounds):
        ours = ours_block_times(args)
        peer = torch_block_times(args)
        rounds.append({"ours": ours, "torch": peer,
                       "checkpointed_over_ours": peer["checkpointed"]["total"] / ours["total"],
                       "eager_over_ours": peer["eager"]["total"] / ours["total"]})

    def med(path):
        vals = []
        for r in rounds:
            v = r
            for k in path:
                v = v[k]
            vals.append(v)
        return statistics.median(vals)

    summary = {
        "ours_total_s": med(("ours", "total")),
        "ours_forward_s": med(("ours", "forward")),
        "ours_backward_s": med(("ours", "backward")),
        "torch_checkpointed_total_s": med(("torch", "checkpointed", "total")),
        "torch_eager_total_s": med(("torch", "eager", "total")),
        "torch_eager_forward_s": med(("torch", "eager", "forward")),
        "torch_eager_backward_s": med(("torch", "eager", "backward")),
        "checkpointed_over_ours": med(("checkpointed_over_ours",)),
        "eager_over_ours": med(("eager_over_ours",)),
    }
    print(json.dumps({"bench": "llama_block_vs_torch", "torch": torch.__version__,
                      "shape": {"hidden": args.hidden, "heads": args.heads,
                                "kv_heads": args.kv_heads, "intermediate": args.intermediate,
                                "batch": args.batch, "seq": args.seq},
                      "threads": args.threads, "reps": args.reps, "summary": summary,
                      "rounds": rounds}, indent=1))


if __name__ == "__main__":
    main()
