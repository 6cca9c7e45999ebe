"""A Hugging Face Llama (and Qwen2) model directory through `sparsetrain fuyou finetune` and back:
random models built and saved with transformers (no download: a sharded Llama, a one-file Qwen2), instruction data prepared
by scripts/prepare_tokens.py with the directory's tokenizer, fine-tuned offloaded (states in the
store) and in memory — the same losses bit for bit —, exported as a model directory that
transformers' from_pretrained loads unchanged and whose loss on our validation window is our final
validation loss; bad model directories and export targets exit 2 before anything is written.

  hf_llama_finetune_test.py --binary build/apps/sparsetrain/sparsetrain
Exits 77 (skip) without torch, transformers, tokenizers, numpy or jinja2.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

try:
    import numpy as np
    import torch
    import transformers
    sys.path.insert(0, os.path.dirname(__file__))
    from prepare_tokens_test import SCRIPT, make_model_dir, read_llmc, write_jsonl
except ImportError as e:
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

BINARY = None
SEQ = 32


def save_model(root, qwen=False, shard="60kB"):
    """A tokenizer directory (prepare_tokens_test) plus a random Llama (GQA, llama3 rope, untied
    head) or Qwen2 (q, k, v biases, tied head) saved sharded."""
    tok = make_model_dir(root)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  bos_token_id=tok.token_to_id("<|begin_of_text|>"),
                  eos_token_id=tok.token_to_id("<|end_of_text|>"))
    torch.manual_seed(5)
    if qwen:
        config = transformers.Qwen2Config(tie_word_embeddings=True, rms_norm_eps=1e-6,
                                          rope_theta=1e6, **common)
        model = transformers.Qwen2ForCausalLM(config)
    else:
        config = transformers.LlamaConfig(
            tie_word_embeddings=False, rms_norm_eps=1e-5, rope_theta=5e5,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
            **common)
        model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(root, max_shard_size=shard)
    return tok


def prepare_chat(model_dir, out_stem, n=240):
    questions = ["What is two plus two?", "Name a colour", "The quick brown fox?"]
    answers = ["Four.", "blue, red, green", "jumps over the lazy dog"]
    data = out_stem + ".jsonl"
    write_jsonl(data, [{"messages": [{"role": "user", "content": questions[i % 3]},
                                     {"role": "assistant", "content": answers[i % 3]}]}
                       for i in range(n)])
    r = subprocess.run([sys.executable, SCRIPT, "--tokenizer", model_dir, "--input", data,
                        "--out", out_stem], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    header, tokens = read_llmc(out_stem + ".bin", np.uint16)
    _, mask = read_llmc(out_stem + ".mask", np.uint8)
    return tokens.astype(np.int64), mask


def run(*args):
    return subprocess.run([BINARY, *args], capture_output=True, text=True)


def finetune(model_dir, data, out_json, *extra):
    n = len(read_llmc(data, np.uint16)[1])
    # The validation tail is one window of SEQ + 1 tokens: every validation row is it.
    args = ["fuyou", "finetune", "--model-dir", model_dir, "--data", data, "--steps", "12",
            "--micro-batch", "4", "--seq", str(SEQ), "--lr", "3e-3", "--warmup", "2",
            "--eval-every", "6", "--eval-batches", "1", "--valid-fraction",
            repr((SEQ + 1) / n), "--out", out_json, *extra]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    with open(out_json) as f:
        return json.load(f)["metrics"]


def transformers_loss(model_dir, tokens, mask, dtype=torch.float32):
    """The masked mean loss of the last SEQ + 1 tokens, as our validation computes it."""
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    window = torch.tensor(tokens[-(SEQ + 1):])
    keep = torch.tensor(mask[-(SEQ + 1):].astype(bool))
    x = window[:-1].unsqueeze(0)
    y = torch.where(keep[1:], window[1:], torch.tensor(-100)).unsqueeze(0)
    with torch.no_grad():
        logits = model(input_ids=x).logits.float()
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1),
                                             ignore_index=-100).item(), model


class HfLlamaFinetune(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="st-hf-llama-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_llama_offloaded_equals_in_memory_and_its_export_is_transformers(self):
        model = os.path.join(self.dir, "llama")
        save_model(model)
        self.assertTrue(os.path.exists(os.path.join(model, "model.safetensors.index.json")))
        tokens, mask = prepare_chat(model, os.path.join(self.dir, "chat"))
        data = os.path.join(self.dir, "chat.bin")
        ssd = os.path.join(self.dir, "ssd")
        os.makedirs(ssd)
        exported = os.path.join(self.dir, "tuned")
        offloaded = finetune(model, data, os.path.join(self.dir, "offloaded.json"), "--ssd", ssd,
                             "--cpu-mem", "900KiB", "--export", exported, "--export-dtype",
                             "fp32", "--export-shard", "100kB")
        memory = finetune(model, data, os.path.join(self.dir, "memory.json"), "--export",
                          exported + "-bf16")
        self.assertEqual(offloaded["offload"]["states"], "store")  # --cpu-mem below the states
        self.assertEqual(offloaded["losses"], memory["losses"])  # bit for bit
        self.assertEqual(offloaded["val_losses"], memory["val_losses"])
        self.assertLess(memory["losses"][-1], memory["losses"][0] - 0.5)
        self.assertEqual(memory["model"]["family"], "llama")
        # Our starting loss is transformers' on the checkpoint we started from.
        start, _ = transformers_loss(model, tokens, mask)
        self.assertAlmostEqual(offloaded["initial_val_loss"], start, delta=1e-5 * start)
        # The export: sharded, with its index, config and tokenizer, loads in transformers.
        files = sorted(os.listdir(exported))
        self.assertIn("model.safetensors.index.json", files)
        self.assertIn("tokenizer.json", files)
        self.assertGreater(sum(f.endswith(".safetensors") for f in files), 1)
        final, hf = transformers_loss(exported, tokens, mask)
        want = offloaded["final_val_loss"]
        print(f"llama: our final validation loss {want:.7f}, transformers on the export "
              f"{final:.7f} (relative {abs(final - want) / want:.2e})", file=sys.stderr)
        self.assertAlmostEqual(final, want, delta=1e-5 * want)
        self.assertIsInstance(hf, transformers.LlamaForCausalLM)
        self.assertEqual(hf.config.rope_scaling["rope_type"] if hf.config.rope_scaling else
                         hf.config.rope_parameters["rope_type"], "llama3")
        # bf16 by default: the same model within bf16's rounding.
        with open(os.path.join(exported + "-bf16", "config.json")) as f:
            self.assertEqual(json.load(f)["torch_dtype"], "bfloat16")
        bf16, _ = transformers_loss(exported + "-bf16", tokens, mask, torch.bfloat16)
        self.assertAlmostEqual(bf16, memory["final_val_loss"], delta=0.03 * bf16)

    def test_qwen2_tied_head_single_file_round_trip(self):
        model = os.path.join(self.dir, "qwen")
        save_model(model, qwen=True, shard="5GB")
        tokens, mask = prepare_chat(model, os.path.join(self.dir, "chat"), n=120)
        exported = os.path.join(self.dir, "tuned")
        memory = finetune(model, os.path.join(self.dir, "chat.bin"),
                          os.path.join(self.dir, "m.json"), "--export", exported,
                          "--export-dtype", "fp32")
        self.assertEqual(sorted(f for f in os.listdir(exported) if f.endswith(".safetensors")),
                         ["model.safetensors"])  # one shard: no index
        final, hf = transformers_loss(exported, tokens, mask)
        self.assertIsInstance(hf, transformers.Qwen2ForCausalLM)
        self.assertAlmostEqual(final, memory["final_val_loss"],
                               delta=1e-5 * memory["final_val_loss"])

    def test_llama_3_1_70b_and_405b_config_json_plan_for_a_24_gib_gpu(self):
        """The published shapes, config.json as transformers writes it (no weights): a dry run
        plans each for a 24 GiB GPU, 64 GiB of RAM and four assumed 4 TB SSDs, naming the binding
        term; 405B streams its blocks in pieces and adds the head's gradients up in RAM."""
        rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        shapes = {"70b": (8192, 28672, 80, 64), "405b": (16384, 53248, 126, 128)}
        data = os.path.join(self.dir, "tokens.txt")
        with open(data, "w") as f:
            f.write("plain text, bytes as tokens. " * 2000)
        plans = {}
        for name, (hidden, inter, layers, heads) in shapes.items():
            d = os.path.join(self.dir, "llama3.1-" + name)
            config = transformers.LlamaConfig(
                hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=8, vocab_size=128256,
                max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                rope_scaling=rope, tie_word_embeddings=False)
            config.architectures = ["LlamaForCausalLM"]
            config.save_pretrained(d)
            out = os.path.join(self.dir, name + ".json")
            r = run("fuyou", "finetune", "--model-dir", d, "--data", data, "--device", "cuda",
                    "--gpu-mem", "24GiB", "--cpu-mem", "64GiB", "--seq", "1024",
                    "--micro-batch", "1", "--assume-ssd", "4x4TB@2GB/s", "--dry-run",
                    "--out", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("bound by ssd_read", r.stdout)
            with open(out) as f:
                record = json.load(f)
            plans[name] = record["metrics"]["offload"]
            self.assertLessEqual(plans[name]["compute_bytes"], 24 << 30)
            self.assertLessEqual(plans[name]["cpu_bytes"], 64 << 30)
            self.assertEqual(record["run"]["offload_bound"]["binding"], "ssd_read")
        self.assertEqual(plans["405b"]["pieces_per_block"], 5)
        self.assertTrue(plans["405b"]["outside_grads_in_cpu"])
        self.assertFalse(plans["70b"]["outside_grads_in_cpu"])

    def test_config_only_plans_and_bad_directories_exit_2_writing_nothing(self):
        model = os.path.join(self.dir, "llama")
        save_model(model)
        prepare_chat(model, os.path.join(self.dir, "chat"), n=60)
        data = os.path.join(self.dir, "chat.bin")
        plan_only = os.path.join(self.dir, "config-only")
        os.makedirs(plan_only)
        shutil.copy(os.path.join(model, "config.json"), plan_only)
        base = ["fuyou", "finetune", "--data", data, "--seq", str(SEQ), "--steps", "2"]
        r = run(*base, "--model-dir", plan_only, "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run(*base, "--model-dir", plan_only)
        self.assertEqual(r.returncode, 2)
        self.assertIn("has no weights", r.stderr)

        def broken(name, change):
            d = os.path.join(self.dir, name)
            shutil.copytree(model, d)
            change(d)
            return d

        def edit_json(path, change):
            with open(path) as f:
                j = json.load(f)
            change(j)
            with open(path, "w") as f:
                json.dump(j, f)

        index = "model.safetensors.index.json"
        shards = sorted(f for f in os.listdir(model) if f.endswith(".safetensors"))
        cases = {
            "architecture": (lambda d: edit_json(os.path.join(d, "config.json"),
                                                 lambda j: j.update(architectures=["FalconForCausalLM"])),
                             "LlamaForCausalLM"),
            "missing shard": (lambda d: os.remove(os.path.join(d, shards[-1])), "not there"),
            "index names nothing": (lambda d: edit_json(os.path.join(d, index),
                                                        lambda j: j["weight_map"].update(
                                                            {"model.norm.weight": "nope.safetensors"})),
                                    "nope.safetensors"),
            "shape": (lambda d: edit_json(os.path.join(d, "config.json"),
                                          lambda j: j.update(intermediate_size=80)),
                      "shape"),
            "index not JSON": (lambda d: open(os.path.join(d, index), "w").write("{"), "not JSON"),
        }
        for name, (change, words) in cases.items():
            with self.subTest(name):
                d = broken(name.replace(" ", "-"), change)
                out = os.path.join(self.dir, name.replace(" ", "-") + ".json")
                r = run(*base, "--model-dir", d, "--out", out)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(words, r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 2, r.stderr)  # error + hint
                with open(out) as f:  # the run record says so, and nothing ran
                    record = json.load(f)
                self.assertEqual(record["error"]["exit_code"], 2)
                self.assertEqual(record["metrics"], {})
        # An export target that is not empty is refused before training.
        target = os.path.join(self.dir, "full")
        os.makedirs(target)
        open(os.path.join(target, "keep.txt"), "w").write("mine")
        r = run(*base, "--model-dir", model, "--export", target)
        self.assertEqual(r.returncode, 2)
        self.assertIn("not empty", r.stderr)
        self.assertEqual(os.listdir(target), ["keep.txt"])
        r = run(*base, "--model-dir", model, "--export", os.path.join(self.dir, "w.safetensors"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("model directory", r.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    args, rest = parser.parse_known_args()
    BINARY = args.binary
    unittest.main(argv=[sys.argv[0], *rest])
