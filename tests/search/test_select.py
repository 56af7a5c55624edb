"""The selection rules shared by search and the scaling study, on hand-made arrays."""

import numpy as np

from img2prog.search.select import mask_key, select_best, select_majority


def test_best_prefers_score_then_smaller_then_likelier_then_earlier():
    assert select_best([0.5, 0.9, 0.7], [1, 9, 1]) == 1
    assert select_best([0.9, 0.9, 0.9], [5, 3, 3], [-1.0, -4.0, -2.0]) == 2  # smaller, then likelier
    assert select_best([0.9, 0.9], [3, 3], [None, None]) == 0  # full tie: first
    assert select_best([0.9, 0.9], [3, 3], [None, -9.0]) == 1  # a likelihood beats none


def test_majority_counts_votes_and_breaks_ties_by_likelihood():
    a, b, c = b"a", b"b", b"c"
    assert select_majority([a, b, b, c], [1, 1, 1, 1], [-1.0, -5.0, -6.0, -0.1]) == 1  # b has 2 votes
    # a and b tie on votes: the group with the likelier best member wins, and answers with it
    assert select_majority([a, b, a, b], [1, 1, 1, 1], [-3.0, -2.0, -4.0, -1.0]) == 3
    # full tie: the group seen first
    assert select_majority([b, a], [1, 1], [None, None]) == 0
    # failed samples do not vote
    assert select_majority([None, None, c], [0, 0, 1], [-0.1, -0.1, -9.0]) == 2
    assert select_majority([None, None], [0, 0]) is None


def test_mask_key_identifies_images():
    m = np.zeros((8, 8), bool)
    n = m.copy()
    n[3, 3] = True
    assert mask_key(m) == mask_key(m.copy()) != mask_key(n)
    assert mask_key(None) is None
