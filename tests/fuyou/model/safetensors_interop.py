"""Python side of the safetensors interop test (tests/fuyou/safetensors_interop_test.cpp).

  safetensors_interop.py check FILE   loads FILE (written by sparsetrain) with the `safetensors`
                                      package and checks it holds expected() bit for bit
  safetensors_interop.py write FILE   writes expected() with the `safetensors` package
  safetensors_interop.py both IN OUT  check IN, then write OUT (one torch import instead of two)

expected() is computed by the same torch ops in C++ (the test) and here, so both sides know the
values without trusting each other's files. Exits 77 (skip) when torch or safetensors is missing.
"""
import sys

try:
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
except ImportError as e:
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

METADATA = {"format": "pt", "writer": "python"}


def expected():
    f32 = (torch.arange(1000, dtype=torch.float32) * 0.37 - 100.0).reshape(10, 100)
    f32[0, 0] = float("nan")
    f32[0, 1] = float("-inf")
    f32[0, 2] = -0.0
    f32[0, 3] = 1e-40  # subnormal
    return {
        "transformer.h.0.attn.c_attn.weight": f32,
        "half": (torch.arange(257, dtype=torch.float32) * 0.37 - 40.0).to(torch.float16),
        "brain": (torch.arange(33, dtype=torch.float32) * -1.37 + 3.0).to(torch.bfloat16).reshape(3, 11),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4, dtype=torch.bfloat16),
    }


def bits(t):
    return t.view(torch.int32) if t.dtype == torch.float32 else t.view(torch.int16)


def check(path):
    got = load_file(path)
    want = expected()
    if sorted(got) != sorted(want):
        sys.exit(f"{path}: tensors {sorted(got)}, expected {sorted(want)}")
    for name, w in want.items():
        g = got[name]
        if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(bits(g), bits(w)):
            sys.exit(f"{path}: tensor {name!r} differs: {g.dtype} {tuple(g.shape)} vs {w.dtype} {tuple(w.shape)}")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    if meta != {"format": "pt", "writer": "sparsetrain"}:
        sys.exit(f"{path}: metadata {meta}")
    print(f"ok: {len(want)} tensors bit-exact")


def main():
    mode, files = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if (mode, len(files)) not in (("check", 1), ("write", 1), ("both", 2)):
        sys.exit(__doc__)
    if mode in ("check", "both"):
        check(files[0])
    if mode in ("write", "both"):
        save_file(expected(), files[-1], metadata=METADATA)


if __name__ == "__main__":
    main()
