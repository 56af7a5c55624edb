"""Prove the (Q)LoRA fine-tuning path end to end on one small random Gemma 3 VLM.

Run by ``benchmarks/hf_gpu.sh`` on the GPU machine (``--quantize 4bit``), and on CPU with
``--quantize none`` as its shrunken test. Steps, each checked (a failed check exits 1):

1. build a small random Gemma 3 (``img2prog.models.hf.tiny.SMALL_SPEC``, ~4.4M parameters)
   and save it as a local checkpoint folder;
2. write ``--n`` handcrafted training programs (JSONL);
3. fine-tune through the real command line, ``img2prog train sft --quantize Q``;
4. the loss log: every logged loss finite, and the mean of the last three logged losses
   below the first logged loss;
5. the base model loads in 4 bits (with ``--quantize 4bit``): bitsandbytes ``Linear4bit``
   layers inside the language model, the weights' memory footprint;
6. adapter round trip: load base + adapter, save the adapter again, reload: identical
   logits; the adapter changes the base model's logits;
7. merge: an unquantized base + adapter, merged, gives the same logits as unmerged (and a
   merge into the 4-bit model is refused);
8. what the fine-tuned model answers on a few training images (greedy), extracted.

Writes a JSON of everything measured to ``--json``.

    python benchmarks/hf_qlora_check.py --work /tmp/qlora --quantize 4bit --json out/qlora.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="scratch folder (model, data, SFT run)")
    ap.add_argument("--quantize", default="4bit", choices=("4bit", "none"))
    ap.add_argument("--n", type=int, default=256, help="training programs")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--size", default="small", choices=("tiny", "small"))
    ap.add_argument("--json", required=True, help="where to write the measurements")
    args = ap.parse_args()

    import torch

    from img2prog.data.handcrafted import generate, programs_of
    from img2prog.data.testsets import standard_bar
    from img2prog.models.hf.backend import GenerationSettings, load
    from img2prog.models.hf.extract import extract
    from img2prog.models.hf.lora import merge_adapter, save_adapter
    from img2prog.models.hf.tiny import SPECS, build_tiny

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"quantize": args.quantize, "size": args.size, "torch": torch.__version__,
                 "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "checks": {}}
    failed: list[str] = []

    def check(name: str, ok: bool, detail=None) -> None:
        res["checks"][name] = {"ok": bool(ok), "detail": detail}
        print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)
        if not ok:
            failed.append(name)

    # 1-2. model and data
    model_dir = build_tiny("gemma3", work / "model", spec=SPECS[args.size])
    programs = programs_of(generate(args.n, seed=1, bar=standard_bar()).samples)
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps({"program": p}) + "\n" for p in programs), encoding="utf-8")

    # 3. fine-tune through the CLI
    run = work / "sft"
    cmd = [sys.executable, "-m", "img2prog.cli", "train", "sft", "--model", str(model_dir), "--data", str(data),
           "--out", str(run), "--quantize", args.quantize, "--max-steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--grad-accum", "1", "--lr", str(args.lr),
           "--save-steps", str(max(1, args.steps // 2)), "--no-resume"]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.run(cmd, env={**os.environ, "TQDM_MININTERVAL": "5"})
    res["sft_seconds"] = round(time.time() - t0, 1)
    check("sft command exits 0", proc.returncode == 0, proc.returncode)
    if proc.returncode != 0:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
        return 1
    meta = json.loads((run / "adapter" / "img2prog_sft.json").read_text())
    res["sft_meta"] = {k: meta[k] for k in ("quantize", "steps", "train_loss", "seconds", "n_train", "versions")}
    check("trained with the asked quantization", meta["quantize"] == args.quantize, meta["quantize"])

    # 4. the loss curve
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [(r["step"], float(r["loss"])) for r in logs if "loss" in r]
    res["losses"] = losses
    check("losses logged", len(losses) >= 4, len(losses))
    check("all losses finite", all(math.isfinite(v) for _, v in losses), None)
    if len(losses) >= 4:
        first, last = losses[0][1], sum(v for _, v in losses[-3:]) / 3
        check("loss falls (mean of last 3 logged < first)", last < first, {"first": first, "last3": last})

    # 5. the 4-bit base
    hfm = load(str(run / "adapter"), quantize=args.quantize)
    n4 = sum(type(m).__name__ == "Linear4bit" for m in hfm.model.modules())
    res["linear4bit_modules"] = n4
    res["memory_footprint_bytes"] = int(hfm.model.get_memory_footprint())
    if args.quantize == "4bit":
        check("base loaded in 4 bits (Linear4bit modules)", n4 > 0, n4)
    dev = hfm.device

    from img2prog.lang import get_language

    images, _ = get_language().render_batch(programs[:4], 256)
    # 6. adapter round trip: logits of a fixed input, before/after re-saving the adapter
    from img2prog.models.hf.prompting import build_prompt, image_messages

    from img2prog.models.hf.backend import as_pil

    convs = [image_messages(build_prompt("csg2d", "short"), as_pil(im)) for im in images]
    inputs = hfm.encode_prompts(convs)

    def logits(model) -> torch.Tensor:
        model.eval()
        with torch.inference_mode():
            return model(**{k: v.to(dev) if hasattr(v, "to") else v for k, v in inputs.items()}).logits.float().cpu()

    with_adapter = logits(hfm.model)
    with hfm.model.disable_adapter():
        base_logits = logits(hfm.model)
    delta = (with_adapter - base_logits).abs().max().item()
    check("the adapter changes the logits", delta > 1e-3, delta)
    save_adapter(hfm.model, work / "adapter-resaved")
    (work / "adapter-resaved" / "img2prog_sft.json").write_text((run / "adapter" / "img2prog_sft.json").read_text())
    again = load(str(work / "adapter-resaved"), quantize=args.quantize)
    diff = (logits(again.model) - with_adapter).abs().max().item()
    # same weights, same input: equal up to GPU kernel nondeterminism (exactly equal on CPU)
    check("adapter save/load round trip: same logits", diff <= 1e-4 * max(1.0, with_adapter.abs().max().item()), diff)

    # 8. answers on training images (greedy), before the merge frees the model
    replies = hfm.generate(images, 1, settings=GenerationSettings(do_sample=False, max_new_tokens=128), seed=0)
    got = [extract(r[0]).program for r in replies]
    res["greedy_on_training_images"] = [{"target": p, "reply": r[0][:300], "program": g}
                                        for p, r, g in zip(programs[:4], replies, got)]
    res["greedy_exact"] = sum(g == p for g, p in zip(got, programs[:4])) / 4
    print("greedy on training images:", json.dumps(res["greedy_on_training_images"], indent=1), flush=True)

    # 7. merge (into an unquantized base)
    if args.quantize == "4bit":
        try:
            merge_adapter(hfm.model)
            check("merge into 4-bit refused", False, "merged")
        except ValueError as e:
            check("merge into 4-bit refused", True, str(e)[:80])
    del hfm, again
    full = load(str(run / "adapter"), quantize="none")
    unmerged = logits(full.model)
    merged_model = merge_adapter(full.model)
    merged = logits(merged_model)
    tol = 2e-2 * max(1.0, unmerged.abs().max().item()) if next(merged_model.parameters()).dtype == torch.bfloat16 else 1e-3
    mdiff = (merged - unmerged).abs().max().item()
    check("merged logits equal unmerged", mdiff <= tol, {"max_abs_diff": mdiff, "tol": tol})
    if args.quantize == "4bit":
        res["max_abs_logit_diff_4bit_vs_full"] = (unmerged - with_adapter).abs().max().item()
    merged_model.save_pretrained(work / "merged")
    res["failed"] = failed
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    print("FAILED: " + ", ".join(failed) if failed else "all checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
