"""Loading a model's processor (tokenizer + image processor + chat template), everywhere.

``AutoProcessor.from_pretrained`` is the normal way. It fails for Qwen2.5-VL (and SmolVLM2)
checkpoints when ``torchvision`` is not installed: their processors also own a *video*
processor, and transformers only has torchvision-backed video processors. We never feed
videos, so :class:`ImageOnlyQwen2_5_VLProcessor` is the same processor without the video
part. It saves under the standard class name, so a folder it writes is an ordinary
Qwen2.5-VL checkpoint that loads with plain ``AutoProcessor`` wherever torchvision exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoProcessor, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without a video processor (no torchvision needed).

    The attributes of a transformers processor are read from the ``__init__`` signature, so
    leaving ``video_processor`` out of it is what removes the video part.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["processor_class"] = Qwen2_5_VLProcessor.__name__
        return out


#: model_type (config.json) → processor class usable without torchvision
IMAGE_ONLY_PROCESSORS: dict[str, type] = {"qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor}


def _model_type(path: str | Path) -> str | None:
    config = Path(path) / "config.json"
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    try:  # a hub name: ask transformers (uses the local cache when offline)
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(str(path)).model_type
    except Exception:  # noqa: BLE001 - only a hint for the fallback below
        return None


def load_processor(name_or_path: str | Path, **kwargs) -> ProcessorMixin:
    """The processor of a model (hub name or local folder).

    Tries ``AutoProcessor`` first; if that fails for a model family whose only missing part
    is the video processor, loads the image-only variant instead. Other failures propagate.
    """
    try:
        return AutoProcessor.from_pretrained(str(name_or_path), **kwargs)
    except (OSError, ValueError, AttributeError, ImportError) as first:
        model_type = _model_type(name_or_path)
        cls = IMAGE_ONLY_PROCESSORS.get(model_type or "")
        if cls is None:
            raise
        try:
            return cls.from_pretrained(str(name_or_path), **kwargs)
        except Exception as second:
            raise second from first
