"""Exact path-dependent TreeSHAP for LightGBM boosters, fast (FastTreeSHAP-v2 style, numba).

Gives the same numbers as ``booster.predict(X, pred_contrib=True)`` (LightGBM's own TreeSHAP,
"tree_path_dependent" in the shap package's words), about 15-40x faster on the project's models
(bench/models_bench.py):

Per tree and leaf ``l`` with value ``v_l``, let ``U`` be the distinct features on the root-to-leaf
path (a feature split on several times counts once). For ``j`` in ``U``:

- ``z_j`` ("zero fraction"): the product, over the path's splits on ``j``, of cover(child) /
  cover(parent) (covers = LightGBM's ``internal_count`` / ``leaf_count``);
- ``o_j`` ("one fraction", per row): 1 if the row satisfies every condition on ``j`` along the path,
  else 0.

The leaf adds to feature ``i`` in ``U``::

    v_l * (o_i - z_i) * sum_{S ⊆ U\\{i}} |S|! (|U|-|S|-1)! / |U|! * prod_{j in S} o_j * prod_{j in U\\S\\{i}} z_j

which only depends on the row through the bit mask ``o`` (``|U|`` bits). So, once per booster, a table
of the ``|U|`` contributions for each of the ``2^|U|`` masks is built per leaf (``O(2^|U| |U|)`` per leaf,
via elementary symmetric polynomials over subsets); a row then costs one decision per internal node and
``|U|`` table reads per leaf: ``O(trees x leaves x depth)`` instead of LightGBM's ``O(trees x leaves x depth^2)``.

Memory and the path limit: a leaf's table holds ``2^|U| x |U|`` float64 values (3 KB at ``|U| = 6``:
the shipped ``max_depth: 6`` model needs at most 28 MB for 300 trees x 31 leaves, 15 MB measured; 80 KB
at ``|U| = 10``). Leaves with more than ``max_table_features`` (default 10) distinct path features, or
beyond the ``max_table_bytes`` budget (default 256 MiB; the largest leaves give way first), are computed
per row instead, exactly, with the ``O(|U|^2)`` polynomial recursion (vectorised over the rows of a block):
slower but never wrong (bench/models_bench.py shows the rates of unlimited-depth models, whose paths
reach 14-17 features). ``TreeShap.table_features`` tells the limit
used, ``leaves_without_table`` how many leaves it left out; keep ``max_depth`` at or under 10 and every
leaf has a table.

Decision rules follow LightGBM's ``NumericalDecision``: ``x <= threshold`` goes left; ``missing_type``
``NaN``: NaN goes the default way; ``Zero``: NaN and values in [-1e-35, 1e-35] go the default way;
``None``: NaN is read as 0. As LightGBM's dense-matrix predictor does, values with ``|x| <= 1e-35``
are read as exactly 0. Input ``float32`` (what `LightGBMRisk` gives) or ``float64``, compared as double.

Only numerical splits and one output per iteration (binary or regression objectives): a categorical
split, a linear tree or a multiclass booster raises ``ValueError`` (use ``pred_contrib`` there).

Kernels are compiled once (``cache=True``: later processes load them from ``__pycache__`` in about
a second) and run in parallel over blocks of rows (``prange``); within a block the loop goes tree by
tree so that a tree's tables stay in the core's cache. The thread count is per object (default 2).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numba
import numpy as np
from numba import njit, prange

#: LightGBM's kZeroThreshold (``1e-35f`` widened to double).
ZERO_THRESHOLD = float(np.float32(1e-35))
MISSING_TYPES = {"None": 0, "Zero": 1, "NaN": 2}
_MISSING_NONE, _MISSING_ZERO, _MISSING_NAN = 0, 1, 2

#: Rows per block of the parallel loop: the block's output rows plus one tree's tables fit in L2.
DEFAULT_BLOCK_ROWS = 128

# numba's thread count is set per calling thread; one explanation kernel at a time keeps the
# process at `num_threads` cores even when a service calls from several threads.
_KERNEL_LOCK = threading.Lock()
_BUILD_LOCK = threading.Lock()


# -- numba kernels ---------------------------------------------------------------------------------------------

@njit(cache=True)
def _shapley_weights(d):
    """w[k] = k! (d-k-1)! / d! for k = 0..d-1 (float64)."""
    w = np.empty(max(d, 1), np.float64)
    # w[0] = 1/d; w[k] = w[k-1] * k / (d - k)
    if d > 0:
        w[0] = 1.0 / d
        for k in range(1, d):
            w[k] = w[k - 1] * k / (d - k)
    return w


@njit(cache=True)
def _build_tables(leaf_value, leaf_d, leaf_fstart, leaf_z, leaf_tstart, table):
    """Fill `table` for every leaf with leaf_tstart >= 0 (see module docstring).

    Per leaf with d distinct features, zero fractions z[0..d-1] and value v, stored feature-major
    (``table[tstart + i * 2^d + m]``): T[i, m] = v (o_i(m) - z_i) Q[m without i] Zc[m with i], where
    Zc[M] = prod_{j not in M} z_j and Q[M] = sum_k w(k, d) e_{|M|-k}(z_M), e = elementary symmetric.
    """
    n_leaves = leaf_value.shape[0]
    for leaf in range(n_leaves):
        t0 = leaf_tstart[leaf]
        d = leaf_d[leaf]
        if t0 < 0 or d == 0:
            continue
        z = leaf_z[leaf_fstart[leaf]:leaf_fstart[leaf] + d]
        v = leaf_value[leaf]
        n_masks = 1 << d
        full = n_masks - 1
        w = _shapley_weights(d)
        prod_in = np.empty(n_masks, np.float64)      # prod_{j in M} z_j
        esym = np.zeros((n_masks, d + 1), np.float64)  # e_r(z_M)
        popc = np.zeros(n_masks, np.int64)
        prod_in[0] = 1.0
        esym[0, 0] = 1.0
        for m in range(1, n_masks):
            low = 0
            while not (m >> low) & 1:
                low += 1
            prev = m & (m - 1)
            zb = z[low]
            prod_in[m] = prod_in[prev] * zb
            popc[m] = popc[prev] + 1
            esym[m, 0] = 1.0
            for r in range(1, popc[m] + 1):
                esym[m, r] = esym[prev, r] + zb * esym[prev, r - 1]
        q = np.zeros(n_masks, np.float64)
        for m in range(n_masks):
            a = popc[m]
            if a >= d:
                continue
            s = 0.0
            for k in range(a + 1):
                s += w[k] * esym[m, a - k]
            q[m] = s
        for i in range(d):
            bit = 1 << i
            base = t0 + i * n_masks
            for m in range(n_masks):
                o_i = 1.0 if m & bit else 0.0
                table[base + m] = v * (o_i - z[i]) * q[m & ~bit] * prod_in[full & ~(m | bit)]


@njit(cache=True)
def _leaf_direct(ob, nb, v, d, feats, z, edge_node, edge_left, edge_bit, dec, o, poly, q, s_one, s_zero):
    """One leaf's contributions for the block's rows without a table: O(d^2) per row, over rows in the inner loops.

    o[j, r]: the row satisfies every condition on path feature j. P(t) = prod_j (z_j + o_j t)
    (coefficients poly[k, r]), weights w_k = w(k, d). For o_i = 0 the sum over S ⊆ U\\{i} is
    sum_k w_k P_k / z_i (P holds the factor z_i) and the contribution -v sum_k w_k P_k; for o_i = 1 it is
    sum_k w_k [P / (z_i + t)]_k, by synthetic division from the top (stable since 0 < z_i <= 1;
    coefficients above the degree are 0, so starting at t^d is exact).
    """
    w = _shapley_weights(d)
    for j in range(d):
        for r in range(nb):
            o[j, r] = 1.0
    for e in range(edge_node.shape[0]):
        dn = dec[edge_node[e]]
        left = np.int32(edge_left[e])
        oe = o[edge_bit[e]]
        for r in range(nb):
            oe[r] *= np.float64(1 - (dn[r] ^ left))
    for k in range(d + 1):
        for r in range(nb):
            poly[k, r] = 0.0
    for r in range(nb):
        poly[0, r] = 1.0
    for j in range(d):
        zj = z[j]
        oj = o[j]
        for k in range(j + 1, 0, -1):
            pk = poly[k]
            pk1 = poly[k - 1]
            for r in range(nb):
                pk[r] = pk[r] * zj + oj[r] * pk1[r]
        p0 = poly[0]
        for r in range(nb):
            p0[r] *= zj
    for r in range(nb):
        s_zero[r] = 0.0
    for k in range(d):
        wk = w[k]
        pk = poly[k]
        for r in range(nb):
            s_zero[r] += wk * pk[r]
    for i in range(d):
        zi = z[i]
        oi = o[i]
        pd = poly[d]
        for r in range(nb):
            q[r] = pd[r]
            s_one[r] = 0.0
        for k in range(d - 1, -1, -1):
            wk = w[k]
            pk = poly[k]
            for r in range(nb):
                s_one[r] += wk * q[r]
                q[r] = pk[r] - zi * q[r]
        obf = ob[feats[i]]
        a1 = v * (1.0 - zi)
        for r in range(nb):
            obf[r] += a1 * s_one[r] if oi[r] != 0.0 else -v * s_zero[r]


@njit(cache=True, parallel=True)
def _shap_rows(X, out, block, base, node_start, node_parent, node_is_left, node_pbit, node_feature, node_threshold,
               node_nan_left, node_zero_left, tree_int_start, int_node, tree_leaf_start, leaf_node, leaf_id,
               leaf_value, leaf_d, leaf_fstart, leaf_feat, leaf_z, leaf_tstart, table, leaf_pstart, path_node,
               path_left, path_bit, max_nodes, max_d):
    """SHAP values of X (n, p) into out (n, p + 1), in parallel over blocks of `block` rows.

    Within a block, tree by tree: every internal node's decision for all rows, the o-masks of all
    nodes in preorder (a child clears its parent's feature bit for the rows that did not go its way),
    then each leaf's table column per feature gathered at the rows' masks. The block is held
    transposed (feature-major) so the inner loops run over rows and vectorise.
    """
    n, p = X.shape
    n_trees = node_start.shape[0] - 1
    n_blocks = (n + block - 1) // block
    for b in prange(n_blocks):
        r0 = b * block
        nb = min(n, r0 + block) - r0
        xb = np.empty((p, block), np.float64)
        ob = np.zeros((p + 1, block), np.float64)
        dec = np.zeros((max_nodes, block), np.int32)
        mask = np.zeros((max_nodes, block), np.int32)
        o = np.zeros((max_d + 1, block), np.float64)
        poly = np.zeros((max_d + 2, block), np.float64)
        q_buf = np.zeros(block, np.float64)
        s_one = np.zeros(block, np.float64)
        s_zero = np.zeros(block, np.float64)
        for r in range(nb):
            for f in range(p):
                x = np.float64(X[r0 + r, f])
                if -ZERO_THRESHOLD <= x <= ZERO_THRESHOLD:  # LightGBM's dense predictor drops these as zeros
                    x = 0.0
                xb[f, r] = x
        for t in range(n_trees):
            s = node_start[t]
            for q in range(tree_int_start[t], tree_int_start[t + 1]):
                k = int_node[q]
                g = s + k
                xf = xb[node_feature[g]]
                thr = node_threshold[g]
                nan_left = np.int32(node_nan_left[g])
                zero_left = np.int32(node_zero_left[g])
                dk = dec[k]
                for r in range(nb):
                    x = xf[r]
                    v = np.int32(x <= thr)
                    v = zero_left if x == 0.0 else v
                    v = nan_left if x != x else v
                    dk[r] = v
            for r in range(nb):
                mask[0, r] = -1
            for k in range(1, node_start[t + 1] - s):
                g = s + k
                sh = node_pbit[g]
                is_left = np.int32(node_is_left[g])
                mk = mask[k]
                mp = mask[node_parent[g]]
                dp = dec[node_parent[g]]
                for r in range(nb):
                    mk[r] = mp[r] & ~((dp[r] ^ is_left) << sh)
            for q in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                leaf = leaf_id[q]
                d = leaf_d[leaf]
                if d == 0:
                    continue
                fs = leaf_fstart[leaf]
                t0 = leaf_tstart[leaf]
                if t0 >= 0:
                    full = np.int32((1 << d) - 1)
                    size = 1 << d
                    mk = mask[leaf_node[q]]
                    for i in range(d):
                        obf = ob[leaf_feat[fs + i]]
                        ti = t0 + i * size
                        for r in range(nb):
                            obf[r] += table[ti + (mk[r] & full)]
                else:
                    _leaf_direct(ob, nb, leaf_value[leaf], d, leaf_feat[fs:fs + d], leaf_z[fs:fs + d],
                                 path_node[leaf_pstart[leaf]:leaf_pstart[leaf + 1]],
                                 path_left[leaf_pstart[leaf]:leaf_pstart[leaf + 1]],
                                 path_bit[leaf_pstart[leaf]:leaf_pstart[leaf + 1]], dec, o, poly, q_buf, s_one, s_zero)
        for r in range(nb):
            for f in range(p):
                out[r0 + r, f] = ob[f, r]
            out[r0 + r, p] = base


# -- parsing the booster ------------------------------------------------------------------------------------------

_STRUCT_FIELDS = ("node_start", "node_parent", "node_is_left", "node_feature", "node_threshold",
                  "node_default_left", "node_missing", "node_bit", "node_leaf", "leaf_value", "leaf_d",
                  "leaf_fstart", "leaf_feat", "leaf_z", "leaf_pstart", "path_node", "path_left", "path_bit")


def _parse_trees(dump: dict[str, Any]) -> tuple[dict[str, np.ndarray], float]:
    """Flatten the dumped trees into preorder node arrays + per-leaf path features (see `_shap_rows`).

    Returns the arrays and the base value (sum over trees of LightGBM's ``Tree::ExpectedValue``).
    """
    cols: dict[str, list] = {k: [] for k in _STRUCT_FIELDS if k not in ("node_start", "leaf_pstart")}
    node_start, leaf_pstart = [0], []
    base = 0.0
    for tree in dump["tree_info"]:
        if tree.get("num_cat", 0) or tree.get("is_linear"):
            raise ValueError(f"tree {tree.get('tree_index')}: categorical splits / linear trees are not supported "
                             "by models.treeshap; use pred_contrib")
        root = tree["tree_structure"]
        if "split_feature" not in root:  # a single-leaf tree: its value is all base value
            total = None
            base += float(root["leaf_value"])
        else:
            total = float(root["internal_count"])
        exp_value = 0.0
        # iterative preorder; per entry: node, parent's local index, is-left, the distinct path features
        # as ((feature, zero fraction, bit), ...), the path edges as ((ancestor local index, left?, bit), ...)
        stack = [(root, -1, False, (), ())]
        local = 0
        while stack:
            node, parent, is_left, ufeats, path = stack.pop()
            k = local
            local += 1
            cols["node_parent"].append(parent)
            cols["node_is_left"].append(is_left)
            if "split_feature" in node:
                if node.get("decision_type", "<=") != "<=":
                    raise ValueError(f"tree {tree['tree_index']}: categorical split on feature "
                                     f"{node['split_feature']} (decision_type {node.get('decision_type')!r}); "
                                     "models.treeshap handles numerical splits only, use pred_contrib")
                f = int(node["split_feature"])
                bits = {uf[0]: uf[2] for uf in ufeats}
                bit = bits.get(f, len(ufeats))
                cols["node_feature"].append(f)
                cols["node_threshold"].append(float(node["threshold"]))
                cols["node_default_left"].append(bool(node["default_left"]))
                cols["node_missing"].append(MISSING_TYPES[node.get("missing_type", "None")])
                cols["node_bit"].append(bit)
                cols["node_leaf"].append(-1)
                cover = float(node["internal_count"])
                children = []
                for child, left in ((node["left_child"], True), (node["right_child"], False)):
                    ratio = float(child["internal_count"] if "split_feature" in child else child["leaf_count"]) / cover
                    if f in bits:
                        uf2 = tuple((g, z * ratio, b) if g == f else (g, z, b) for g, z, b in ufeats)
                    else:
                        uf2 = ufeats + ((f, ratio, bit),)
                    children.append((child, k, left, uf2, path + ((k, left, bit),)))
                stack.append(children[1])  # right below left: left is visited first (preorder)
                stack.append(children[0])
            else:
                cols["node_feature"].append(-1)
                cols["node_threshold"].append(0.0)
                cols["node_default_left"].append(False)
                cols["node_missing"].append(0)
                cols["node_bit"].append(-1)
                cols["node_leaf"].append(len(cols["leaf_value"]))
                v = float(node["leaf_value"])
                if total is not None:
                    exp_value += float(node["leaf_count"]) / total * v
                cols["leaf_value"].append(v)
                cols["leaf_d"].append(len(ufeats))
                cols["leaf_fstart"].append(len(cols["leaf_feat"]))
                leaf_pstart.append(len(cols["path_node"]))
                for g, z, _b in ufeats:
                    cols["leaf_feat"].append(g)
                    cols["leaf_z"].append(z)
                for anc, left, b in path:
                    cols["path_node"].append(anc)
                    cols["path_left"].append(left)
                    cols["path_bit"].append(b)
        if total is not None:
            base += exp_value
        node_start.append(len(cols["node_parent"]))
    leaf_pstart.append(len(cols["path_node"]))
    dtypes = {"node_is_left": np.bool_, "node_default_left": np.bool_, "path_left": np.bool_,
              "node_threshold": np.float64, "leaf_value": np.float64, "leaf_z": np.float64}
    out = {k: np.asarray(v, dtypes.get(k, np.int64)) for k, v in cols.items()}
    out["node_start"] = np.asarray(node_start, np.int64)
    out["leaf_pstart"] = np.asarray(leaf_pstart, np.int64)
    return _derive(out), base


def _derive(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The kernel's per-node helpers: where NaN and zero go, the parent's feature bit, node lists per tree."""
    thr, miss, dleft = s["node_threshold"], s["node_missing"], s["node_default_left"]
    zero_goes_left = 0.0 <= thr
    # NaN: the default way for missing_type NaN and Zero (NaN is read as 0, which is missing); None: as 0.
    s["node_nan_left"] = np.where(miss == _MISSING_NONE, zero_goes_left, dleft)
    s["node_zero_left"] = np.where(miss == _MISSING_ZERO, dleft, zero_goes_left)
    starts = s["node_start"]
    tree_of = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    local = np.arange(len(tree_of)) - starts[tree_of]
    parent_global = starts[tree_of] + np.maximum(s["node_parent"], 0)
    # bits above 31 only matter to leaves without a table (which read the path, not the mask)
    s["node_pbit"] = np.where(s["node_parent"] >= 0, np.minimum(s["node_bit"][parent_global], 31), 0)
    internal = s["node_feature"] >= 0
    s["int_node"] = local[internal]
    s["tree_int_start"] = np.concatenate([[0], np.cumsum(np.bincount(tree_of[internal], minlength=len(starts) - 1))])
    s["leaf_node"] = local[~internal]
    s["leaf_id"] = s["node_leaf"][~internal]
    s["tree_leaf_start"] = np.concatenate([[0], np.cumsum(np.bincount(tree_of[~internal],
                                                                      minlength=len(starts) - 1))])
    for k in ("int_node", "tree_int_start", "leaf_node", "leaf_id", "tree_leaf_start", "node_pbit"):
        s[k] = np.ascontiguousarray(s[k], dtype=np.int64)
    return s


def _table_plan(leaf_d: np.ndarray, max_features: int, max_bytes: int) -> tuple[np.ndarray, int, int]:
    """Which leaves get a table: (leaf_tstart (-1 = computed per row), table size, the |U| limit used).

    The limit is the largest L <= max_features such that all leaves with |U| <= L fit in max_bytes.
    """
    sizes = np.where(leaf_d > 0, (np.int64(1) << np.minimum(leaf_d, 62)) * leaf_d, 0)
    limit = int(min(max_features, leaf_d.max(initial=0)))
    while limit > 0 and int(sizes[leaf_d <= limit].sum()) * 8 > max_bytes:
        limit -= 1
    use = (leaf_d <= limit) & (leaf_d > 0)
    tstart = np.full(len(leaf_d), -1, np.int64)
    offsets = np.cumsum(np.where(use, sizes, 0))
    tstart[use] = (offsets - sizes)[use]
    return tstart, int(offsets[-1]) if len(offsets) else 0, limit


class TreeShap:
    """Exact path-dependent TreeSHAP of a LightGBM booster (see the module docstring).

    ``TreeShap(booster).contributions(X)`` equals ``booster.predict(X, pred_contrib=True)``
    (within ~1e-12): shape (n, p + 1), last column the expected value, rows summing to the raw score.

    Parameters
    ----------
    booster: a fitted ``lightgbm.Booster`` with one tree per iteration (binary / regression).
    num_threads: threads of the parallel loop over rows (capped at numba's pool size).
    num_iteration, start_iteration: explain only these iterations (as in ``Booster.predict``).
    max_table_features, max_table_bytes: the per-leaf table limits (module docstring, "Memory").
    block_rows: rows per parallel block.

    Picklable: the pickle holds the flattened trees (a few hundred KB), not the tables, which are
    rebuilt on the first call after unpickling.
    """

    def __init__(self, booster, num_threads: int = 2, num_iteration: int | None = None, start_iteration: int = 0,
                 max_table_features: int = 10, max_table_bytes: int = 256 << 20, block_rows: int = DEFAULT_BLOCK_ROWS):
        dump = booster.dump_model(num_iteration=num_iteration, start_iteration=start_iteration)
        if int(dump.get("num_tree_per_iteration", 1)) != 1:
            raise ValueError(f"models.treeshap explains one output per iteration (binary or regression); this "
                             f"booster has {dump['num_tree_per_iteration']} trees per iteration (multiclass): "
                             "use pred_contrib")
        self.n_features = int(dump["max_feature_idx"]) + 1
        self.feature_names = list(dump.get("feature_names", []))
        self.num_threads = int(num_threads)
        if not 0 <= int(max_table_features) <= 30:
            raise ValueError(f"max_table_features must be within 0-30 (got {max_table_features})")
        self.max_table_features = int(max_table_features)
        self.max_table_bytes = int(max_table_bytes)
        self.block_rows = int(block_rows)
        t0 = time.perf_counter()
        self._struct, self.base_value = _parse_trees(dump)
        self.parse_seconds = time.perf_counter() - t0
        self.n_trees = len(self._struct["node_start"]) - 1
        self._tables: tuple[np.ndarray, np.ndarray] | None = None
        self.build_seconds: float | None = None

    # -- pickling: keep the trees, drop the tables ----------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tables"] = None
        state["build_seconds"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    # -- tables -------------------------------------------------------------------------------------------------
    @property
    def max_unique_features(self) -> int:
        """The longest distinct-feature path of any leaf."""
        return int(self._struct["leaf_d"].max(initial=0))

    def build(self) -> "TreeShap":
        """Build the per-leaf tables now (otherwise done on the first `contributions` call)."""
        if self._tables is None:
            with _BUILD_LOCK:
                if self._tables is None:
                    self._build()
        return self

    def _build(self) -> None:
        t0 = time.perf_counter()
        s = self._struct
        #: the distinct-path-feature limit under which leaves got a table (see the module docstring)
        tstart, size, self.table_features = _table_plan(s["leaf_d"], self.max_table_features, self.max_table_bytes)
        table = np.empty(size, np.float64)
        _build_tables(s["leaf_value"], s["leaf_d"], s["leaf_fstart"], s["leaf_z"], tstart, table)
        self._tables = (tstart, table)
        self.build_seconds = time.perf_counter() - t0

    @property
    def table_bytes(self) -> int:
        """Bytes of the per-leaf tables (0 until built)."""
        return 0 if self._tables is None else int(self._tables[1].nbytes)

    @property
    def leaves_without_table(self) -> int:
        """Leaves computed per row (more distinct path features than the table limit allows)."""
        self.build()
        return int(((self._tables[0] < 0) & (self._struct["leaf_d"] > 0)).sum())

    # -- explaining -----------------------------------------------------------------------------------------------
    def contributions(self, X, num_threads: int | None = None) -> np.ndarray:
        """SHAP values of rows X (n, p), float32 or float64: (n, p + 1) float64, last column the base value."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a 2-d array with {self.n_features} columns, got shape {X.shape}")
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        X = np.ascontiguousarray(X)
        self.build()
        tstart, table = self._tables
        s = self._struct
        out = np.zeros((X.shape[0], self.n_features + 1), np.float64)
        if X.shape[0] == 0:
            return out
        threads = max(1, min(int(num_threads or self.num_threads), numba.config.NUMBA_NUM_THREADS))
        if X.shape[0] < 2 * self.block_rows:
            # a few rows (one household at a time in the service): waking a second thread costs more
            # than it gives, milliseconds on a busy machine
            threads = 1
        block = max(1, min(self.block_rows, -(-X.shape[0] // threads)))
        max_nodes = int(np.diff(s["node_start"]).max(initial=1))
        max_d = self.max_unique_features
        with _KERNEL_LOCK:
            before = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                _shap_rows(X, out, block, self.base_value, s["node_start"], s["node_parent"], s["node_is_left"],
                           s["node_pbit"], s["node_feature"], s["node_threshold"], s["node_nan_left"],
                           s["node_zero_left"], s["tree_int_start"], s["int_node"], s["tree_leaf_start"],
                           s["leaf_node"], s["leaf_id"], s["leaf_value"], s["leaf_d"], s["leaf_fstart"],
                           s["leaf_feat"], s["leaf_z"], tstart, table, s["leaf_pstart"], s["path_node"],
                           s["path_left"], s["path_bit"], max_nodes, max_d)
            finally:
                numba.set_num_threads(before)
        return out

    def __repr__(self) -> str:
        return (f"TreeShap({self.n_trees} trees, {self.n_features} features, longest distinct path "
                f"{self.max_unique_features}, tables {'built' if self._tables is not None else 'not built'})")
