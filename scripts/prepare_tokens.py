#!/usr/bin/env python3
"""Tokenize fine-tuning data with a model's own Hugging Face tokenizer for `sparsetrain fuyou
finetune --data`: plain text, JSONL with a text field, prompt/completion pairs and chat
`messages` lists, packed into one llm.c token file (documents separated by the end-of-text token)
plus, for instruction data, a loss mask so that prompt tokens are not trained on.

  .venv/bin/python scripts/prepare_tokens.py --tokenizer MODEL_DIR --input data.jsonl --out OUT
    -> OUT.bin   llm.c token file: magic 20240520 version 1 (uint16) when the vocabulary fits 16
                 bits (GPT-2), else magic 20240801 version 7 (uint32: Llama 3, Qwen2, Mistral's
                 32,768 fit 16 bits); 256 int32 header words, then the tokens
       OUT.mask  (prompt/completion and chat data) the same header with magic 0x4B53414D ("MASK"),
                 then one byte per token: 1 where the token is a target the loss trains (a
                 completion, an assistant turn, the end-of-text after it), 0 where it is not
    then: sparsetrain fuyou finetune --data OUT.bin ...   (finds OUT.mask beside it)

Formats (--format, default auto: a .jsonl/.json input by its first record's fields, else text):
  text    each input file is one document
  jsonl   one JSON object per line, the document in --text-field (default "text")
  pairs   {"prompt": ..., "completion": ...} per line: prompt + completion tokenized as one text,
          only the completion's tokens (and the end-of-text after it) trained
  chat    {"messages": [{"role": ..., "content": ...}, ...]} per line, rendered with the
          tokenizer_config.json chat_template (Jinja, as transformers renders it); only the
          assistant turns' tokens (with their end-of-turn tokens) trained
The tokenizer: MODEL_DIR/tokenizer.json (the `tokenizers` library), MODEL_DIR/tokenizer_config.json
for the chat template and the special tokens, MODEL_DIR/config.json's eos_token_id as a fallback.

Errors (a missing file, a tokenizer.json that does not parse, a line that is not JSON, a record
without the field) print one line naming the cause and a hint, exit 2 and leave no output file.
"""
import argparse
import datetime
import json
import os
import sys
import time

EXIT_USAGE, EXIT_ENVIRONMENT = 2, 3
GPT2_MAGIC, GPT2_VERSION = 20240520, 1
LLAMA3_MAGIC, LLAMA3_VERSION = 20240801, 7
MASK_MAGIC, MASK_VERSION = 0x4B53414D, 1
MAX_TOKENS = 2**31 - 1  # the header's int32 count


class UsageError(Exception):
    def __init__(self, message, hint):
        super().__init__(message)
        self.hint = hint


def fail(code, message, hint):
    print(f"prepare_tokens: error: {message}\n  hint: {hint}", file=sys.stderr)
    sys.exit(code)


try:
    import numpy as np
    from tokenizers import Tokenizer
except ImportError as e:  # the project venv has them (scripts/requirements.txt)
    fail(EXIT_ENVIRONMENT, f"{e}", "run with the project venv: .venv/bin/python (scripts/setup.sh)")


def token_content(value):
    """A special token from tokenizer_config.json: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value


class ModelTokenizer:
    """tokenizer.json, with the chat template and special tokens of tokenizer_config.json."""

    def __init__(self, path, eos_override):
        directory = path if os.path.isdir(path) else os.path.dirname(path) or "."
        file = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise UsageError(f"no tokenizer.json at '{file}'",
                             "pass a model directory from the Hugging Face hub, or its tokenizer.json")
        try:
            self.tokenizer = Tokenizer.from_file(file)
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise UsageError(f"tokenizer '{file}' does not parse: {str(e).splitlines()[0]}",
                             "pass the tokenizer.json the model was saved with")
        self.config = self._json(os.path.join(directory, "tokenizer_config.json"))
        model_config = self._json(os.path.join(directory, "config.json"))
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        eos = eos_override or token_content(self.config.get("eos_token"))
        if eos is not None:
            self.eos_id = self.tokenizer.token_to_id(eos)
            if self.eos_id is None:
                raise UsageError(f"end-of-text token '{eos}' is not in the tokenizer's vocabulary",
                                 "pass the model's end-of-text token with --eos")
        else:
            eos_id = model_config.get("eos_token_id")
            if isinstance(eos_id, list):
                eos_id = eos_id[0] if eos_id else None
            if eos_id is None:
                raise UsageError("no end-of-text token: neither tokenizer_config.json's eos_token "
                                 "nor config.json's eos_token_id",
                                 "pass it with --eos, e.g. --eos '<|endoftext|>'")
            self.eos_id = int(eos_id)
        self.special = {k: token_content(self.config.get(k)) or ""
                        for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        template = self.config.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in template}
            template = named.get("default") or next(iter(named.values()), None)
        self.template = self._compile(template) if template else None

    @staticmethod
    def _json(path):
        if not os.path.isfile(path):
            return {}
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except json.JSONDecodeError as e:
            raise UsageError(f"'{path}' is not JSON: {e}", "restore the file the model came with")

    @staticmethod
    def _compile(template):
        try:
            import jinja2
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError as e:
            fail(EXIT_ENVIRONMENT, f"{e}", "the chat template needs jinja2 (scripts/setup.sh installs it)")

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        def strftime_now(fmt):
            return datetime.datetime.now().strftime(fmt)

        # As transformers renders chat templates (trim_blocks, lstrip_blocks, loop controls).
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
        try:
            return env.from_string(template)
        except jinja2.exceptions.TemplateError as e:
            raise UsageError(f"the chat template does not compile: {e}",
                             "fix tokenizer_config.json's chat_template")

    def render(self, messages, add_generation_prompt):
        return self.template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                    **self.special)

    def encode(self, text, add_special_tokens):
        return self.tokenizer.encode(text, add_special_tokens=add_special_tokens)


def trained_by_span(encoding, spans):
    """1 for each token whose characters overlap one of `spans` [(start, end)), else 0."""
    mask = np.zeros(len(encoding.ids), dtype=np.uint8)
    for i, (start, end) in enumerate(encoding.offsets):
        if end > start and any(start < e and end > s for s, e in spans):
            mask[i] = 1
    return mask


def chat_document(tok, messages, where):
    """Tokens and mask of one conversation: the template's text tokenized whole, the assistant
    turns' characters (found by rendering the conversation up to each of them) trained."""
    if tok.template is None:
        raise UsageError(f"{where}: chat messages need a chat template and tokenizer_config.json "
                         "has none", "use prompt/completion pairs, or a tokenizer with a chat_template")
    if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and
            isinstance(m.get("content"), str) for m in messages) or not messages:
        raise UsageError(f"{where}: 'messages' must be a non-empty list of "
                         "{\"role\": str, \"content\": str}", "fix the record")
    try:
        full = tok.render(messages, add_generation_prompt=False)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = tok.render(messages[:i], add_generation_prompt=True) if i else ""
            upto = tok.render(messages[:i + 1], add_generation_prompt=False)
            if not upto.startswith(before) or not full.startswith(upto):
                raise UsageError(f"{where}: the chat template renders a conversation's start "
                                 "differently from the whole (it is not prefix-stable), so the "
                                 "assistant turns cannot be located",
                                 "use prompt/completion pairs for this model")
            spans.append((len(before), len(upto)))
    except Exception as e:
        if isinstance(e, UsageError):
            raise
        raise UsageError(f"{where}: the chat template fails: {e}", "check the record's messages")
    if not spans:
        raise UsageError(f"{where}: the conversation has no assistant message to train on",
                         "drop it or add the assistant's reply")
    encoding = tok.encode(full, add_special_tokens=False)  # the template writes its own BOS
    return encoding.ids, trained_by_span(encoding, spans)


def pair_document(tok, prompt, completion, where):
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise UsageError(f"{where}: 'prompt' and 'completion' must be strings", "fix the record")
    encoding = tok.encode(prompt + completion, add_special_tokens=True)
    return encoding.ids, trained_by_span(encoding, [(len(prompt), len(prompt) + len(completion))])


def text_document(tok, text, where):
    if not isinstance(text, str):
        raise UsageError(f"{where}: the text field must be a string", "fix the record")
    ids = tok.encode(text, add_special_tokens=True).ids
    return ids, np.ones(len(ids), dtype=np.uint8)


def detect_format(path, text_field):
    if not path.endswith((".jsonl", ".json")):
        return "text"
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                record = parse_line(line, path, number)
                if "messages" in record:
                    return "chat"
                if "prompt" in record and "completion" in record:
                    return "pairs"
                if text_field in record:
                    return "jsonl"
                raise UsageError(f"{path}:{number}: a record with none of 'messages', "
                                 f"'prompt' + 'completion' or '{text_field}'",
                                 "pass --format and the field names (--text-field)")
    raise UsageError(f"'{path}' has no records", "pass a file with data")


def parse_line(line, path, number):
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}:{number}: not JSON ({e.msg} at column {e.colno})",
                         "each line of a JSONL file must be one JSON object")
    if not isinstance(record, dict):
        raise UsageError(f"{path}:{number}: a JSON {type(record).__name__}, not an object",
                         "each line of a JSONL file must be one JSON object")
    return record


def documents(tok, path, fmt, args, progress):
    """(tokens, mask) per document of `path`."""
    if fmt == "text":
        with open(path, encoding="utf-8") as f:
            text = f.read()
        progress.advance(os.path.getsize(path))
        yield text_document(tok, text, path)
        return
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            progress.advance(len(line.encode("utf-8")))
            if not line.strip():
                continue
            record = parse_line(line, path, number)
            where = f"{path}:{number}"

            def field(name):
                if name not in record:
                    raise UsageError(f"{where}: no '{name}' field", "fix the record, or pass --format")
                return record[name]

            if fmt == "chat":
                yield chat_document(tok, field("messages"), where)
            elif fmt == "pairs":
                yield pair_document(tok, field("prompt"), field("completion"), where)
            else:
                yield text_document(tok, field(args.text_field), where)


class Progress:
    """A progress bar on stderr (a terminal only) over the inputs' bytes."""

    def __init__(self, total):
        self.total, self.done, self.last = max(total, 1), 0, 0.0
        self.show = sys.stderr.isatty()

    def advance(self, n):
        self.done += n
        now = time.monotonic()
        if self.show and now - self.last > 0.2:
            self.last = now
            fraction = min(self.done / self.total, 1.0)
            bar = "#" * int(30 * fraction)
            print(f"\r  tokenizing [{bar:<30}] {100 * fraction:5.1f} %", end="", file=sys.stderr)

    def close(self):
        if self.show:
            print(file=sys.stderr)


class OutputFile:
    """An llm.c-style file written beside its final name and renamed on commit (nothing is left
    under the final name until then; discard() removes the partial one)."""

    def __init__(self, path, magic, version, dtype):
        self.path, self.tmp = path, f"{path}.tmp.{os.getpid()}"
        self.magic, self.version, self.dtype, self.count = magic, version, dtype, 0
        try:
            self.file = open(self.tmp, "wb")
        except OSError as e:
            raise UsageError(f"cannot write '{self.tmp}': {e.strerror}",
                             "pass an --out in a writable directory")
        self.file.write(np.zeros(256, dtype=np.int32).tobytes())

    def append(self, values):
        self.file.write(np.asarray(values, dtype=self.dtype).tobytes())
        self.count += len(values)

    def commit(self):
        header = np.zeros(256, dtype=np.int32)
        header[:3] = (self.magic, self.version, self.count)
        self.file.seek(0)
        self.file.write(header.tobytes())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)

    def discard(self):
        self.file.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def prepare(args):
    for path in args.input:
        if not os.path.isfile(path):
            raise UsageError(f"input '{path}' does not exist", "check the path")
    tok = ModelTokenizer(args.tokenizer, args.eos)
    formats = [args.format if args.format != "auto" else detect_format(p, args.text_field)
               for p in args.input]
    masked = any(f in ("pairs", "chat") for f in formats)
    wide = tok.vocab_size > 65536
    tokens = OutputFile(args.out + ".bin", LLAMA3_MAGIC if wide else GPT2_MAGIC,
                        LLAMA3_VERSION if wide else GPT2_VERSION, np.uint32 if wide else np.uint16)
    mask = OutputFile(args.out + ".mask", MASK_MAGIC, MASK_VERSION, np.uint8) if masked else None
    progress = Progress(sum(os.path.getsize(p) for p in args.input))
    docs = trained = 0
    try:
        for path, fmt in zip(args.input, formats):
            for ids, trained_mask in documents(tok, path, fmt, args, progress):
                # The end-of-text after each document; trained where the document's end is.
                eos_trained = int(trained_mask[-1]) if len(trained_mask) else 0
                ids = list(ids) + [tok.eos_id]
                if tokens.count + len(ids) > MAX_TOKENS:
                    raise UsageError(f"more than {MAX_TOKENS} tokens: an llm.c token file's "
                                     "count is an int32", "split the input and prepare the parts apart")
                tokens.append(ids)
                if mask:
                    mask.append(np.append(trained_mask, eos_trained))
                trained += int(trained_mask.sum()) + eos_trained
                docs += 1
        progress.close()
        if tokens.count == 0:
            raise UsageError("the inputs hold no document", "pass files with data")
        if mask and trained == 0:
            raise UsageError("no token is trained: every record's target is empty",
                             "check the completions or assistant turns")
        if mask:
            mask.commit()
        tokens.commit()
    except BaseException:
        tokens.discard()
        if mask:
            mask.discard()
        raise
    width = "uint32, llm.c v7" if wide else "uint16, llm.c v1"
    print(f"wrote {args.out}.bin: {tokens.count} tokens ({width}) from {docs} documents"
          + (f"; {args.out}.mask: {trained} trained ({100.0 * trained / tokens.count:.1f} %)"
             if mask else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True,
                        help="model directory with tokenizer.json (and tokenizer_config.json), "
                             "or a tokenizer.json")
    parser.add_argument("--input", required=True, nargs="+", help="text or JSONL files")
    parser.add_argument("--out", required=True, help="output prefix: writes OUT.bin (and OUT.mask)")
    parser.add_argument("--format", default="auto", choices=["auto", "text", "jsonl", "pairs", "chat"])
    parser.add_argument("--text-field", default="text", help="JSONL field of a document (jsonl)")
    parser.add_argument("--eos", help="end-of-text token (default: tokenizer_config.json's eos_token)")
    args = parser.parse_args()
    try:
        prepare(args)
    except UsageError as e:
        fail(EXIT_USAGE, str(e), e.hint)
    except UnicodeDecodeError as e:
        fail(EXIT_USAGE, f"an input is not UTF-8 text: {e}", "convert it to UTF-8")
    except KeyboardInterrupt:
        print("prepare_tokens: interrupted; nothing written", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
