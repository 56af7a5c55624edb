"""Scorers: the verifier and likelihood rankings, and a Hugging Face reward model (a tiny
randomly initialised one built from a config — nothing is downloaded)."""

import numpy as np
import pytest

from img2prog.lang.csg2d import rendering
from img2prog.search import get_scorer, search
from img2prog.search.base import Candidate
from img2prog.search.scorers import LikelihoodScorer, RewardModelScorer, VerifierScorer, image_as_text
from img2prog.search.verify import Target, Verifier

SIZE = 64


def _evaluated(texts, logprobs):
    v = Verifier(Target.from_program("(Circle 4 8 8)", SIZE))
    return v.target, [v.evaluate(t, lp) for t, lp in zip(texts, logprobs)]


def test_verifier_and_likelihood_scores():
    target, evs = _evaluated(["(Circle 4 8 8)", "(Circle 3 8 8)", "(Circle 9"], [-5.0, -1.0, -0.1])
    v = VerifierScorer().score(target, evs)
    assert v[0] == 1.0 and 0 < v[1] < 1 and v[2] == -np.inf
    lk = LikelihoodScorer().score(target, evs)
    assert list(lk[:2]) == [-5.0, -1.0] and lk[2] == -np.inf
    per_tok = LikelihoodScorer(per_token=True).score(target, evs)
    assert per_tok[0] == pytest.approx(-5.0 / 6)  # 5 tokens + <eos>


def test_get_scorer_names():
    assert isinstance(get_scorer(None), VerifierScorer)
    assert isinstance(get_scorer("likelihood"), LikelihoodScorer)
    r = get_scorer("reward:some/model")
    assert isinstance(r, RewardModelScorer) and r.model_name == "some/model"
    with pytest.raises(ValueError, match="unknown scorer"):
        get_scorer("oracle")


def test_image_as_text():
    m = np.zeros((64, 64), bool)
    m[:32, :32] = True
    rows = image_as_text(m, 4).split()
    assert rows == ["##..", "##..", "....", "...."]


def _tiny_reward_model(path):
    """A 1-layer BERT classifier with a word-level tokenizer, saved like a hub checkpoint."""
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "(", ")", "Circle", "Quad", "+", "-", "#", "."]
    vocab = {w: i for i, w in enumerate(words + [str(i) for i in range(360)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[()#.+-]"), behavior="isolated")]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    ).save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=2048, num_labels=2, initializer_range=0.5,
    )
    BertForSequenceClassification(config).save_pretrained(path)


def test_reward_model_scorer_matches_the_model_and_drives_best_of_n(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _tiny_reward_model(tmp_path)
    scorer = RewardModelScorer(str(tmp_path), batch_size=2)
    texts = ["(Circle 4 8 8)", "(Circle 3 8 8)", "(+ (Circle 2 4 4) (Quad 8 8 3 3 45))", "(Circle 9"]
    target, evs = _evaluated(texts, [None] * 4)
    got = scorer.score(target, evs)
    assert got[3] == -np.inf  # unparsable: never rewarded

    # Recompute by hand: pair (image text, program), log-softmax of the last label.
    tok = AutoTokenizer.from_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    image = image_as_text(target.mask, 32)
    with torch.no_grad():
        for i in range(3):
            enc = tok([image], [evs[i].text], return_tensors="pt", truncation="only_first", max_length=1024)
            want = torch.log_softmax(model(**enc).logits, -1)[0, 1].item()
            assert got[i] == pytest.approx(want, abs=1e-5)
    assert len(set(np.round(got[:3], 6))) == 3  # the programs really are told apart

    class Fixed:
        def propose(self, images, n=1, **kw):
            return [[Candidate(t) for t in texts[:3]] for _ in images]

    r = search(rendering.render("(Circle 4 8 8)", SIZE), Fixed(), "best-of-n", samples=3, scorer=scorer)
    assert r.program == texts[int(np.argmax(got[:3]))]
    assert r.score == pytest.approx(got[:3].max())


def test_reward_model_errors_are_clear(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    target, evs = _evaluated(["(Circle 4 8 8)"], [None])
    with pytest.raises(RuntimeError, match="cannot load reward model"):
        RewardModelScorer(str(tmp_path / "missing")).score(target, evs)
