"""A Llama-shape model of >= 300 M parameters fine-tuned on instruction data by `sparsetrain fuyou
finetune`, offloaded (states in the store, --cpu-mem below them) and in memory, on the CPU tier:
the two runs' losses and final weights must be the same bits; prints one JSON object (sizes,
losses, step times, the offloaded run's plan and I/O) and writes it to --out.

Everything is made here, nothing downloaded: a byte-level BPE tokenizer trained with `tokenizers`
on the generated instructions (Llama 3's special tokens and chat template), a random
LlamaForCausalLM of the chosen shape saved sharded by transformers (fp32), chat JSONL of
arithmetic and lookup questions prepared by scripts/prepare_tokens.py (prompt tokens masked).

  .venv/bin/python bench/fuyou_llama_instruct.py --binary build/apps/sparsetrain/sparsetrain \
      --work /tmp/llama-instruct --out bench/results/llama/instruct_305m.json
Default shape: 24 blocks, C = 1024, 16 heads over 8 K/V heads, SwiGLU 2880, V = 8192, untied
head: 305 M parameters (12 B a parameter of states: 3.7 GB; --cpu-mem 2GiB).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch
import transformers
from safetensors import safe_open
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
                 "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}")
COLOURS = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple"]
ANIMALS = ["cat", "dog", "fox", "owl", "horse", "mouse", "whale", "eagle"]


def conversations(n, seed):
    """Questions with answers a model can learn: sums, colour of an animal (a fixed table)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            a, b = rng.randrange(100), rng.randrange(100)
            q, r = f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
        else:
            k = rng.randrange(len(ANIMALS))
            q, r = (f"Which colour is the {ANIMALS[k]} in the story?",
                    f"The {ANIMALS[k]} is {COLOURS[k]}.")
        out.append({"messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": r}]})
    return out


def make_tokenizer(model_dir, corpus, vocab):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(os.path.join(model_dir, "tokenizer.json"))
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                   "chat_template": CHAT_TEMPLATE}, f)
    return tok


def run(cmd):
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return time.time() - t


def same_weights(a_dir, b_dir):
    """Every tensor of two exported fp32 directories, bit for bit."""
    def tensors(d):
        out = {}
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                with safe_open(os.path.join(d, f), "pt") as s:
                    for k in s.keys():
                        out[k] = s.get_tensor(k)
        return out
    a, b = tensors(a_dir), tensors(b_dir)
    differing = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    return len(a), differing


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--work", required=True, help="scratch folder (model, data, store, exports)")
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=2880)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--micro-batch", type=int, default=2)
    p.add_argument("--cpu-mem", default="2GiB")
    p.add_argument("--examples", type=int, default=4000)
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    model_dir = os.path.join(args.work, "model")
    os.makedirs(model_dir, exist_ok=True)

    chats = conversations(args.examples, seed=1)
    corpus = [m["content"] for c in chats for m in c["messages"]]
    tok = make_tokenizer(model_dir, corpus, args.vocab)
    config = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, max_position_embeddings=4096, rms_norm_eps=1e-5,
        rope_theta=500000.0, tie_word_embeddings=False,
        bos_token_id=tok.token_to_id("<|begin_of_text|>"),
        eos_token_id=tok.token_to_id("<|end_of_text|>"))
    torch.manual_seed(0)
    t = time.time()
    model = transformers.LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(model_dir, max_shard_size="500MB")
    del model
    made = time.time() - t

    data_jsonl = os.path.join(args.work, "chat.jsonl")
    with open(data_jsonl, "w") as f:
        for c in chats:
            f.write(json.dumps(c) + "\n")
    stem = os.path.join(args.work, "chat")
    prepared = run([sys.executable, os.path.join(ROOT, "scripts", "prepare_tokens.py"),
                    "--tokenizer", model_dir, "--input", data_jsonl, "--out", stem])
    mask = np.fromfile(stem + ".mask", dtype=np.uint8)[1024:]

    ssd = os.path.join(args.work, "ssd")
    os.makedirs(ssd, exist_ok=True)
    for f in os.listdir(ssd):
        os.remove(os.path.join(ssd, f))
    common = [args.binary, "fuyou", "finetune", "--model-dir", model_dir, "--data", stem + ".bin",
              "--steps", str(args.steps), "--seq", str(args.seq), "--micro-batch",
              str(args.micro_batch), "--lr", "3e-4", "--warmup", "2", "--eval-every",
              str(args.steps), "--eval-batches", "2", "--export-dtype", "fp32"]
    records, seconds = {}, {}
    for name, extra in {"offloaded": ["--ssd", ssd, "--cpu-mem", args.cpu_mem],
                        "in_memory": []}.items():
        export = os.path.join(args.work, "export-" + name)
        out = os.path.join(args.work, name + ".json")
        seconds[name] = run(common + extra + ["--export", export, "--out", out])
        with open(out) as f:
            records[name] = json.load(f)
    m_off, m_mem = records["offloaded"]["metrics"], records["in_memory"]["metrics"]
    tensors, differing = same_weights(os.path.join(args.work, "export-offloaded"),
                                      os.path.join(args.work, "export-in_memory"))

    result = {
        "bench": "fuyou_llama_instruct",
        "model": {"params": params, "layers": args.layers, "hidden": args.hidden,
                  "heads": args.heads, "kv_heads": args.kv_heads,
                  "intermediate": args.intermediate, "vocab": args.vocab,
                  "tokenizer_vocab": tok.get_vocab_size(with_added_tokens=True)},
        "data": {"examples": args.examples, "tokens": int(mask.size),
                 "trained_fraction": float(mask.mean())},
        "steps": args.steps, "seq": args.seq, "micro_batch": args.micro_batch,
        "cpu_mem": args.cpu_mem,
        "states": m_off["offload"]["states"],
        "losses": {"offloaded": m_off["losses"], "in_memory": m_mem["losses"]},
        "losses_equal": m_off["losses"] == m_mem["losses"],
        "val_losses_equal": m_off["val_losses"] == m_mem["val_losses"],
        "weights_equal": not differing, "tensors_compared": tensors, "differing": differing,
        "loss_fell": m_mem["losses"][-1] < m_mem["losses"][0],
        "seconds": {"make_model": made, "prepare_tokens": prepared, **seconds},
        "throughput": {k: v["run"]["throughput"] for k, v in records.items()},
        "peak_rss_bytes": {k: v["run"]["peak_rss_bytes"] for k, v in records.items()},
        "offload_plan": {k: m_off["offload"].get(k) for k in
                         ("cpu_bytes", "compute_bytes", "ssd_bytes", "granularity")},
        "offload_measured": {k: records["offloaded"]["run"]["offload_measured"].get(k) for k in
                             ("binding", "measured_over_bound", "compute_thread",
                              "optimizer_thread", "commits")},
        "threads": torch.get_num_threads(), "host_cores": os.cpu_count(),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0 if result["losses_equal"] and result["weights_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
