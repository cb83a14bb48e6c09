"""Projections to 2-D/3-D: PCA (numpy, always available), t-SNE (scikit-learn) and UMAP (umap-learn).

t-SNE needs ``pip install 'workbench[embed]'``, UMAP ``pip install umap-learn``;
both are imported only when asked for. PCA and UMAP place new points with
:meth:`Projection.transform`; t-SNE cannot.

>>> proj = fit_projection([[0.0, 1.0], [1.0, 0.0], [2.0, -1.0]], "pca")
>>> proj.points.shape, round(float(proj.explained_variance_ratio[0]), 6)
((3, 2), 1.0)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from workbench._optional import has_module, require
from workbench.embeddings._threads import _thread_limit
from workbench.errors import EmbeddingError, MissingDependencyError

__all__ = ["Projection", "fit_projection"]


@dataclasses.dataclass
class Projection:
    """A fitted projection to 2-D or 3-D.

    Attributes:
        method: ``"pca"``, ``"tsne"`` or ``"umap"``.
        dim: 2 or 3.
        points: ``(N, dim)`` float64, the fitted points.
        explained_variance_ratio: PCA only, ``(dim,)``.
    """

    method: str
    dim: int
    points: np.ndarray
    explained_variance_ratio: np.ndarray | None = None
    _center: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _scale: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _components: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _model: Any = dataclasses.field(default=None, repr=False)
    _n_features: int = dataclasses.field(default=0, repr=False)

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1] != self._n_features:
            raise EmbeddingError(f"this projection was fitted on {self._n_features}-D embeddings; got {x.shape[1]}-D")
        if self._scale is not None:
            x = (x - self._center) / self._scale
        return x

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Place new points ``(M, D)`` -> ``(M, dim)`` without refitting (PCA and UMAP)."""
        if self.method == "tsne":
            raise EmbeddingError("t-SNE cannot place new points; refit with them included, or use method='pca' "
                                 "(or 'umap') to place new speakers in a fixed map")
        x = self._prepare(x)
        if self.method == "pca":
            return (x - self._components[0]) @ self._components[1:].T
        return np.asarray(self._model.transform(x), dtype=np.float64)


def fit_projection(
    x: np.ndarray,
    method: str = "pca",
    dim: int = 2,
    *,
    seed: int = 0,
    standardize: bool = False,
    perplexity: float | None = None,
    n_neighbors: int | None = None,
    threads: int | None = None,
) -> Projection:
    """Fit a 2-D or 3-D map of embeddings ``x (N, D)``.

    Args:
        x: ``(N, D)`` embeddings (utterances or speakers).
        method (str, default ``"pca"``): ``"pca"`` (numpy), ``"tsne"``
            (scikit-learn; cannot place new points) or ``"umap"`` (umap-learn).
        dim (int, default 2): 2 or 3.
        seed (int, default 0): t-SNE/UMAP randomness (PCA is deterministic; signs are fixed).
        standardize (bool, default False): z-score each dimension first (kept for ``transform``).
        perplexity: t-SNE perplexity (default ``min(30, (N - 1) / 3)``).
        n_neighbors: UMAP neighbours (default ``min(15, N - 1)``).
        threads (int | None): OpenMP/BLAS threads for t-SNE/UMAP (None: the
            libraries' default). On a busy 2-core machine, t-SNE of 640 points
            took 2.9 s with 1 thread and 44 s with 2 (threads waiting at barriers).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise EmbeddingError(f"expected an (N, D) array, got shape {x.shape}")
    if dim not in (2, 3):
        raise EmbeddingError(f"dim must be 2 or 3, got {dim}")
    if method not in ("pca", "tsne", "umap"):
        raise EmbeddingError(f"unknown projection {method!r}; choose 'pca', 'tsne' or 'umap'")
    n = len(x)
    need = {"pca": 2, "tsne": 4, "umap": 4}[method]
    if n < need:
        raise EmbeddingError(f"a {method} map needs at least {need} points; got {n}")
    proj = Projection(method, dim, np.zeros((n, dim)), _n_features=x.shape[1])
    if standardize:
        proj._center, proj._scale = x.mean(0), x.std(0) + 1e-8
    xs = proj._prepare(x)
    if method == "pca":
        mean = xs.mean(0)
        _, s, vt = np.linalg.svd(xs - mean, full_matrices=False)
        comps = np.zeros((dim, x.shape[1]))
        k = min(dim, vt.shape[0])
        comps[:k] = vt[:k]
        signs = np.sign(comps[np.arange(dim), np.argmax(np.abs(comps), axis=1)])
        comps *= np.where(signs == 0, 1.0, signs)[:, None]  # deterministic orientation
        var = s**2
        ratio = np.zeros(dim)
        ratio[:k] = var[:k] / var.sum() if var.sum() > 0 else 0.0
        proj._components = np.vstack([mean, comps])
        proj.explained_variance_ratio = ratio
        proj.points = (xs - mean) @ comps.T
    elif method == "tsne":
        manifold = require("sklearn.manifold", extra="embed", purpose="draw a t-SNE map (or use method='pca')")
        perp = float(perplexity) if perplexity is not None else min(30.0, (n - 1) / 3.0)
        if not 0 < perp < n:
            raise EmbeddingError(f"t-SNE perplexity must be between 0 and the number of points ({n}); got {perp}")
        model = manifold.TSNE(n_components=dim, perplexity=perp, init="pca", random_state=int(seed))
        with _thread_limit(threads):
            proj.points = np.asarray(model.fit_transform(xs), dtype=np.float64)
    else:
        if not has_module("umap"):
            raise MissingDependencyError("UMAP maps need the optional package 'umap-learn': pip install umap-learn "
                                         "(or use method='pca', which can also place new points)")
        import umap

        model = umap.UMAP(n_components=dim, n_neighbors=int(n_neighbors or min(15, n - 1)), random_state=int(seed))
        with _thread_limit(threads):
            proj.points = np.asarray(model.fit_transform(xs), dtype=np.float64)
        proj._model = model
    return proj
