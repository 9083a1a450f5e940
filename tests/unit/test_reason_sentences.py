"""Reason sentences say how much an indicator moves the risk, never "by 0.00"."""

import numpy as np
import pandas as pd
import pytest

from models.explain import _size, reason_codes


@pytest.mark.parametrize("contribution, text", [
    (0.21, "0.21"), (-0.05, "0.05"), (0.0046, "0.0046"), (-0.00012, "0.00012"), (0.00001, "<0.0001"),
])
def test_sizes_keep_two_significant_digits_below_a_hundredth(contribution, text):
    assert _size(contribution) == text


def test_small_contributions_are_worded_with_their_size():
    info = [{"name": "n_serious_ill", "en": "members seriously ill", "zh": "重病人数", "cause": "illness"},
            {"name": "livestock_units", "en": "livestock", "zh": "牲畜存栏", "cause": "capital"}]
    X = pd.DataFrame({"n_serious_ill": [1.0], "livestock_units": [0.0]})
    out = reason_codes(np.array([[0.2, 0.0046]]), X, info, np.array([False, False]), top_k=2)[0]
    up = {r["indicator"]: r for r in out["up"]}
    assert up["livestock_units"]["sentence_en"].endswith("raises the risk by 0.0046")
    assert up["livestock_units"]["sentence_zh"].endswith("风险上升0.0046")
    assert up["n_serious_ill"]["sentence_en"].endswith("raises the risk by 0.20")
    assert out["causes"] == {"illness": 0.2, "capital": 0.0046}
