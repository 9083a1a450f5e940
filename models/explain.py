"""Reason codes: the indicators pushing a household's risk up and down, in officials' words.

Input are additive contributions in the model's margin space (TreeSHAP from LightGBM's
`pred_contrib`, exact linear contributions for the proxy means test, lost points for the
scorecard). They are rescaled to the probability scale, row by row, so that they add up to
``risk - risk_at_base`` (the calibrator is monotone, so signs and order are kept):

    c_prob_j = c_margin_j * (p - p0) / (m - m0),   p0 = calibrated(base margin m0)

Then per household: the top-k contributions up and down with the feature's value, a
sentence in Chinese and English, and the sum of contributions by cause of poverty (illness,
disability, education, labour, land, water, disaster, skills, capital, transport, motivation;
features without a cause go to ``other``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.schema import CAUSES, HOUSEHOLD_SPECS

OTHER = "other"


def probability_scale(contrib: np.ndarray, margin: np.ndarray, risk: np.ndarray, base_risk: np.ndarray) -> np.ndarray:
    """Contributions (n, p) rescaled so each row sums to ``risk - base_risk``."""
    base_margin = margin - contrib.sum(axis=1)
    dm = margin - base_margin
    scale = np.divide(risk - base_risk, dm, out=np.zeros_like(dm, dtype=np.float64), where=np.abs(dm) > 1e-12)
    return contrib * scale[:, None]


def cause_matrix(feature_info: list[dict]) -> tuple[list[str], np.ndarray]:
    """Causes in a fixed order and the (p, c) 0/1 matrix assigning each feature to its cause."""
    causes = list(CAUSES) + [OTHER]
    m = np.zeros((len(feature_info), len(causes)))
    for i, info in enumerate(feature_info):
        m[i, causes.index(info.get("cause") or OTHER)] = 1.0
    return causes, m


def _format_value(name: str, value: float, binary: bool) -> tuple[str, str]:
    """English and Chinese text of a feature value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "not recorded", "未填报"
    base, _, level = name.partition("=")
    spec = HOUSEHOLD_SPECS.get(base)
    if level or binary or (spec is not None and spec.kind == "bool"):
        return ("yes", "是") if value >= 0.5 else ("no", "否")
    if spec is not None and spec.kind == "category" and spec.ordered:
        idx = int(round(value))
        if 0 <= idx < len(spec.categories):
            return spec.categories[idx], spec.categories[idx]
    unit = f" {spec.unit}" if spec is not None and spec.unit else ""
    text = f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"
    return text + unit, text + unit


def reason_codes(contrib_prob: np.ndarray, X: pd.DataFrame, feature_info: list[dict], binary: np.ndarray,
                 top_k: int = 5) -> list[dict]:
    """Per household: ``up`` and ``down`` lists of reasons and ``causes`` (cause -> summed contribution).

    Shapes: contrib_prob (n, p) on the probability scale, X (n, p) feature values,
    binary (p,) bool (0/1 features are worded yes/no). Reasons with a zero contribution are left out.
    """
    values = X.to_numpy(dtype=np.float64)
    causes, cmat = cause_matrix(feature_info)
    by_cause = contrib_prob @ cmat
    order = np.argsort(-contrib_prob, axis=1, kind="stable")
    k = min(top_k, contrib_prob.shape[1])
    up_idx, down_idx = order[:, :k], order[:, ::-1][:, :k]
    out = []
    for i in range(contrib_prob.shape[0]):
        row = {"up": [], "down": []}
        for direction, idx in (("up", up_idx[i]), ("down", down_idx[i])):
            for j in idx:
                c = float(contrib_prob[i, j])
                if (direction == "up" and c <= 0) or (direction == "down" and c >= 0):
                    continue
                info = feature_info[j]
                en_v, zh_v = _format_value(info["name"], values[i, j], bool(binary[j]))
                verb_en = "raises" if c > 0 else "lowers"
                verb_zh = "上升" if c > 0 else "下降"
                row[direction].append({
                    "indicator": info["name"], "label_en": info["en"], "label_zh": info["zh"],
                    "value": None if np.isnan(values[i, j]) else float(values[i, j]),
                    "contribution": round(c, 4), "cause": info.get("cause") or OTHER,
                    "sentence_en": f"{info['en']}: {en_v} — {verb_en} the risk by {abs(c):.2f}",
                    "sentence_zh": f"{info['zh']}：{zh_v}，风险{verb_zh}{abs(c):.2f}",
                })
        row["causes"] = {c: round(float(v), 4) for c, v in zip(causes, by_cause[i]) if abs(v) >= 5e-5}
        out.append(row)
    return out


def main_causes_text(causes: dict[str, float], n: int = 3) -> tuple[str, str]:
    """'main causes: illness (+0.21), shortage of labour (+0.08)' in English and Chinese."""
    top = sorted(((c, v) for c, v in causes.items() if v > 0), key=lambda cv: -cv[1])[:n]
    if not top:
        return "no cause raises the risk", "无明显致贫风险因素"
    names = {c: CAUSES.get(c, (OTHER, OTHER)) for c, _ in top}
    en = "main causes: " + ", ".join(f"{names[c][1]} ({v:+.2f})" for c, v in top)
    zh = "主要风险：" + "，".join(f"{names[c][0]}（{v:+.2f}）" for c, v in top)
    return en, zh
