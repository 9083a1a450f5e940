"""Reason codes: the indicators pushing a household's risk up and down, in officials' words.

Input are additive contributions in the model's margin space (exact TreeSHAP from
`models.treeshap`, equal to LightGBM's `pred_contrib`; exact linear contributions for the
proxy means test, lost points for the scorecard). They are rescaled to the probability scale,
row by row, so that they add up to ``risk - risk_at_base`` (the calibrator is monotone, so signs
and order are kept):

    c_prob_j = c_margin_j * (p - p0) / (m - m0),   p0 = calibrated(base margin m0)

Then per household: the top-k contributions up and down with the feature's value, a
sentence in Chinese and English, and the sum of contributions by cause of poverty (illness,
disability, education, labour, land, water, disaster, skills, capital, transport, motivation;
features without a cause go to ``other``).

`ContributionCache` keeps the contributions of households whose feature row has not changed, so
that re-scoring an unchanged record skips TreeSHAP (`RiskModel.explain(..., cache=...)`).
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable

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


def _value_formatter(name: str, binary: bool):
    """`_format_value` for one feature, with the per-feature look-ups done once."""
    base, _, level = name.partition("=")
    spec = HOUSEHOLD_SPECS.get(base)
    if level or binary or (spec is not None and spec.kind == "bool"):
        return lambda value: ("yes", "是") if value >= 0.5 else ("no", "否")
    categories = spec.categories if spec is not None and spec.kind == "category" and spec.ordered else ()
    unit = f" {spec.unit}" if spec is not None and spec.unit else ""

    def fmt(value: float) -> tuple[str, str]:
        if categories:
            idx = int(round(value))
            if 0 <= idx < len(categories):
                return categories[idx], categories[idx]
        text = f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"
        return text + unit, text + unit

    return fmt


def _size(contribution: float) -> str:
    """A contribution's size for a sentence, on the probability scale of the causes: two decimals, or two
    significant digits below 0.01 (0.0046 once read "raises the risk by 0.00")."""
    a = abs(contribution)
    if a >= 0.01:
        return f"{a:.2f}"
    if a >= 0.0001:
        return f"{a:.2g}"
    return "<0.0001"


def _reasons(idx: list[int], contrib: list[float], values: list[float], features: list[tuple], up: bool) -> list[dict]:
    out = []
    for j, c, v in zip(idx, contrib, values):
        if (up and c <= 0) or (not up and c >= 0):
            continue
        name, en, zh, cause, fmt = features[j]
        missing = v != v
        en_v, zh_v = ("not recorded", "未填报") if missing else fmt(v)
        verb_en, verb_zh = ("raises", "上升") if c > 0 else ("lowers", "下降")
        size = _size(c)
        out.append({
            "indicator": name, "label_en": en, "label_zh": zh, "value": None if missing else v,
            "contribution": round(c, 4), "cause": cause,
            "sentence_en": f"{en}: {en_v} — {verb_en} the risk by {size}",
            "sentence_zh": f"{zh}：{zh_v}，风险{verb_zh}{size}",
        })
    return out


def reason_codes(contrib_prob: np.ndarray, X: pd.DataFrame, feature_info: list[dict], binary: np.ndarray,
                 top_k: int = 5) -> list[dict]:
    """Per household: ``up`` and ``down`` lists of reasons and ``causes`` (cause -> summed contribution).

    Shapes: contrib_prob (n, p) on the probability scale, X (n, p) feature values,
    binary (p,) bool (0/1 features are worded yes/no). Reasons with a zero contribution are left out.
    """
    values = X.to_numpy(dtype=np.float64)
    causes, cmat = cause_matrix(feature_info)
    by_cause = (contrib_prob @ cmat).tolist()
    order = np.argsort(-contrib_prob, axis=1, kind="stable")
    k = min(top_k, contrib_prob.shape[1])
    features = [(info["name"], info["en"], info["zh"], info.get("cause") or OTHER,
                 _value_formatter(info["name"], bool(binary[j]))) for j, info in enumerate(feature_info)]
    sides = []
    for idx in (order[:, :k], order[:, ::-1][:, :k]):
        sides.append((idx.tolist(), np.take_along_axis(contrib_prob, idx, axis=1).tolist(),
                      np.take_along_axis(values, idx, axis=1).tolist()))
    (up_j, up_c, up_v), (down_j, down_c, down_v) = sides
    out = []
    for i in range(contrib_prob.shape[0]):
        out.append({
            "up": _reasons(up_j[i], up_c[i], up_v[i], features, True),
            "down": _reasons(down_j[i], down_c[i], down_v[i], features, False),
            "causes": {c: round(v, 4) for c, v in zip(causes, by_cause[i]) if abs(v) >= 5e-5},
        })
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


# -- caching contributions of unchanged households ---------------------------------------------------------------

_IDENTITIES: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def model_identity(estimator: Any) -> str:
    """A stable identity of a fitted estimator: its ``fingerprint()`` if it has one (LightGBM: hash of
    the model text), else the SHA-256 of its pickle (computed once per object)."""
    if hasattr(estimator, "fingerprint"):
        return f"{getattr(estimator, 'kind', type(estimator).__name__)}:{estimator.fingerprint()}"
    try:
        return _IDENTITIES[estimator]
    except (KeyError, TypeError):
        pass
    ident = f"{getattr(estimator, 'kind', type(estimator).__name__)}:" \
            f"{hashlib.sha256(pickle.dumps(estimator, protocol=4)).hexdigest()}"
    try:
        _IDENTITIES[estimator] = ident
    except TypeError:  # not weak-referenceable: just not remembered
        pass
    return ident


class ContributionCache:
    """A bounded LRU of contribution rows, keyed by (model identity, hash of the feature row's bytes).

    ``get_or_compute(model_key, rows, compute)``: rows (n, p) as the model reads them (float32 for
    LightGBM); ``compute(idx)`` returns the contributions of rows ``idx`` (the ones not cached), shape
    (len(idx), q). Returns (n, q); rows already seen are copied from the cache, the others computed and
    stored. At most `max_rows` rows are kept (least recently used go first). Thread-safe; ``hits`` and
    ``misses`` count rows. One cache per loaded model is the intended use; the model identity in the
    key keeps two models sharing one cache apart.
    """

    def __init__(self, max_rows: int = 100_000):
        if max_rows <= 0:
            raise ValueError(f"max_rows must be positive (got {max_rows})")
        self.max_rows = int(max_rows)
        self._rows: OrderedDict[tuple[str, bytes], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._rows)

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self.hits = self.misses = 0

    @staticmethod
    def row_keys(rows: np.ndarray) -> list[bytes]:
        """128-bit BLAKE2b digests of each row's bytes (dtype and width are part of the bytes)."""
        rows = np.ascontiguousarray(rows)
        tag = f"{rows.dtype.str}{rows.shape[1] if rows.ndim == 2 else 0}".encode()
        return [hashlib.blake2b(r.tobytes(), digest_size=16, person=tag[:16]).digest() for r in rows]

    def contributions(self, estimator: Any, X: pd.DataFrame) -> np.ndarray:
        """``estimator.contributions(X)`` through the cache: only rows not seen before are computed.

        Rows are keyed by the bytes the model reads (columns in the estimator's order; float32 for
        LightGBM, float64 for the others) and the estimator's `model_identity`.
        """
        names = getattr(estimator, "feature_names_", None)
        if names is not None and list(X.columns) != list(names):
            X = X.reindex(columns=names)
        rows = X.to_numpy(dtype=np.float32 if getattr(estimator, "kind", None) == "lightgbm" else np.float64)
        return self.get_or_compute(model_identity(estimator), rows, lambda idx: estimator.contributions(X.iloc[idx]))

    def get_or_compute(self, model_key: str, rows: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]
                       ) -> np.ndarray:
        keys = [(model_key, k) for k in self.row_keys(rows)]
        found: dict[int, np.ndarray] = {}
        with self._lock:
            for i, key in enumerate(keys):
                row = self._rows.get(key)
                if row is not None:
                    self._rows.move_to_end(key)
                    found[i] = row
        missing = np.array([i for i in range(len(keys)) if i not in found], dtype=np.int64)
        fresh = np.asarray(compute(missing)) if len(missing) or not found else None
        width = fresh.shape[1:] if fresh is not None else next(iter(found.values())).shape
        out = np.empty((len(keys), *width), dtype=np.float64)
        for i, row in found.items():
            out[i] = row
        if fresh is not None:
            out[missing] = fresh
        with self._lock:
            self.hits += len(found)
            self.misses += len(missing)
            for j, i in enumerate(missing):
                self._rows[keys[i]] = fresh[j].copy()
                self._rows.move_to_end(keys[i])
            while len(self._rows) > self.max_rows:
                self._rows.popitem(last=False)
        return out
