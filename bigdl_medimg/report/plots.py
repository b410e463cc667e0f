"""PNG plots of evaluation results (matplotlib, Agg, no global pyplot state).

Every function returns ``(png bytes, width, height)``; sizes are fixed by the
figure size at :data:`DPI`, so a report's images have known dimensions.
"""
from __future__ import annotations

import io
import math

import numpy as np

__all__ = ["DPI", "training_curves", "roc_curves", "auroc_bars", "label_confusion", "class_confusion",
           "dice_boxplot", "overlays"]

DPI = 100
_COLORS = np.array([[0, 0, 0, 0], [0.9, 0.1, 0.1, 0.55], [0.1, 0.7, 0.2, 0.55], [0.15, 0.35, 0.95, 0.55],
                    [0.95, 0.75, 0.1, 0.55], [0.7, 0.2, 0.8, 0.55], [0.1, 0.8, 0.8, 0.55]])


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI)


def _png(fig) -> tuple[bytes, int, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    w, h = fig.get_size_inches()
    return buf.getvalue(), int(round(w * DPI)), int(round(h * DPI))


def _grid(n: int, cols: int = 4):
    cols = max(1, min(cols, n))
    return cols, int(math.ceil(n / cols))


def training_curves(app: str, parts: dict) -> tuple[bytes, int, int]:
    """Training loss per iteration (with a moving average) and validation metrics per epoch."""
    train = parts.get("train", {})
    val = parts.get("validation", {})
    panels = [("train", t) for t in sorted(train) if t in ("Loss",)] + [("validation", t) for t in sorted(val)]
    if not panels:
        panels = [("train", t) for t in sorted(train)]
    fig = _figure(4.0 * max(1, len(panels)), 3.6)
    for i, (kind, tag) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        pts = (train if kind == "train" else val)[tag]
        x = np.array([p[0] for p in pts], float)
        y = np.array([p[1] for p in pts], float)
        ax.plot(x, y, lw=0.8, alpha=0.5 if kind == "train" else 1.0, marker=None if kind == "train" else "o",
                color="tab:blue" if kind == "train" else "tab:orange")
        if kind == "train" and y.size >= 10:
            k = max(2, y.size // 20)
            ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), color="tab:blue", lw=1.8,
                    label=f"moving mean ({k})")
            ax.legend(fontsize=8)
        ax.set_xlabel("iteration" if kind == "train" else "epoch")
        ax.set_title(f"{app}: {kind} {tag}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def roc_curves(res) -> tuple[bytes, int, int]:
    """One ROC panel per label with its AUROC."""
    from ..metrics.classification import roc_curve

    n = len(res.label_names)
    cols, rows = _grid(n)
    fig = _figure(3.0 * cols, 3.0 * rows)
    for k, name in enumerate(res.label_names):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        if res.labels[:, k].min() != res.labels[:, k].max():
            fpr, tpr, _ = roc_curve(res.scores[:, k], res.labels[:, k])
            ax.plot(fpr, tpr, color="tab:blue", lw=1.5)
        auc = res.summary["labels"][k]["auroc"]
        ax.set_title(f"{name}\nAUROC {auc:.3f}" if np.isfinite(auc) else f"{name}\n(one class only)", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        if k % cols == 0:
            ax.set_ylabel("sensitivity", fontsize=8)
        if k >= n - cols:
            ax.set_xlabel("1 - specificity", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def auroc_bars(res, reference: dict[str, dict[str, float]]) -> tuple[bytes, int, int]:
    """Per-label AUROC with its confidence interval, beside published values for the same labels."""
    labels = res.summary["labels"]
    n = len(labels)
    fig = _figure(max(6.0, 0.65 * n + 2.5), 4.2)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(n)
    auc = np.array([lab["auroc"] for lab in labels], float)
    lo = np.array([lab["auroc_ci"][0] if lab["auroc_ci"][0] is not None else np.nan for lab in labels], float)
    hi = np.array([lab["auroc_ci"][1] if lab["auroc_ci"][1] is not None else np.nan for lab in labels], float)
    ax.bar(x, auc, color="tab:blue", alpha=0.8, label="this model")
    ok = np.isfinite(lo) & np.isfinite(hi)
    ax.errorbar(x[ok], auc[ok], yerr=[auc[ok] - lo[ok], hi[ok] - auc[ok]], fmt="none", ecolor="black", capsize=3,
                lw=1)
    for (name, values), marker, color in zip(reference.items(), ("D", "s", "^"), ("black", "tab:orange", "tab:green")):
        ys = [values.get(lab["label"], np.nan) for lab in labels]
        ax.scatter(x, ys, marker=marker, color=color, zorder=3, label=name, s=22)
    ax.set_xticks(x)
    ax.set_xticklabels([lab["label"] for lab in labels], rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("AUROC")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def _heatmap(ax, cm: np.ndarray, names, title: str, normalize: bool = True) -> None:
    cm = np.asarray(cm, float)
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > 0.6 * (shown.max() or 1) else "black")
    ax.set_xticks(range(len(names)))
    ax.set_yticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=7, rotation=45, ha="right")
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("reference", fontsize=8)
    ax.set_title(title, fontsize=9)


def label_confusion(res) -> tuple[bytes, int, int]:
    """Per-label 2x2 confusion matrices at the label's threshold (multi-label), or one KxK (multi-class)."""
    if res.mode == "multiclass":
        k = len(res.label_names)
        cm = np.zeros((k, k), np.int64)
        np.add.at(cm, (res.labels.argmax(axis=1), res.scores.argmax(axis=1)), 1)
        fig = _figure(max(4.0, 0.5 * k + 2.5), max(4.0, 0.5 * k + 2.0))
        _heatmap(fig.add_subplot(1, 1, 1), cm, res.label_names, "predicted class = highest probability")
        fig.tight_layout()
        return _png(fig)
    n = len(res.label_names)
    cols, rows = _grid(n)
    fig = _figure(2.6 * cols, 2.6 * rows)
    for k, lab in enumerate(res.summary["labels"]):
        cm = np.array([[lab["tn"], lab["fp"]], [lab["fn"], lab["tp"]]])
        _heatmap(fig.add_subplot(rows, cols, k + 1), cm, ["neg", "pos"],
                 f"{lab['label']} (t={lab['threshold']:.2f})")
    fig.tight_layout()
    return _png(fig)


def class_confusion(cm: np.ndarray, names) -> tuple[bytes, int, int]:
    """Voxel confusion matrix, rows normalised (counts printed)."""
    k = len(names)
    fig = _figure(max(4.5, 0.7 * k + 2.5), max(4.0, 0.7 * k + 2.0))
    _heatmap(fig.add_subplot(1, 1, 1), cm, names, "voxels (row-normalised colour)")
    fig.tight_layout()
    return _png(fig)


def dice_boxplot(res) -> tuple[bytes, int, int]:
    """Dice per class over volumes: box plot with each volume as a dot."""
    rows = [v["dice"] for v in res.volumes if v["error"] is None and v["dice"] is not None]
    a = np.asarray(rows, float)
    fig = _figure(max(5.0, 1.3 * len(res.class_names) + 2.0), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    data = [a[np.isfinite(a[:, k]), k] for k in range(a.shape[1])]
    ax.boxplot(data, showmeans=True)
    rng = np.random.default_rng(0)
    for k, d in enumerate(data):
        ax.scatter(k + 1 + rng.uniform(-0.12, 0.12, d.size), d, s=10, alpha=0.6, color="tab:blue")
    ax.set_xticks(range(1, len(res.class_names) + 1))
    ax.set_xticklabels(res.class_names, fontsize=8, rotation=20)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Dice")
    ax.set_title(f"Dice per class over {a.shape[0]} volumes", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def overlays(res) -> tuple[bytes, int, int]:
    """Best, median and worst volume: image, reference and prediction on the slice with most reference."""
    n = len(res.overlays)
    fig = _figure(9.0, 3.0 * n)
    for i, o in enumerate(res.overlays):
        img = np.asarray(o["image"], float)
        lo, hi = np.percentile(img, [1, 99]) if img.size else (0, 1)
        for j, (what, mask) in enumerate((("image", None), ("reference", o["reference"]),
                                          ("prediction", o["prediction"]))):
            ax = fig.add_subplot(n, 3, 3 * i + j + 1)
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect=o["aspect"],
                      interpolation="nearest")
            if mask is not None:
                m = np.asarray(mask, int) % len(_COLORS)
                ax.imshow(_COLORS[m], aspect=o["aspect"], interpolation="nearest")
            title = f"{o['kind']}: {o['key']} (Dice {o['mean_dice']:.3f})" if j == 0 else what
            ax.set_title(title if j else f"{title}\nslice {o['slice']}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return _png(fig)
