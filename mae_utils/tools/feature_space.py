"""Looking at features instead of scoring them: 2-D maps and nearest neighbours.

A linear probe asks one question per target; a map of the feature space shows what the encoder
groups together without being asked. :func:`map_2d` lays the faces out in two dimensions, with PCA
(the two directions of largest variance: faithful to large distances) or t-SNE (van der Maaten and
Hinton 2008: faithful to who is near whom, not to distances between clusters).
:func:`nearest_neighbours` finds, for a few faces, the most similar others: by the encoder's
features or by raw pixels, to see whether the encoder's idea of "similar" is more than colour and
layout. Features are standardised first, so no single large dimension decides.
"""

from __future__ import annotations

import numpy as np

from ..util.errors import UserError

__all__ = ["MAP_METHODS", "map_2d", "nearest_neighbours"]

MAP_METHODS = ("pca", "tsne")


def _standardise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x - x.mean(0)) / (x.std(0) + 1e-8)


def map_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 2) coordinates by ``method`` ('pca' or 'tsne'), seeded."""
    from sklearn.decomposition import PCA  # local: scikit-learn is heavy; only maps need it
    from sklearn.manifold import TSNE  # local: as above

    if method not in MAP_METHODS:
        raise UserError(f"map method must be one of {', '.join(MAP_METHODS)}; got {method!r}")
    x = _standardise(features)
    if len(x) < 5:
        raise UserError(f"a map needs at least 5 faces; got {len(x)}")
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x)
    perplexity = float(min(30, (len(x) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x)


def nearest_neighbours(
    features: np.ndarray, queries: np.ndarray | list[int], k: int = 5
) -> np.ndarray:
    """(len(queries), k) indices of each query's ``k`` nearest other faces (cosine similarity of the
    standardised features; the query itself excluded)."""
    x = _standardise(features)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    queries = np.asarray(queries, dtype=np.int64)
    if k < 1 or k >= len(x):
        raise UserError(f"k must lie in 1 .. {len(x) - 1}; got {k}")
    sim = x[queries] @ x.T
    sim[np.arange(len(queries)), queries] = -np.inf
    return np.argsort(-sim, axis=1)[:, :k]
