"""Python side of tests/fuyou/model/hf_gpt2_reference_test.cpp: Hugging Face `transformers` is the
reference for GPT-2 semantics (Conv1D layout, gelu_new, LayerNorm eps, 1/sqrt(head_dim), tied head).

  hf_gpt2_reference.py DIR   builds a small random GPT2LMHeadModel (every parameter perturbed, so
                             biases and LayerNorms matter), saves it with save_pretrained to DIR
                             (DIR/model.safetensors), and writes DIR/reference.json with the tokens
                             and the mean next-token cross-entropy computed by transformers, plus the
                             gradient norm of a few named parameters; the same with labels -100
                             (a loss mask) through transformers' own shifted loss.

Exits 77 (skip) when torch, safetensors or transformers is missing.
"""
import json
import os
import sys

try:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
except ImportError as e:
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

# Must match the C++ test's custom:L=2,C=32,H=4,V=64,T=16.
CONFIG = dict(n_layer=2, n_embd=32, n_head=4, vocab_size=64, n_positions=16,
              activation_function="gelu_new", layer_norm_epsilon=1e-5,
              resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
              bos_token_id=0, eos_token_id=0)
GRAD_NAMES = ["transformer.wte.weight", "transformer.h.1.attn.c_attn.weight",
              "transformer.h.0.mlp.c_proj.bias", "transformer.ln_f.weight"]


def main(out_dir):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**CONFIG)).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokens = torch.randint(0, 64, (3, 17), generator=torch.Generator().manual_seed(1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    logits = model(input_ids=x).logits  # [3, 16, 64]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), y.reshape(-1))
    loss.backward()
    params = dict(model.named_parameters())
    grads = {n: params[n].grad.double().norm().item() for n in GRAD_NAMES}
    # A loss mask as transformers takes it: labels -100 where not trained (here each row's first
    # 5 tokens, a "prompt", and every fourth after), shifted inside the model (labels[:, 1:]
    # against logits[:, :-1]), the mean over the rest.
    model.zero_grad()
    labels = x.clone()
    labels[:, :5] = -100
    labels[:, 8::4] = -100
    masked_loss = model(input_ids=x, labels=labels).loss
    masked_loss.backward()
    masked_grads = {n: params[n].grad.double().norm().item() for n in GRAD_NAMES}
    masked_targets = torch.cat([labels[:, 1:], torch.full((x.shape[0], 1), -100)], dim=1)
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump({"inputs": x.tolist(), "targets": y.tolist(), "loss": loss.item(),
                   "grad_norms": grads, "masked_targets": masked_targets.tolist(),
                   "masked_loss": masked_loss.item(), "masked_grad_norms": masked_grads}, f)
    print(f"ok: loss {loss.item():.6f}")


if __name__ == "__main__":
    main(sys.argv[1])
