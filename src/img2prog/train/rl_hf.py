"""GRPO for Hugging Face vision-language models, through TRL's ``GRPOTrainer``.

The native model has its own RL loop (:mod:`img2prog.train.rl`). For Hugging Face VLMs we
reuse TRL: :func:`grpo_trainer` returns a ready ``GRPOTrainer`` whose policy sees our prompt
(:mod:`img2prog.models.hf.prompting`) next to the target image and is rewarded by our
rendering rewards (:mod:`img2prog.train.rewards`), adapted with
:func:`~img2prog.train.rewards.trl_reward`.

What the pieces are
-------------------
- **Dataset** (:func:`build_grpo_dataset`): TRL's conversational vision format — a ``prompt``
  column holding the user turn with an empty ``{"type": "image"}`` slot followed by our
  prompt text, and an ``image`` column with the rendered target. TRL fills the slot from the
  ``image`` column before applying the chat template, and passes the same ``image`` column,
  repeated once per completion, to every reward function: that is where the targets come from.
- **Rewards**: each reward is one of ours, ``fn(completions, targets) -> list[float]``. A
  model's reply is chat text (the zero-shot prompt asks for a code block), so the program is
  first read out of it with :func:`img2prog.models.hf.extract.extract` — *without* repairing
  truncated replies: a reply cut off by ``max_completion_length`` earns the invalid-program
  reward, else the policy would learn that stopping early is free.
- **Model**: loaded with :func:`img2prog.models.hf.backend.load` (eager attention and no
  fp16 for Gemma 3, the image-only Qwen2.5-VL processor, adapter folders), then LoRA on the
  language model only (:func:`img2prog.models.hf.lora.add_lora`). Pass ``lora=None`` to
  train every weight.

Defaults
--------
Small and CPU-friendly; override any of them through ``**grpo_kwargs`` (they are
``trl.GRPOConfig`` fields): 4 generations per image (the group GRPO normalises rewards in),
at most 128 new tokens (a 12-primitive csg2d program is about 60 tokens plus the fence), the
seed protocol's sampling (temperature 1.0, top-p 0.95, top-k 64), learning rate 1e-5, no
vLLM, no reporting, log every step.

Checked with trl 1.16 / transformers 5.23 / peft 0.21 on the tiny random Gemma 3,
Qwen2.5-VL and Idefics3 checkpoints of :mod:`img2prog.models.hf.tiny` (see
``tests/train/test_rl_hf.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from img2prog.models.hf.lora import LoraSettings
from img2prog.models.hf.prompting import PromptStyle, build_prompt
from img2prog.train.rewards import RewardFn, completion_text, iou_reward, trl_reward

#: what an unreadable reply is scored as: a text no language parses (an unbalanced paren), so
#: every reward gives it its ``invalid`` value
NO_PROGRAM = "("

#: GRPOConfig values used unless the caller passes their own
DEFAULTS: dict[str, Any] = {
    "num_generations": 4,
    "max_completion_length": 128,
    "temperature": 1.0,
    "top_p": 0.95,
    "top_k": 64,
    "learning_rate": 1e-5,
    "use_vllm": False,
    "report_to": "none",
    "logging_steps": 1,
    "save_strategy": "no",
    "dataloader_num_workers": 0,
}


class GRPOSetupError(RuntimeError):
    """The GRPO trainer cannot be built as asked (message says what and why)."""


def build_grpo_dataset(targets: Sequence[Any], *, language: str = "csg2d", prompt_style: PromptStyle = "zero-shot",
                       image_size: int = 256):
    """A ``datasets.Dataset`` with ``prompt`` (a user turn: image slot + our prompt) and
    ``image`` (the target, as a PIL image).

    ``targets`` are programs (strings, rendered at ``image_size``) or images (arrays or PIL).
    """
    from datasets import Dataset

    from img2prog.lang import get_language
    from img2prog.models.hf.backend import as_pil

    if not len(targets):
        raise GRPOSetupError("no targets: GRPO needs at least one target image")
    if all(isinstance(t, str) for t in targets):
        rendered, errors = get_language(language).render_batch(list(targets), image_size)
        bad = [(i, e) for i, e in enumerate(errors) if e is not None]
        if bad:
            i, e = bad[0]
            raise GRPOSetupError(f"{len(bad)} target program(s) do not render, e.g. #{i} {targets[i]!r}: {e}")
        images = [as_pil(im) for im in rendered]
    elif any(isinstance(t, str) for t in targets):
        raise GRPOSetupError("targets mix program texts and images; give one kind")
    else:
        images = [as_pil(t) for t in targets]
    text = build_prompt(language, prompt_style)
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    return Dataset.from_list([{"prompt": prompt, "image": im} for im in images])


def extracting(fn: RewardFn, language: str = "csg2d") -> RewardFn:
    """``fn`` applied to the programs read out of chat replies (see the module docstring)."""
    from img2prog.models.hf.extract import extract

    def reward(completions: Sequence[Any], targets: Any, **kw: Any) -> list[float]:
        programs = []
        for c in completions:
            found = extract(completion_text(c), language, repair=False).program
            programs.append(NO_PROGRAM if found is None else found)
        return fn(programs, targets, **kw)

    reward.__name__ = getattr(fn, "__name__", "reward")
    return reward


def _check_vision(hfm, name: str) -> None:
    if not hfm.is_vision:
        raise GRPOSetupError(f"{name}: not an image-text-to-text model; GRPO here rewards programs for images")


def grpo_trainer(
    model_dir_or_name: str | Path,
    dataset: Any,
    *,
    reward_fns: Sequence[RewardFn] | RewardFn | None = None,
    language: str = "csg2d",
    prompt_style: PromptStyle = "zero-shot",
    image_size: int = 256,
    lora: LoraSettings | None = LoraSettings(),
    extract_programs: bool = True,
    output_dir: str | Path = "grpo-hf",
    callbacks: Sequence[Any] | None = None,
    device: str | None = None,
    **grpo_kwargs: Any,
):
    """A ``trl.GRPOTrainer`` for a Hugging Face VLM, our prompt and our rendering rewards.

    ``dataset`` is a ``datasets.Dataset`` with ``prompt`` and ``image`` columns (as
    :func:`build_grpo_dataset` makes) or a sequence of target programs / images, turned into
    one. ``reward_fns`` are rewards of :mod:`img2prog.train.rewards` (default:
    :func:`~img2prog.train.rewards.iou_reward`, 10·IoU, −10 invalid). ``grpo_kwargs`` are
    ``trl.GRPOConfig`` fields and override :data:`DEFAULTS`. Call ``.train()`` on the result.
    """
    try:
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as e:
        raise GRPOSetupError(f"GRPO for Hugging Face models needs trl: pip install 'img2prog[hf]' ({e})") from None

    from img2prog.models.hf.backend import load

    if not isinstance(dataset, Sequence):  # a datasets.Dataset (not a list of targets)
        missing = {"prompt", "image"} - set(getattr(dataset, "column_names", ()))
        if missing:
            raise GRPOSetupError(f"dataset lacks column(s) {sorted(missing)}; build it with build_grpo_dataset")
    else:
        dataset = build_grpo_dataset(dataset, language=language, prompt_style=prompt_style, image_size=image_size)

    if reward_fns is None:
        reward_fns = [iou_reward]
    elif callable(reward_fns):
        reward_fns = [reward_fns]
    wrap: Callable[[RewardFn], RewardFn] = (lambda f: extracting(f, language)) if extract_programs else (lambda f: f)
    trl_rewards = [trl_reward(wrap(f), target_column="image") for f in reward_fns]

    hfm = load(str(model_dir_or_name), for_training=True, device=device)
    _check_vision(hfm, str(model_dir_or_name))
    model = hfm.model
    if lora is not None and not hasattr(model, "peft_config"):
        from img2prog.models.hf.lora import add_lora
        from img2prog.models.hf.pretrained import read_model_meta

        if lora.train_modules is None:  # modules the folder declares untrained (e.g. a new vision tower)
            lora = replace(lora, train_modules=tuple(read_model_meta(str(model_dir_or_name)).get("fresh_modules", ())))
        model = add_lora(model, lora)

    settings = {**DEFAULTS, **grpo_kwargs}
    # GRPO needs every generation batch to be whole groups: the default batch is one group.
    settings.setdefault("per_device_train_batch_size", settings["num_generations"])
    on_cuda = hfm.device.type == "cuda"
    if not on_cuda:
        settings.setdefault("use_cpu", True)
    # Activation checkpointing (TRL turns it on by default) saves GPU memory but only costs time
    # on CPU. transformers renamed gradient_checkpointing → activation_checkpointing (5.2x):
    # use whichever spelling this version has, unless the caller chose.
    ckpt_name = ("activation_checkpointing" if "activation_checkpointing" in inspect.signature(GRPOConfig.__init__).parameters
                 else "gradient_checkpointing")
    if not {"activation_checkpointing", "gradient_checkpointing"} & settings.keys():
        settings[ckpt_name] = on_cuda
    # mixed precision follows the weights: TRL would otherwise turn bf16 on for fp32 models
    import torch

    settings.setdefault("bf16", next(model.parameters()).dtype == torch.bfloat16)
    args = GRPOConfig(output_dir=str(output_dir), **settings)
    try:
        return GRPOTrainer(model=model, reward_funcs=trl_rewards, args=args, train_dataset=dataset,
                           processing_class=hfm.processor, callbacks=list(callbacks or []))
    except (ValueError, NotImplementedError, TypeError) as e:
        import trl

        raise GRPOSetupError(
            f"trl {trl.__version__} cannot build a GRPOTrainer for {model_dir_or_name} ({hfm.family}): {e}"
        ) from e
