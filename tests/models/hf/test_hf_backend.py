"""The Hugging Face backend on tiny random Gemma 3 / Qwen2.5-VL / Idefics3 checkpoints.

These run the real transformers model and processor classes offline, on CPU, in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the Hugging Face backend needs the 'hf' extra: pip install 'img2prog[hf]'")

import torch

from img2prog.lang import get_language
from img2prog.models.hf import backend as B
from img2prog.models.hf.prompting import build_prompt, image_messages, training_messages, user_message
from img2prog.models.hf.tiny import FAMILIES

CSG = get_language("csg2d")


def images(*programs: str, size: int = 48) -> np.ndarray:
    return np.stack([CSG.render(p, size) for p in programs])


@pytest.fixture(scope="module")
def models(tiny_dir):
    cache = {}

    def get(family, chat_template="hand"):
        if (family, chat_template) not in cache:
            cache[family, chat_template] = B.load(str(tiny_dir(family, chat_template)))
        return cache[family, chat_template]

    return get


# --- loading --------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_checkpoint_loads_like_a_hub_checkpoint(family, models):
    m = models(family)
    assert m.family == family
    assert m.is_vision
    assert m.device.type == "cpu"
    assert next(m.model.parameters()).dtype == torch.float32  # fp32 on CPU
    assert m.tokenizer.pad_token is not None


def test_qwen_processor_loads_without_torchvision(tiny_dir):
    from transformers import AutoProcessor
    from transformers.utils import is_torchvision_available

    from img2prog.models.hf.processors import ImageOnlyQwen2_5_VLProcessor, load_processor

    folder = tiny_dir("qwen2_5_vl")
    if not is_torchvision_available():
        with pytest.raises(OSError, match="video processor"):
            AutoProcessor.from_pretrained(str(folder))  # the failure our fallback exists for
        assert isinstance(load_processor(folder), ImageOnlyQwen2_5_VLProcessor)
    # the folder records the standard class name, so it is an ordinary checkpoint
    assert '"processor_class": "Qwen2_5_VLProcessor"' in (folder / "processor_config.json").read_text()


def test_4bit_needs_cuda_and_says_so(tiny_dir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(B.BackendError, match="needs a CUDA GPU"):
        B.load(str(tiny_dir("gemma3")), quantize="4bit")


def test_fp16_refused_for_gemma3(tiny_dir):
    with pytest.raises(B.BackendError, match="float16 is not safe for Gemma 3"):
        B.load(str(tiny_dir("gemma3")), dtype="float16")


def test_gemma3_trains_with_eager_attention_and_infers_with_sdpa():
    cfg = B.LoadConfig(model="x", for_training=True)
    assert B.resolve_attention(cfg, "gemma3") == "eager"
    assert B.resolve_attention(B.LoadConfig(model="x"), "gemma3") == "sdpa"
    assert B.resolve_attention(cfg, "qwen2_5_vl") == "sdpa"
    assert B.resolve_attention(B.LoadConfig(model="x", attn_implementation="eager"), "idefics3") == "eager"


def test_unsloth_missing_is_a_clear_error(tiny_dir):
    try:
        import unsloth  # noqa: F401
        pytest.skip("unsloth is installed")
    except ImportError:
        pass
    with pytest.raises(B.BackendError, match="unsloth"):
        B.load(str(tiny_dir("gemma3")), unsloth=True)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(B.BackendError, match="no config.json"):
        B.load(str(tmp_path / "empty"))


# --- chat templates ---------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_hand_template_renders_like_the_reference_template(family, models):
    """Our hand-written templates are faithful: same text as the family's hub template (via
    TRL's training variant) for a training example and for a generation prompt."""
    from PIL import Image

    img = Image.new("RGB", (40, 40), "white")
    hand, ref = models(family, "hand"), models(family, "reference")
    ref_template = B.training_chat_template(ref.processor)
    assert B.training_chat_template(hand.processor) is None  # has its own generation blocks
    assert isinstance(ref_template, str)  # TRL knows the reference template
    conv = training_messages("Write the program.", img, "(Circle 3 8 8)")
    a = hand.processor.apply_chat_template(conv, tokenize=False)
    b = ref.processor.apply_chat_template(conv, tokenize=False, chat_template=ref_template)
    assert a == b
    a = hand.processor.apply_chat_template(conv[:1], tokenize=False, add_generation_prompt=True)
    b = ref.processor.apply_chat_template(conv[:1], tokenize=False, add_generation_prompt=True)
    assert a == b


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_prompt_is_a_token_prefix_of_the_training_sequence(family, models):
    """What the model sees at inference is exactly the prompt part of what it was trained on
    (a train/inference tokenization mismatch would teach it to continue a different prefix)."""
    from PIL import Image

    m = models(family)
    img = Image.new("RGB", (40, 40), "white")
    prompt = build_prompt("csg2d", "short")
    gen = B.apply_chat_template(m.processor, [image_messages(prompt, img)], add_generation_prompt=True)
    full = B.apply_chat_template(m.processor, [training_messages(prompt, img, "(Circle 3 8 8)")], assistant_mask=True)
    g, f = gen["input_ids"][0].tolist(), full["input_ids"][0].tolist()
    assert f[: len(g)] == g
    # and the supervised tokens are exactly the reply and the end-of-turn marker
    mask = full["assistant_masks"][0].bool()
    assert mask[: len(g)].sum() == 0
    supervised = m.tokenizer.decode(full["input_ids"][0][mask])
    assert supervised.strip().startswith("(Circle 3 8 8)")
    assert supervised.strip() != "(Circle 3 8 8)"  # the end-of-turn token is supervised too


# --- generation -------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_generate_n_replies_per_image_reproducibly(family, models):
    m = models(family)
    imgs = images("(Circle 3 8 8)", "(Quad 5 5 4 6 45)")
    settings = B.GenerationSettings(max_new_tokens=6)
    a = m.generate(imgs, 3, settings=settings, seed=1)
    assert [len(r) for r in a] == [3, 3] and all(isinstance(t, str) for r in a for t in r)
    assert m.generate(imgs, 3, settings=settings, seed=1) == a
    assert m.generate(imgs, 3, settings=settings, seed=2) != a


def test_generation_settings_default_to_the_seed_protocol():
    s = B.GenerationSettings()
    assert (s.temperature, s.top_p, s.top_k, s.max_new_tokens, s.do_sample) == (1.0, 0.95, 64, 256, True)
    kw = B._generate_kwargs(s, 4)
    assert kw["num_return_sequences"] == 4 and kw["top_k"] == 64 and kw["top_p"] == 0.95


@pytest.mark.parametrize("family", FAMILIES)
def test_left_padded_batch_generates_what_each_prompt_generates_alone(family, models):
    """Batched generation pads on the left; with right padding the short prompt would be
    continued after pad tokens and its greedy output would change."""
    m = models(family)
    img = images("(Circle 3 8 8)")[0]
    from img2prog.models.hf.backend import as_pil

    convs = [image_messages("Write it.", as_pil(img)),
             image_messages(build_prompt("csg2d", "zero-shot"), as_pil(img))]
    greedy = B.GenerationSettings(max_new_tokens=8, do_sample=False)
    together = m.generate_chats(convs, 1, settings=greedy)
    alone = [m.generate_chats([c], 1, settings=greedy)[0] for c in convs]
    assert together == alone
    enc = m.encode_prompts(convs)
    assert (enc["attention_mask"][:, -1] == 1).all()  # real tokens end every row: left padding


def test_greedy_and_beam(models):
    m = models("gemma3")
    imgs = images("(Circle 3 8 8)")
    greedy = m.generate(imgs, 1, settings=B.GenerationSettings(max_new_tokens=5, do_sample=False))
    assert len(greedy[0]) == 1
    assert m.generate(imgs, 1, settings=B.GenerationSettings(max_new_tokens=5, do_sample=False)) == greedy
    beams = m.generate(imgs, 3, settings=B.GenerationSettings(max_new_tokens=5, num_beams=3))
    assert len(beams[0]) == 3


def test_text_only_generation_refuses_images_for_text_models(models):
    with pytest.raises(B.BackendError, match="text-only"):
        B._text_only(user_message("hi", image=object()))


# --- scoring ----------------------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_score_is_the_teacher_forced_log_likelihood_of_the_reply(family, models):
    m = models(family)
    imgs = images("(Circle 3 8 8)", "(Quad 5 5 4 6 45)", "")
    progs = ["(Circle 3 8 8)", "(+ (Quad 5 5 4 6 45) (Circle 2 8 8))", ""]
    batched = m.score(imgs, progs)
    alone = [m.score(imgs[i : i + 1], progs[i : i + 1])[0] for i in range(3)]
    assert np.allclose(batched, alone, atol=1e-4)  # right padding does not change scores
    # manual computation for the first example
    from img2prog.models.hf.backend import as_pil

    prompt = m.prompt()
    enc = B.apply_chat_template(m.processor, [training_messages(prompt, as_pil(imgs[0]), progs[0])], assistant_mask=True)
    mask = enc.pop("assistant_masks")[0].bool()
    with torch.no_grad():
        logits = m.model(**enc).logits[0]
    ids = enc["input_ids"][0]
    lp = torch.log_softmax(logits.float(), -1)
    manual = sum(lp[t - 1, ids[t]].item() for t in range(1, len(ids)) if mask[t])
    assert batched[0] == pytest.approx(manual, abs=1e-4)
    assert all(s < 0 for s in batched)
    # a longer reply is (for a random model) less likely
    assert batched[1] < batched[0]


def test_reference_template_scores_like_the_hand_template(models):
    imgs = images("(Circle 3 8 8)")
    a = models("gemma3", "hand").score(imgs, ["(Circle 3 8 8)"])
    b = models("gemma3", "reference").score(imgs, ["(Circle 3 8 8)"])
    assert a == pytest.approx(b, abs=1e-5)
