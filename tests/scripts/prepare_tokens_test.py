"""scripts/prepare_tokens.py against the `tokenizers` library itself: small tokenizers trained here
(no download) in a model directory's layout, the llm.c files read back with numpy, the mask
checked by decoding what it trains; bad inputs exit 2 and leave no file; the prepared data
fine-tunes in sparsetrain with the mask, offloaded equal to in-memory.

  prepare_tokens_test.py --binary build/apps/sparsetrain/sparsetrain
Exits 77 (skip) without numpy, tokenizers or jinja2.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import jinja2  # noqa: F401  (the script's chat templates)
    import numpy as np
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
except ImportError as e:
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "prepare_tokens.py")
BINARY = None
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
# Llama 3's shape of template: BOS, a header per turn, the content, end-of-turn.
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
                 "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
                 "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
                 "{% endif %}")
CORPUS = ["What is two plus two? Four. Name a colour: blue, red, green.",
          "The quick brown fox jumps over the lazy dog. Answer: yes, no, maybe."] * 20


def make_model_dir(root, template=True):
    """A byte-level BPE tokenizer (vocab 400) with Llama 3's special tokens and a BOS
    post-processor, saved as a hub model directory."""
    os.makedirs(root, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    tok.save(os.path.join(root, "tokenizer.json"))
    config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    if template:
        config["chat_template"] = CHAT_TEMPLATE
    with open(os.path.join(root, "tokenizer_config.json"), "w") as f:
        json.dump(config, f)
    return Tokenizer.from_file(os.path.join(root, "tokenizer.json"))


def read_llmc(path, dtype):
    raw = np.fromfile(path, dtype=np.uint8)
    header = raw[:1024].view(np.int32)
    return header[:3].tolist(), raw[1024:].view(dtype)


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def write_jsonl(path, records):
    with open(path, "w") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


def prepare(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


class PrepareTokens(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="st-prepare-")
        self.model = os.path.join(self.dir, "model")
        self.tok = make_model_dir(self.model)
        self.eos = self.tok.token_to_id("<|end_of_text|>")

    def run_ok(self, *args):
        r = prepare("--tokenizer", self.model, *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_text_files_are_documents_with_bos_and_end_of_text(self):
        a, b = os.path.join(self.dir, "a.txt"), os.path.join(self.dir, "b.txt")
        write_text(a, "The quick brown fox.")
        write_text(b, "Name a colour: blue.")
        out = os.path.join(self.dir, "text")
        self.run_ok("--input", a, b, "--out", out)
        header, tokens = read_llmc(out + ".bin", np.uint16)
        want = (self.tok.encode("The quick brown fox.").ids + [self.eos] +
                self.tok.encode("Name a colour: blue.").ids + [self.eos])
        self.assertEqual(header, [20240520, 1, len(want)])
        self.assertEqual(tokens.tolist(), want)
        self.assertFalse(os.path.exists(out + ".mask"))  # every target trained: no mask

    def test_jsonl_text_field(self):
        data = os.path.join(self.dir, "d.jsonl")
        write_jsonl(data, [{"body": "blue fox"}, {"body": "red dog"}])
        out = os.path.join(self.dir, "j")
        self.run_ok("--input", data, "--out", out, "--format", "jsonl", "--text-field", "body")
        _, tokens = read_llmc(out + ".bin", np.uint16)
        want = (self.tok.encode("blue fox").ids + [self.eos] + self.tok.encode("red dog").ids +
                [self.eos])
        self.assertEqual(tokens.tolist(), want)

    def test_pairs_train_the_completion_and_its_end_of_text_only(self):
        data = os.path.join(self.dir, "pairs.jsonl")
        pairs = [("What is two plus two?\nAnswer:", " Four."), ("Name a colour:", " blue, red")]
        write_jsonl(data, [{"prompt": p, "completion": c} for p, c in pairs])
        out = os.path.join(self.dir, "pairs")
        r = self.run_ok("--input", data, "--out", out)
        _, tokens = read_llmc(out + ".bin", np.uint16)
        header, mask = read_llmc(out + ".mask", np.uint8)
        self.assertEqual(header, [0x4B53414D, 1, len(tokens)])
        want = []
        for p, c in pairs:
            want += self.tok.encode(p + c).ids + [self.eos]
        self.assertEqual(tokens.tolist(), want)
        # Per document: the trained tokens decode to the completion, then the end-of-text.
        docs = np.split(np.arange(len(tokens)), np.where(tokens == self.eos)[0] + 1)[:-1]
        for (p, c), doc in zip(pairs, docs):
            trained = tokens[doc][mask[doc] == 1].tolist()
            self.assertEqual(trained[-1], self.eos)
            self.assertEqual(self.tok.decode(trained[:-1]), c)
            self.assertEqual(mask[doc][0], 0)  # BOS
        self.assertIn("trained", r.stdout)

    def test_chat_trains_the_assistant_turns_with_their_end_of_turn(self):
        data = os.path.join(self.dir, "chat.jsonl")
        convs = [[{"role": "user", "content": "What is two plus two?"},
                  {"role": "assistant", "content": "Four."}],
                 [{"role": "system", "content": "Answer: yes, no, maybe."},
                  {"role": "user", "content": "Name a colour"},
                  {"role": "assistant", "content": "blue"},
                  {"role": "user", "content": "another"},
                  {"role": "assistant", "content": "red, green"}]]
        write_jsonl(data, [{"messages": m} for m in convs])
        out = os.path.join(self.dir, "chat")
        self.run_ok("--input", data, "--out", out)
        _, tokens = read_llmc(out + ".bin", np.uint16)
        _, mask = read_llmc(out + ".mask", np.uint8)
        env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
        want = []
        for m in convs:
            text = env.from_string(CHAT_TEMPLATE).render(messages=m, bos_token="<|begin_of_text|>",
                                                         add_generation_prompt=False)
            want += self.tok.encode(text, add_special_tokens=False).ids + [self.eos]
        self.assertEqual(tokens.tolist(), want)
        trained = tokens[mask == 1].tolist()
        expected = ("Four.<|eot_id|><|end_of_text|>" + "blue<|eot_id|>" +
                    "red, green<|eot_id|><|end_of_text|>")
        self.assertEqual(self.tok.decode(trained, skip_special_tokens=False), expected)

    def test_vocabularies_past_16_bits_write_uint32_llama3_files(self):
        wide = os.path.join(self.dir, "wide")
        os.makedirs(wide)
        vocab = {f"w{i}": i for i in range(70000)}
        vocab["<eos>"] = 70000
        tok = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        tok.save(os.path.join(wide, "tokenizer.json"))
        with open(os.path.join(wide, "config.json"), "w") as f:
            json.dump({"eos_token_id": [70000, 1]}, f)  # a list, as Llama 3.1's
        text = os.path.join(self.dir, "w.txt")
        write_text(text, "w3 w65535 w65536 w69999")
        out = os.path.join(self.dir, "w")
        r = prepare("--tokenizer", wide, "--input", text, "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        header, tokens = read_llmc(out + ".bin", np.uint32)
        self.assertEqual(header, [20240801, 7, 5])
        self.assertEqual(tokens.tolist(), [3, 65535, 65536, 69999, 70000])

    def assert_refused(self, args, words, out):
        r = prepare(*args)
        self.assertEqual(r.returncode, 2, r.stderr)
        for w in words:
            self.assertIn(w, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 2, r.stderr)  # error + hint
        self.assertEqual([f for f in os.listdir(os.path.dirname(out))
                          if f.startswith(os.path.basename(out))], [])

    def test_bad_inputs_exit_2_naming_the_cause_and_leave_nothing(self):
        out = os.path.join(self.dir, "result")
        data = os.path.join(self.dir, "bad.jsonl")
        write_jsonl(data, [{"prompt": "a", "completion": " b"}] * 2 + ["{not json"])
        self.assert_refused(["--tokenizer", self.model, "--input", data, "--out", out],
                            ["bad.jsonl:3: not JSON"], out)
        write_jsonl(data, [{"prompt": "a", "completion": " b"}, {"prompt": "a"}])
        self.assert_refused(["--tokenizer", self.model, "--input", data, "--out", out,
                             "--format", "pairs"], ["bad.jsonl:2: no 'completion' field"], out)
        write_jsonl(data, [[1, 2]])
        self.assert_refused(["--tokenizer", self.model, "--input", data, "--out", out],
                            ["bad.jsonl:1: a JSON list, not an object"], out)
        broken = os.path.join(self.dir, "broken")
        os.makedirs(broken)
        open(os.path.join(broken, "tokenizer.json"), "w").write("{\"version\": ")
        write_jsonl(data, [{"text": "a"}])
        self.assert_refused(["--tokenizer", broken, "--input", data, "--out", out],
                            ["does not parse"], out)
        self.assert_refused(["--tokenizer", self.model, "--input", data + ".missing", "--out",
                             out], ["does not exist"], out)
        plain = os.path.join(self.dir, "plain")
        make_model_dir(plain, template=False)
        write_jsonl(data, [{"messages": [{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "yo"}]}])
        self.assert_refused(["--tokenizer", plain, "--input", data, "--out", out],
                            ["bad.jsonl:1: chat messages need a chat template"], out)
        write_jsonl(data, [{"messages": [{"role": "user", "content": "hi"}]}])
        self.assert_refused(["--tokenizer", self.model, "--input", data, "--out", out],
                            ["no assistant message"], out)


@unittest.skipIf(BINARY is None and "--binary" not in sys.argv, "no sparsetrain binary given")
class FinetuneOnPrepared(unittest.TestCase):
    def test_masked_instruction_data_trains_offloaded_as_in_memory(self):
        d = tempfile.mkdtemp(prefix="st-prepare-ft-")
        model = os.path.join(d, "model")
        tok = make_model_dir(model)
        data = os.path.join(d, "chat.jsonl")
        questions = ["What is two plus two?", "Name a colour", "The quick brown fox?"]
        answers = ["Four.", "blue, red, green", "jumps over the lazy dog"]
        write_jsonl(data, [{"messages": [{"role": "user", "content": questions[i % 3]},
                                         {"role": "assistant", "content": answers[i % 3]}]}
                           for i in range(300)])
        r = prepare("--tokenizer", model, "--input", data, "--out", os.path.join(d, "chat"))
        self.assertEqual(r.returncode, 0, r.stderr)
        vocab = tok.get_vocab_size(with_added_tokens=True)
        common = ["fuyou", "finetune", "--model", f"custom:L=2,C=64,H=4,V={vocab},T=64",
                  "--data", os.path.join(d, "chat.bin"), "--steps", "40", "--micro-batch", "4",
                  "--seq", "64", "--lr", "3e-3", "--eval-every", "20", "--eval-batches", "2"]
        records = {}
        os.makedirs(os.path.join(d, "ssd"))
        for name, extra in [("memory", []),
                            ("offloaded", ["--ssd", os.path.join(d, "ssd"), "--cpu-mem", "1250KiB"])]:
            out = os.path.join(d, name + ".json")
            run = subprocess.run([BINARY, *common, *extra, "--out", out], capture_output=True,
                                 text=True)
            self.assertEqual(run.returncode, 0, run.stderr)
            self.assertIn("loss mask", run.stderr + run.stdout)
            with open(out) as f:
                records[name] = json.load(f)["metrics"]
        memory, offloaded = records["memory"], records["offloaded"]
        self.assertTrue(memory["data"]["loss_mask"])
        _, mask = read_llmc(os.path.join(d, "chat.mask"), np.uint8)
        self.assertEqual(memory["data"]["trained_tokens"], int(mask.sum()))
        self.assertLess(memory["losses"][-1], 0.5 * memory["losses"][0])  # it learns the answers
        self.assertEqual(offloaded["offload"]["states"], "store")  # --cpu-mem below the states
        self.assertEqual(offloaded["losses"], memory["losses"])  # bit for bit
        self.assertEqual(offloaded["val_losses"], memory["val_losses"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    args, rest = parser.parse_known_args()
    BINARY = args.binary
    unittest.main(argv=[sys.argv[0], *rest])
