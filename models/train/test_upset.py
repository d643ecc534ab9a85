"""The upset head's pieces, in seconds and without the e5 weights: its data (split by hash, the
real-style set apart, hard negatives), augmentation that keeps the grade, the ordinal head and its
export as one Linear layer, the hard-negative loss, and the upset scores."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dataset as D  # noqa: E402


def test_upset_split_is_disjoint_and_holds_out_a_quarter_of_every_grade():
    train, held = D.upset()
    assert not {(e.lang, e.text) for e in train} & {(e.lang, e.text) for e in held}
    for lang in D.LANGS:
        for grade in D.UPSET_GRADES:
            n_train = sum(1 for e in train if (e.lang, e.label) == (lang, grade))
            n_held = sum(1 for e in held if (e.lang, e.label) == (lang, grade))
            assert n_train + n_held >= 400, (lang, grade)
            assert 0.2 <= n_held / (n_train + n_held) <= 0.3, (lang, grade)


def test_real_style_set_is_read_with_its_tags_and_both_subsets_in_both_languages():
    real = D.upset_real_style()
    for lang in D.LANGS:
        mine = [e for e in real if e.lang == lang]
        assert len(mine) == 450 and {g: sum(e.label == g for e in mine) for g in D.UPSET_GRADES} == dict.fromkeys(D.UPSET_GRADES, 150)
        for tag in D.UPSET_TAGS:
            assert sum(tag in e.tags for e in mine) >= 30, (lang, tag)
    assert all("none" not in e.tags and "\t" not in e.text for e in real)
    assert {e.source for e in real} == {"real_style"}


def test_hard_negatives_teach_only_not_request_human_and_are_held_out_by_hash():
    train, held = D.hard_negatives()
    assert {e.label for e in train + held} == {D.NOT_HUMAN}
    assert not {e.text for e in train} & {e.text for e in held}
    assert 0.2 <= len(held) / len(train + held) <= 0.3
    intents = {D._key(t) for lang in D.LANGS for i in D.INTENTS for t in D._read_lines(os.path.join(D.DATA, "intents", lang, f"{i}.txt"))}
    assert not [e.text for e in train + held if D._key(e.text) in intents]


def test_a_text_held_out_anywhere_is_not_trained():
    train = [D.Example("A bit  disappointed tbh", "negative", "en", "written"), D.Example("where is my order", "neutral", "en", "written")]
    held = [D.Example("a bit disappointed TBH", "annoyed", "en", "written")]
    assert [e.text for e in D.without_held(train, held)] == ["where is my order"]


def _uppercase(text: str) -> int:
    return sum(c.isupper() for c in text)


def test_augmenting_a_graded_line_never_raises_its_grade():
    """"!!", 😡, "asap" or shouting would turn a calm or annoyed line into an upset one."""
    train, _ = D.upset()
    rng = random.Random(0)
    for ex in (e for e in train if e.label != "upset"):
        for aug in D.augment(ex, rng, 3):
            assert aug.label == ex.label
            assert aug.text.count("!") + aug.text.count("！") <= ex.text.count("!") + ex.text.count("！"), aug.text
            assert not [m for m in D._EMOJI if m in aug.text and m not in ex.text], aug.text
            assert "asap" not in aug.text.lower() or "asap" in ex.text.lower(), aug.text
            if ex.label == "annoyed":
                assert _uppercase(aug.text) <= _uppercase(ex.text), aug.text


def test_ordinal_head_is_one_linear_layer_and_keeps_the_grades_in_order():
    torch = pytest.importorskip("torch")
    import encoder as EN

    torch.manual_seed(0)
    head = EN.OrdinalHead(8, len(D.UPSET_GRADES))
    with torch.no_grad():
        head.cut.copy_(torch.tensor([-0.5, 1.0]))
    x = torch.randn(5, 8)
    w, b = head.as_linear()
    torch.testing.assert_close(x @ w.T + b, head(x))  # what graph.py exports is what was trained
    # Along the score direction, P(upset) only rises and P(calm) only falls.
    d = head.score.weight[0].detach()
    p = torch.softmax(head(torch.stack([t * d for t in torch.linspace(-6, 6, 25)])), -1).detach()
    assert (p[1:, 2] > p[:-1, 2]).all() and (p[1:, 0] < p[:-1, 0]).all()


def test_hard_negative_loss_is_minus_log_of_not_the_intent():
    torch = pytest.importorskip("torch")
    import finetune as FT

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    labels, not_labels = torch.tensor([-1, 2]), torch.tensor([0, -1])
    loss = FT._intent_loss(logits, labels, not_labels, torch.ones(2), smoothing=0.0)
    p = torch.softmax(logits, -1)
    want = (-torch.log(1 - p[0, 0]) - torch.log(p[1, 2])) / 2
    torch.testing.assert_close(loss, want)


def test_upset_scores_report_auc_two_off_and_tag_subsets():
    import evaluate as EV

    ex = [
        D.Example("a", "calm", "en", "real_style"),
        D.Example("b", "annoyed", "en", "real_style", ("hedged",)),
        D.Example("c", "upset", "en", "real_style", ("sarcasm",)),
        D.Example("d", "upset", "en", "real_style", ("sarcasm", "emoji")),
    ]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.35, 0.05]])
    r = EV.upset_scores(ex, probs)["en"]
    assert r["accuracy"] == 0.75 and r["two_off"] == 0.25
    assert r["auc"] == 0.5  # P(upset) ranks one upset above every other line, the other below two
    assert (r["n_sarcasm"], r["accuracy_sarcasm"]) == (2, 0.5) and (r["n_hedged"], r["accuracy_hedged"]) == (1, 1.0)
