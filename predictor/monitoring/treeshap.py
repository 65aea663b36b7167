"""Exact path-dependent TreeSHAP (Lundberg et al. 2020, algorithm 2) for tree ensembles, in NumPy.

A tree ensemble is flattened once (``TreeEnsemble.from_trees``) into its root-to-leaf paths. On each path
the splits on one feature are merged into one *slot* ``j`` with

- ``z_j``: the share of the training cover that follows the path at those splits (product of
  child cover / (left + right cover)), and
- ``o_j``: 1 if the row to explain follows the path at every one of those splits, else 0.

The leaf's share of the conditional expectation ``E[f(x) | x_S]`` is the game
``g(S) = v · Π_{j∈S} o_j · Π_{j∉S} z_j``, whose Shapley value for slot ``i`` is
``v (o_i − z_i) Σ_k k!(d−1−k)!/d! · e_k``, ``e_k`` the coefficients of ``Π_{j≠i} (z_j + o_j t)`` — what the
paper's "extend/unwind" computes. Here it is computed as ``v (o_i − z_i) ∫₀¹ Π_{j≠i} (z_j (1−t) + o_j t) dt``
(the same number: see ``_slot_weights``), by an exact Gauss–Legendre rule, vectorised over every leaf of a
path length ``d`` at once. The sum over slots is ``v (Π o − Π z)``, so per row
``expected_value + Σ φ = f(x)`` exactly (up to float rounding), which the tests check against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

# Rows × leaves per vectorised block: bounds the explainer's memory (~8 bytes each, a few copies).
_BLOCK_ELEMENTS = 1 << 16


@dataclass(frozen=True)
class Tree:
    """One tree in the arrays scikit-learn uses (``-1`` children mark a leaf).

    ``values[node, k]``: what the leaf adds to output ``k`` (a class probability share, or a margin).
    ``float32_inputs``: the tree compares ``float32(x) <= threshold`` (scikit-learn's trees do).
    """

    left: Ints
    right: Ints
    feature: Ints
    threshold: Floats
    missing_left: Bools
    cover: Floats
    values: Floats
    float32_inputs: bool = False


@dataclass(frozen=True)
class _Group:
    """The leaves whose path has ``d`` distinct features, as [leaves, d] arrays."""

    d: int
    feature: Ints  # [L, d]
    z: Floats  # [L, d]
    values: Floats  # [L, K]
    slot_offset: int  # where this group's slots start in the flat slot numbering
    nodes: Floats  # [G]: Gauss–Legendre nodes on [0, 1], exact for the degree d−1 integrands
    weights: Floats  # [G]
    z_rest: Floats  # [L, d, G]: z (1 − node)


@dataclass(frozen=True)
class TreeEnsemble:
    """Every root-to-leaf path of an ensemble whose output is the sum of its trees' leaf values."""

    n_features: int
    n_outputs: int
    expected_value: Floats  # [K]: Σ over trees of the cover-weighted mean leaf value
    groups: tuple[_Group, ...]
    n_slots: int
    # one entry per split on a path (edges), pointing at the slot it belongs to:
    edge_feature: Ints
    edge_threshold: Floats
    edge_goes_left: Bools
    edge_missing_left: Bools
    edge_slot: Ints
    edge_float32: Bools

    @classmethod
    def from_trees(cls, trees: Iterable[Tree], n_features: int, n_outputs: int) -> TreeEnsemble:
        paths = [_leaf_paths(tree) for tree in trees]
        expected = np.zeros(n_outputs)
        for path in paths:
            expected += path.z.prod(axis=1) @ path.values
        depth = max((p.feature.shape[1] for p in paths), default=0)
        merged = _LeafPaths.concatenate([p.padded(depth) for p in paths], n_outputs, depth)
        groups: list[_Group] = []
        edge_parts: list[tuple[Ints, Floats, Bools, Bools, Ints, Bools]] = []
        offset = 0
        for d in range(1, depth + 1):
            members = np.flatnonzero(merged.d == d)
            if members.size == 0:
                continue
            nodes, weights = np.polynomial.legendre.leggauss(d // 2 + 1)
            z = merged.z[members, :d]
            groups.append(
                _Group(
                    d=d,
                    feature=merged.feature[members, :d],
                    z=z,
                    values=merged.values[members],
                    slot_offset=offset,
                    nodes=(nodes + 1) / 2,
                    weights=weights / 2,
                    z_rest=z[..., None] * (1.0 - (nodes + 1) / 2),
                )
            )
            valid = merged.edge_slot[members] >= 0  # [Lg, depth]
            leaf_index = np.broadcast_to(np.arange(members.size)[:, None], valid.shape)
            edge_parts.append(
                (
                    merged.edge_feature[members][valid],
                    merged.edge_threshold[members][valid],
                    merged.edge_left[members][valid],
                    merged.edge_missing_left[members][valid],
                    offset + leaf_index[valid] * d + merged.edge_slot[members][valid],
                    merged.edge_float32[members][valid],
                )
            )
            offset += members.size * d
        columns = [np.concatenate(part) for part in zip(*edge_parts, strict=True)] if edge_parts else []
        empty = np.zeros(0)
        return cls(
            n_features=n_features,
            n_outputs=n_outputs,
            expected_value=expected,
            groups=tuple(groups),
            n_slots=offset,
            edge_feature=columns[0].astype(np.int64) if columns else empty.astype(np.int64),
            edge_threshold=columns[1].astype(np.float64) if columns else empty,
            edge_goes_left=columns[2].astype(np.bool_) if columns else empty.astype(np.bool_),
            edge_missing_left=columns[3].astype(np.bool_) if columns else empty.astype(np.bool_),
            edge_slot=columns[4].astype(np.int64) if columns else empty.astype(np.int64),
            edge_float32=columns[5].astype(np.bool_) if columns else empty.astype(np.bool_),
        )

    def shap_values(self, x: Floats) -> tuple[Floats, Floats]:
        """``(phi [N, K, F], output [N, K])`` with ``expected_value + phi.sum(-1) == output`` per row."""
        n_rows = x.shape[0]
        phi = np.zeros((n_rows, self.n_outputs, self.n_features))
        output = np.tile(self.expected_value, (n_rows, 1))
        widest = max((g.feature.size for g in self.groups), default=1)
        step = max(1, _BLOCK_ELEMENTS // max(1, widest))
        for start in range(0, n_rows, step):
            block = slice(start, start + step)
            self._block(x[block], phi[block], output[block])
        return phi, output

    def _block(self, x: Floats, phi: Floats, output: Floats) -> None:
        n_rows = x.shape[0]
        values = x[:, self.edge_feature]
        values = np.where(self.edge_float32, values.astype(np.float32).astype(np.float64), values)
        with np.errstate(invalid="ignore"):
            goes_left = np.where(np.isnan(values), self.edge_missing_left, values <= self.edge_threshold)
        failed = (goes_left != self.edge_goes_left).astype(np.float64)
        index = (np.arange(n_rows)[:, None] * self.n_slots + self.edge_slot).ravel()
        ones = np.bincount(index, weights=failed.ravel(), minlength=n_rows * self.n_slots) == 0
        ones = ones.reshape(n_rows, self.n_slots)
        for group in self.groups:
            leaves = group.feature.shape[0]
            o = ones[:, group.slot_offset : group.slot_offset + leaves * group.d].reshape(n_rows, leaves, group.d)
            weight = _slot_weights(o.astype(np.float64), group.z, group.z_rest, group.nodes, group.weights)  # [N, L, d]
            reached = o.all(axis=2).astype(np.float64)  # the leaf the row lands in
            output += (reached - group.z.prod(axis=1)) @ group.values
            target = (np.arange(n_rows)[:, None, None] * self.n_features + group.feature).ravel()
            for k in range(self.n_outputs):
                if not group.values[:, k].any():
                    continue
                contribution = (weight * group.values[:, k][None, :, None]).ravel()
                phi[:, k, :] += np.bincount(target, weights=contribution, minlength=n_rows * self.n_features).reshape(
                    n_rows, self.n_features
                )


def _slot_weights(o: Floats, z: Floats, z_rest: Floats, nodes: Floats, weights: Floats) -> Floats:
    """``(o_i − z_i) ∫₀¹ Π_{j≠i} (z_j (1−t) + o_j t) dt`` for every slot ``i`` of every leaf: [N, L, d].

    That integral is the Shapley weighting ``Σ_k k!(d−1−k)!/d! · e_k`` (each weight is the Beta integral
    ``∫ t^k (1−t)^(d−1−k) dt``), and, the integrand being a polynomial of degree d−1, Gauss–Legendre with
    ``d//2 + 1`` nodes computes it exactly.
    """
    factors = z_rest + o[..., None] * nodes  # [N, L, d, G]; z_rest = z (1 − t), fixed per leaf
    total = factors.prod(axis=2, keepdims=True)
    # factors > 0 unless o_j = z_j = 0, where the slot's weight (o_j − z_j)·… is 0 anyway (and the others' total is 0)
    without = np.divide(total, factors, out=np.zeros_like(factors), where=factors > 0)
    weighted: Floats = (o - z) * (without @ weights)
    return weighted


@dataclass(frozen=True)
class _LeafPaths:
    """Every leaf's path as [leaves, depth] arrays: slots (distinct features) and splits (edges)."""

    d: Ints  # [L] distinct features on the path
    feature: Ints  # [L, depth] slot -> feature (-1 past d)
    z: Floats  # [L, depth] slot -> merged cover share (1 past d)
    values: Floats  # [L, K]
    edge_feature: Ints  # [L, depth] per split on the path, root first (-1 past the leaf's depth)
    edge_threshold: Floats
    edge_left: Bools
    edge_missing_left: Bools
    edge_slot: Ints  # the slot of the split's feature (-1 past the leaf's depth)
    edge_float32: Bools

    def padded(self, depth: int) -> _LeafPaths:
        extra = depth - self.feature.shape[1]

        def pad(array: npt.NDArray[Any], fill: Any) -> npt.NDArray[Any]:
            return np.pad(array, ((0, 0), (0, extra)), constant_values=fill)

        return _LeafPaths(
            self.d,
            pad(self.feature, -1),
            pad(self.z, 1.0),
            self.values,
            pad(self.edge_feature, 0),
            pad(self.edge_threshold, 0.0),
            pad(self.edge_left, False),
            pad(self.edge_missing_left, False),
            pad(self.edge_slot, -1),
            pad(self.edge_float32, False),
        )

    @staticmethod
    def concatenate(parts: list[_LeafPaths], n_outputs: int, depth: int) -> _LeafPaths:
        if not parts:
            empty_i, empty_f = np.zeros((0, depth), np.int64), np.zeros((0, depth))
            empty_b = np.zeros((0, depth), np.bool_)
            return _LeafPaths(
                np.zeros(0, np.int64), empty_i, empty_f, np.zeros((0, n_outputs)), empty_i, empty_f, empty_b,
                empty_b, empty_i, empty_b,
            )  # fmt: skip
        return _LeafPaths(*(np.concatenate([getattr(p, name) for p in parts]) for name in _LEAF_FIELDS))


_LEAF_FIELDS = tuple(_LeafPaths.__dataclass_fields__)


def _leaf_paths(tree: Tree) -> _LeafPaths:
    """The root-to-leaf paths of one tree, computed level by level with NumPy."""
    n = tree.left.size
    parent = np.full(n, -1, dtype=np.int64)
    inner = np.flatnonzero(tree.left >= 0)
    parent[tree.left[inner]] = inner
    parent[tree.right[inner]] = inner
    leaves = np.flatnonzero(tree.left < 0)
    # ancestors[l, k]: the node k steps above leaf l, child[l, k] the node below it on the path
    child_cols, ancestor_cols = [], []
    current = leaves.copy()
    while True:
        up = np.where(current >= 0, parent[np.maximum(current, 0)], -1)
        if (up < 0).all():
            break
        child_cols.append(current)
        ancestor_cols.append(up)
        current = up
    depth = len(ancestor_cols)
    if depth == 0:
        empty_i, empty_f = np.zeros((leaves.size, 0), np.int64), np.zeros((leaves.size, 0))
        empty_b = np.zeros((leaves.size, 0), np.bool_)
        return _LeafPaths(
            np.zeros(leaves.size, np.int64), empty_i, empty_f, tree.values[leaves], empty_i, empty_f, empty_b,
            empty_b, empty_i, empty_b,
        )  # fmt: skip
    # root first: reverse the columns; a shallow leaf's path is padded with -1 at the end
    ancestors = np.stack(ancestor_cols[::-1], axis=1)
    children = np.stack(child_cols[::-1], axis=1)
    shift = (ancestors < 0).sum(axis=1)
    order = (np.arange(depth)[None, :] + shift[:, None]) % depth
    ancestors = np.take_along_axis(ancestors, order, axis=1)
    children = np.take_along_axis(children, order, axis=1)
    valid = np.arange(depth)[None, :] < (depth - shift)[:, None]
    a = np.where(valid, ancestors, 0)
    c = np.where(valid, children, 0)
    features = np.where(valid, tree.feature[a], -1)
    both = tree.cover[tree.left[a]] + tree.cover[tree.right[a]]
    share = np.where(both > 0, tree.cover[c] / np.where(both > 0, both, 1.0), 0.5)
    # slots: the distinct features of each path, in order of first appearance
    first = valid.copy()
    slot = np.full(features.shape, -1, dtype=np.int64)
    for k in range(depth):
        if k:
            seen = (features[:, :k] == features[:, k : k + 1]) & valid[:, :k]
            first[:, k] &= ~seen.any(axis=1)
    running = np.cumsum(first, axis=1) - 1
    for k in range(depth):
        earlier = (features[:, : k + 1] == features[:, k : k + 1]) & first[:, : k + 1]
        slot[:, k] = np.where(valid[:, k], running[np.arange(len(leaves)), earlier.argmax(axis=1)], -1)
    d = first.sum(axis=1)
    slot_feature = np.full(features.shape, -1, dtype=np.int64)
    z = np.ones(features.shape)
    rows = np.arange(len(leaves))
    for k in range(depth):
        on = valid[:, k]
        slot_feature[rows[on], slot[on, k]] = features[on, k]
        z[rows[on], slot[on, k]] *= share[on, k]
    return _LeafPaths(
        d=d.astype(np.int64),
        feature=slot_feature,
        z=z,
        values=tree.values[leaves],
        edge_feature=np.where(valid, features, 0),
        edge_threshold=np.where(valid, tree.threshold[a], 0.0),
        edge_left=valid & (tree.left[a] == c),
        edge_missing_left=valid & tree.missing_left[a],
        edge_slot=slot,
        edge_float32=np.full(features.shape, tree.float32_inputs),
    )
