"""How well an encoder's IDR tells degradations apart, and the paper's t-SNE picture of it (Fig. 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdsr.atomic import atomic_path
from kdsr.insight._optional import require
from kdsr.insight.collect import IDRSamples

KNN_NEIGHBOURS = 5


def _probe_target(samples: IDRSamples) -> str | None:
    """The degradation parameter the linear probe predicts: sigma when the settings vary it, else noise or JPEG."""
    for name in ("sigma", "noise", "jpeg"):
        if np.ptp(samples.targets(name)) > 0:
            return name
    return None


def separability(samples: IDRSamples) -> dict[str, float | str | None]:
    """Leave-one-image-out k-NN accuracy of the setting, R^2 of a ridge probe for sigma (or noise, when only noise
    varies), both on standardised features, and the silhouette score of the settings (Euclidean, raw features)."""
    model_selection = require("sklearn.model_selection")
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import accuracy_score, r2_score, silhouette_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, labels, groups = samples.features.astype(np.float64), samples.setting, samples.image
    if len(np.unique(groups)) < 2 or len(np.unique(labels)) < 2:
        raise ValueError("separability needs at least two images and two settings")
    folds = model_selection.LeaveOneGroupOut()
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(min(KNN_NEIGHBOURS, len(x) - len(samples.degradations))))
    predicted = model_selection.cross_val_predict(knn, x, labels, groups=groups, cv=folds)
    result: dict[str, float | str | None] = {"knn_accuracy": float(accuracy_score(labels, predicted))}
    target = _probe_target(samples)
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    y = samples.targets(target)
    fitted = model_selection.cross_val_predict(probe, x, y, groups=groups, cv=folds)
    result["probe_target"] = target
    result["probe_r2"] = float(r2_score(y, fitted))
    result["silhouette"] = float(silhouette_score(x, labels)) if np.ptp(x) > 0 else 0.0
    return result


def tsne_figure(panels: dict[str, IDRSamples], path: Path, seed: int = 0) -> None:
    """One t-SNE panel per model, points coloured by degradation setting (paper Fig. 6), written as an image."""
    manifold = require("sklearn.manifold")
    require("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.4), squeeze=False)
    for ax, (name, samples) in zip(axes[0], panels.items(), strict=True):
        x = samples.features.astype(np.float64)
        perplexity = float(min(30, max(2, (len(x) - 1) // 3)))
        embedded = manifold.TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        colours = plt.get_cmap("viridis")(np.linspace(0, 1, len(samples.degradations)))
        for index, degradation in enumerate(samples.degradations):
            chosen = samples.setting == index
            ax.scatter(*embedded[chosen].T, s=12, color=colours[index], label=degradation.label)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=7, loc="best", markerscale=1.5)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
