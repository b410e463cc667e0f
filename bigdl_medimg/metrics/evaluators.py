"""Spark ML ``Evaluator``s: Dice, surface distances (HD95, MSD) and multi-label AUROC.

They work in ``CrossValidator`` / ``TrainValidationSplit`` and persist like any
pyspark.ml stage.  Segmentation metrics are computed per volume on the
executors (:func:`segmentation_scores`); only a few numbers per volume reach
the driver.  AUROC needs every case's scores, which are small (labels x cases
doubles), so those are collected.
"""
from __future__ import annotations

from typing import Self

import warnings
from typing import Sequence

import numpy as np
from pyspark import keyword_only
from pyspark.ml.evaluation import Evaluator
from pyspark.ml.param import Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from ..errors import ConfigError
from ..params import param
from .classification import label_matrix

__all__ = ["segmentation_scores", "DiceEvaluator", "SurfaceDistanceEvaluator", "MultiLabelAUCEvaluator",
           "classification_arrays", "label_matrix"]


def _score_volume(pred, ref, n_classes: int, surface: bool, percentile: float) -> dict:
    from ..tensor import get_affine, to_numpy
    from .functional import confusion_matrix, dice_per_class, surface_distances

    p, r = to_numpy(pred), to_numpy(ref)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    aff_p, aff_r = get_affine(pred), get_affine(ref)
    if not np.allclose(aff_p, aff_r, atol=1e-3):
        raise ValueError("prediction and reference affines differ (not on the same grid)")
    cm = confusion_matrix(p, r, n_classes)
    out = {"dice": dice_per_class(p, r, n_classes).tolist(), "confusion": cm.ravel().tolist(),
           "hd": None, "msd": None}
    if surface:
        sd = surface_distances(p, r, aff_r, n_classes, percentile=percentile)
        out["hd"], out["msd"] = sd["hd"].tolist(), sd["msd"].tolist()
    return out


def segmentation_scores(df, predictionCol: str = "segmentation", labelCol: str = "mask", numClasses: int = 2,
                        keyCol: str | None = None, surface: bool = True, percentile: float = 95.0):
    """Per-volume metrics, computed on the executors.

    Returns a DataFrame with ``keyCol`` (when given), ``dice``, ``hd``, ``msd``
    (``array<double>`` over classes ``1..numClasses-1``; ``hd``/``msd`` null
    when ``surface`` is off), ``confusion`` (``array<long>``, row-major
    ``numClasses x numClasses`` voxel counts ``[reference, predicted]``) and
    ``error``: a row whose prediction or reference is null, of another shape
    or grid, or has labels out of range keeps its key and says why, so no
    volume is lost silently.
    """
    import pandas as pd
    from pyspark.sql import types as T

    from ..errors import one_line

    n = int(numClasses)
    if n < 2:
        raise ConfigError(f"numClasses must be >= 2, got {n}")
    arr = T.ArrayType(T.DoubleType())
    fields = [T.StructField("dice", arr), T.StructField("hd", arr), T.StructField("msd", arr),
              T.StructField("confusion", T.ArrayType(T.LongType())), T.StructField("error", T.StringType())]
    cols = [predictionCol, labelCol]
    for c in cols + ([keyCol] if keyCol else []):
        if c not in df.columns:
            raise ConfigError(f"column {c!r} not found (columns: {', '.join(df.columns)})")
    if keyCol:
        fields.insert(0, df.schema[keyCol])
        cols.insert(0, keyCol)

    def run(batches):
        for pdf in batches:
            rows = []
            for rec in pdf.to_dict("records"):
                pred, ref = rec[predictionCol], rec[labelCol]
                out = {"dice": None, "hd": None, "msd": None, "confusion": None, "error": None}
                if keyCol:
                    out[keyCol] = rec[keyCol]
                if pred is None or ref is None:
                    which = "prediction" if pred is None else "reference"
                    out["error"] = f"{which} is null"
                else:
                    try:
                        out.update(_score_volume(pred, ref, n, surface, percentile))
                    except Exception as exc:  # one bad volume must not fail the evaluation
                        out["error"] = f"{type(exc).__name__}: {one_line(exc)}"
                rows.append(out)
            yield pd.DataFrame(rows, columns=[f.name for f in fields])

    return df.select(*cols).mapInPandas(run, T.StructType(fields))


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


#: What a segmentation evaluator does with a volume it cannot score (null prediction or reference, other grid).
UNSCORED = ("worst", "error", "skip")


class _SegmentationEvalParams(Params):
    predictionCol = param("predictionCol", "predicted label-mask tensor column", TypeConverters.toString)
    labelCol = param("labelCol", "reference label-mask tensor column", TypeConverters.toString)
    numClasses = param("numClasses", "number of classes including background (0)", TypeConverters.toInt)
    classes = param("classes", "foreground classes to average ([] = all of 1..numClasses-1)",
                    TypeConverters.toListInt)
    unscored = param("unscored", "a volume that cannot be scored: 'worst' (Dice 0, infinite distance; the default), "
                                 "'error' (raise) or 'skip' (left out: not for model selection)",
                     TypeConverters.toString)

    def _check(self) -> list[int]:
        n = self.getOrDefault("numClasses")
        ks = list(self.getOrDefault("classes")) or list(range(1, n))
        bad = [k for k in ks if not 0 < k < n]
        if bad:
            raise ConfigError(f"classes {bad} outside the foreground classes 1..{n - 1}")
        return ks

    def volume_scores(self, df, keyCol: str | None = None):
        """Per-volume scores as a small pandas DataFrame (see :func:`segmentation_scores`)."""
        return segmentation_scores(df, self.getOrDefault("predictionCol"), self.getOrDefault("labelCol"),
                                   self.getOrDefault("numClasses"), keyCol=keyCol, **self._surface_args()
                                   ).toPandas()

    def _scored(self, df):
        """``(classes, per-volume scores)``: the scored volumes and, under ``unscored='worst'``, one worst row
        (Dice 0 and infinite distances for every class) per volume that could not be scored."""
        import pandas as pd

        ks = self._check()
        policy = self.getOrDefault("unscored")
        if policy not in UNSCORED:
            raise ConfigError(f"unscored must be one of {UNSCORED}, got {policy!r}")
        vols = self.volume_scores(df)
        good, bad = vols[vols["error"].isna()], vols[vols["error"].notna()]
        errors = bad["error"].unique()[:3]
        if good.empty:
            raise ConfigError(f"{type(self).__name__}: no volume could be scored"
                              + (f" ({'; '.join(errors)})" if len(errors) else " (empty DataFrame)"))
        if len(bad) and policy == "error":
            raise ConfigError(f"{type(self).__name__}: {len(bad)} of {len(vols)} volume(s) could not be scored "
                              f"({'; '.join(errors)}); unscored='worst' counts them as Dice 0 and infinite distance")
        if len(bad) and policy == "worst":  # a model that fails on the hard cases must not score higher
            n = int(self.getOrDefault("numClasses")) - 1
            worst = pd.DataFrame({"dice": [[0.0] * n] * len(bad), "hd": [[float("inf")] * n] * len(bad),
                                  "msd": [[float("inf")] * n] * len(bad)})
            good = pd.concat([good[["dice", "hd", "msd"]], worst], ignore_index=True)
        return ks, good

    def setUnscored(self, value: str) -> Self:
        """Set :py:attr:`unscored`: what a volume that cannot be scored (null prediction or reference, other shape
        or grid) counts as: 'worst' (Dice 0 and infinite distance for every class; the default), 'error' (a
        ConfigError naming the count and reasons) or 'skip' (left out; a model that fails on hard cases then scores
        higher, so not for model selection).
        """
        return self._set(unscored=value)

    def getUnscored(self) -> str:
        """The value of :py:attr:`unscored` (set or default): 'worst', 'error' or 'skip'."""
        return self.getOrDefault(self.unscored)

    def setPredictionCol(self, value: str) -> Self:
        """Set :py:attr:`predictionCol`: predicted label-mask tensor column."""
        return self._set(predictionCol=value)

    def getPredictionCol(self) -> str:
        """The value of :py:attr:`predictionCol` (set or default): predicted label-mask tensor column."""
        return self.getOrDefault(self.predictionCol)

    def setLabelCol(self, value: str) -> Self:
        """Set :py:attr:`labelCol`: reference label-mask tensor column."""
        return self._set(labelCol=value)

    def getLabelCol(self) -> str:
        """The value of :py:attr:`labelCol` (set or default): reference label-mask tensor column."""
        return self.getOrDefault(self.labelCol)

    def setNumClasses(self, value: int) -> Self:
        """Set :py:attr:`numClasses`: number of classes including background (0)."""
        return self._set(numClasses=value)

    def getNumClasses(self) -> int:
        """The value of :py:attr:`numClasses` (set or default): number of classes including background (0)."""
        return self.getOrDefault(self.numClasses)

    def setClasses(self, value: list[int]) -> Self:
        """Set :py:attr:`classes`: foreground classes to average ([] = all of 1..numClasses-1)."""
        return self._set(classes=value)

    def getClasses(self) -> list[int]:
        """The value of :py:attr:`classes` (set or default): foreground classes to average ([] = all of 1..numClasses-1).
        """
        return self.getOrDefault(self.classes)


class DiceEvaluator(Evaluator, _SegmentationEvalParams, DefaultParamsReadable, DefaultParamsWritable):
    """Mean Dice over volumes, per foreground class, then over ``classes`` (larger is better).

    A class absent from both prediction and reference of a volume does not
    count for that volume (NaN, as MONAI's ``ignore_empty``).  A volume that
    cannot be scored (prediction or reference missing, another grid) counts
    as Dice 0 for every class by default (``unscored``; ``volume_scores``
    lists them with their error).
    """

    @keyword_only
    def __init__(self, *, predictionCol="segmentation", labelCol="mask", numClasses=2, classes=None,
                 unscored="worst"):
        super().__init__()
        self._setDefault(predictionCol="segmentation", labelCol="mask", numClasses=2, classes=[], unscored="worst")
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def _surface_args(self) -> dict:
        return {"surface": False}

    def per_class(self, df) -> dict[int, float]:
        """Mean Dice of each foreground class ``1..numClasses-1`` (NaN if never present)."""
        _ks, good = self._scored(df)
        dice = np.array(good["dice"].tolist(), dtype=np.float64)
        return {k + 1: _nanmean(dice[:, k]) for k in range(dice.shape[1])}

    def _evaluate(self, df) -> float:
        ks = self._check()
        per = self.per_class(df)
        return _nanmean([per[k] for k in ks])

    def isLargerBetter(self) -> bool:
        return True


class SurfaceDistanceEvaluator(Evaluator, _SegmentationEvalParams, DefaultParamsReadable, DefaultParamsWritable):
    """Hausdorff distance at a percentile (``metricName="hd95"``) or mean surface distance (``"msd"``), in mm.

    Uses each volume's affine (world-space distances between boundary voxels,
    :func:`~bigdl_medimg.metrics.functional.surface_distances`).  Averaged
    over volumes per class, then over ``classes``; a class present in only one
    of prediction and reference makes that volume's distance infinite, and the
    mean with it (smaller is better); so does, by default, a volume that
    cannot be scored (``unscored``).
    """

    metricName = param("metricName", "hd95 | msd", TypeConverters.toString)
    percentile = param("percentile", "percentile of the Hausdorff distance (95 for HD95)", TypeConverters.toFloat)

    @keyword_only
    def __init__(self, *, predictionCol="segmentation", labelCol="mask", numClasses=2, classes=None,
                 metricName="hd95", percentile=95.0, unscored="worst"):
        super().__init__()
        self._setDefault(predictionCol="segmentation", labelCol="mask", numClasses=2, classes=[],
                         metricName="hd95", percentile=95.0, unscored="worst")
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def _surface_args(self) -> dict:
        return {"surface": True, "percentile": self.getOrDefault("percentile")}

    def per_class(self, df) -> dict[str, dict[int, float]]:
        """``{"hd": {class: mm}, "msd": {class: mm}}`` averaged over volumes."""
        _ks, good = self._scored(df)
        out = {}
        for name in ("hd", "msd"):
            a = np.array(good[name].tolist(), dtype=np.float64)
            out[name] = {k + 1: _nanmean(a[:, k]) for k in range(a.shape[1])}
        return out

    def _evaluate(self, df) -> float:
        metric = self.getOrDefault("metricName")
        if metric not in ("hd95", "msd"):
            raise ConfigError(f"metricName must be 'hd95' or 'msd', got {metric!r}")
        ks = self._check()
        per = self.per_class(df)["hd" if metric == "hd95" else "msd"]
        return _nanmean([per[k] for k in ks])

    def isLargerBetter(self) -> bool:
        return False

    def setMetricName(self, value: str) -> Self:
        """Set :py:attr:`metricName`: hd95 | msd."""
        return self._set(metricName=value)

    def getMetricName(self) -> str:
        """The value of :py:attr:`metricName` (set or default): hd95 | msd."""
        return self.getOrDefault(self.metricName)

    def setPercentile(self, value: float) -> Self:
        """Set :py:attr:`percentile`: percentile of the Hausdorff distance (95 for HD95)."""
        return self._set(percentile=value)

    def getPercentile(self) -> float:
        """The value of :py:attr:`percentile` (set or default): percentile of the Hausdorff distance (95 for HD95)."""
        return self.getOrDefault(self.percentile)


def classification_arrays(df, probabilityCol: str, labelCol: str, keyCols: Sequence[str] = ()):
    """Collect ``(scores (n, L), labels (n, L), keys)`` of the scored rows.

    Labels may be 0/1 arrays (multi-label) or class indices (multi-class,
    one-vs-rest columns; a two-class problem keeps the positive class only).
    Rows without a probability (unreadable images) are left out and counted
    in the returned ``keys["n_unscored"]``.
    """
    from pyspark.sql import functions as F

    for c in [probabilityCol, labelCol, *keyCols]:
        if c not in df.columns:
            raise ConfigError(f"column {c!r} not found (columns: {', '.join(df.columns)})")
    sel = df.select(probabilityCol, labelCol, *keyCols,
                    F.col(probabilityCol).isNull().alias("__unscored"))
    rows = sel.collect()
    scored = [r for r in rows if not r["__unscored"] and r[labelCol] is not None]
    if not scored:
        raise ConfigError(f"no scored rows: every row's {probabilityCol!r} or {labelCol!r} is null")
    p, y = label_matrix([r[0] for r in scored], [r[1] for r in scored], labelCol)
    keys = {c: [r[c] for r in scored] for c in keyCols}
    keys["n_unscored"] = len(rows) - len(scored)
    return p, y, keys


class MultiLabelAUCEvaluator(Evaluator, DefaultParamsReadable, DefaultParamsWritable):
    """AUROC per label and macro mean, bootstrap intervals, sensitivity/specificity at thresholds.

    ``evaluate`` returns ``metricName`` (``meanAUROC`` | ``AUROC`` |
    ``sensitivity`` | ``specificity``) for the label named ``metricLabel``, or
    the macro mean over labels when it is empty; labels with no positive or
    no negative case are left out of the mean.  :meth:`summary` adds
    percentile bootstrap confidence intervals (cases resampled with
    replacement, the same resamples for every label) and confusion counts.
    """

    probabilityCol = param("probabilityCol", "array of probabilities", TypeConverters.toString)
    labelCol = param("labelCol", "0/1 array or class index", TypeConverters.toString)
    labelNames = param("labelNames", "names of the labels (for metricLabel and summaries)",
                       TypeConverters.toListString)
    metricName = param("metricName", "meanAUROC | AUROC | sensitivity | specificity", TypeConverters.toString)
    metricLabel = param("metricLabel", "label the metric is for ('' = macro mean over labels)",
                        TypeConverters.toString)
    thresholds = param("thresholds", "decision threshold per label (one value = all labels)",
                       TypeConverters.toListFloat)
    numBootstrap = param("numBootstrap", "bootstrap resamples for confidence intervals", TypeConverters.toInt)
    confidenceLevel = param("confidenceLevel", "level of the confidence intervals", TypeConverters.toFloat)
    seed = param("seed", "seed of the bootstrap", TypeConverters.toInt)

    _METRICS = ("meanAUROC", "AUROC", "sensitivity", "specificity")

    @keyword_only
    def __init__(self, *, probabilityCol="probability", labelCol="label", labelNames=None, metricName="meanAUROC",
                 metricLabel="", thresholds=None, numBootstrap=1000, confidenceLevel=0.95, seed=0):
        super().__init__()
        self._setDefault(probabilityCol="probability", labelCol="label", labelNames=[], metricName="meanAUROC",
                         metricLabel="", thresholds=[0.5], numBootstrap=1000, confidenceLevel=0.95, seed=0)
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def _arrays(self, df):
        return classification_arrays(df, self.getOrDefault("probabilityCol"), self.getOrDefault("labelCol"))[:2]

    def _names(self, n: int) -> list[str]:
        names = list(self.getOrDefault("labelNames")) or [f"label_{k}" for k in range(n)]
        if len(names) != n:
            raise ConfigError(f"labelNames has {len(names)} names but the scores have {n} labels")
        return names

    def _thresholds(self, n: int) -> np.ndarray:
        t = list(self.getOrDefault("thresholds"))
        if len(t) == 1:
            t = t * n
        if len(t) != n:
            raise ConfigError(f"thresholds has {len(t)} values for {n} labels")
        return np.asarray(t, dtype=np.float64)

    def per_label(self, df) -> list[float]:
        """AUROC of each label (NaN where a label lacks positives or negatives)."""
        from .classification import auroc_per_label

        return auroc_per_label(*self._arrays(df))

    def summary(self, df=None, *, arrays=None) -> dict:
        """Everything :meth:`evaluate` can return, with intervals: a JSON-able dict.

        ``labels``: one entry per label with ``auroc``, ``auroc_ci``,
        ``threshold``, ``sensitivity``, ``specificity``, ``tp/fp/tn/fn``,
        ``n_pos``, ``n_neg``; ``mean_auroc`` and ``mean_auroc_ci`` over labels
        with both classes; ``n`` cases.  ``arrays=(scores, labels)`` skips the
        Spark collect.
        """
        from .classification import auroc_per_label, binary_confusion, bootstrap_auroc, sensitivity_specificity

        p, y = self._arrays(df) if arrays is None else (np.asarray(arrays[0], float), np.asarray(arrays[1], float))
        names, th = self._names(p.shape[1]), self._thresholds(p.shape[1])
        auc = np.array(auroc_per_label(p, y))
        level = self.getOrDefault("confidenceLevel")
        if not 0 < level < 1:
            raise ConfigError(f"confidenceLevel must be in (0, 1), got {level}")
        lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
        n_boot = self.getOrDefault("numBootstrap")
        boot = bootstrap_auroc(p, y, n_boot, self.getOrDefault("seed")) if n_boot > 0 else None
        valid = np.isfinite(auc)

        def ci(v):
            v = v[np.isfinite(v)]
            return [float(np.percentile(v, lo_q)), float(np.percentile(v, hi_q))] if v.size else [None, None]

        labels = []
        for k, name in enumerate(names):
            sens, spec = sensitivity_specificity(p[:, k], y[:, k], th[k])
            labels.append({"label": name, "auroc": float(auc[k]),
                           "auroc_ci": ci(boot[:, k]) if boot is not None else [None, None],
                           "threshold": float(th[k]), "sensitivity": sens, "specificity": spec,
                           **binary_confusion(p[:, k], y[:, k], th[k]),
                           "n_pos": int(y[:, k].sum()), "n_neg": int((1 - y[:, k]).sum())})
        mean = float(auc[valid].mean()) if valid.any() else float("nan")
        mean_ci = [None, None]
        if boot is not None and valid.any():
            with warnings.catch_warnings():  # resamples without a positive case of every label are NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean_ci = ci(np.nanmean(boot[:, valid], axis=1))
        return {"n": int(p.shape[0]), "labels": labels, "mean_auroc": mean, "mean_auroc_ci": mean_ci,
                "confidence_level": level, "num_bootstrap": n_boot}

    def _evaluate(self, df) -> float:
        from .classification import auroc, sensitivity_specificity

        metric, which = self.getOrDefault("metricName"), self.getOrDefault("metricLabel")
        if metric not in self._METRICS:
            raise ConfigError(f"metricName must be one of {', '.join(self._METRICS)}, got {metric!r}")
        p, y = self._arrays(df)
        names, th = self._names(p.shape[1]), self._thresholds(p.shape[1])
        if which:
            if which not in names:
                raise ConfigError(f"metricLabel {which!r} is not one of the labels {names}")
            ks = [names.index(which)]
        else:
            ks = range(p.shape[1])
        if metric in ("meanAUROC", "AUROC"):
            vals = [auroc(p[:, k], y[:, k]) for k in ks]
        else:
            vals = [sensitivity_specificity(p[:, k], y[:, k], th[k])[metric == "specificity"] for k in ks]
        return _nanmean(vals)

    def isLargerBetter(self) -> bool:
        return True

    def setProbabilityCol(self, value: str) -> Self:
        """Set :py:attr:`probabilityCol`: array of probabilities."""
        return self._set(probabilityCol=value)

    def getProbabilityCol(self) -> str:
        """The value of :py:attr:`probabilityCol` (set or default): array of probabilities."""
        return self.getOrDefault(self.probabilityCol)

    def setLabelCol(self, value: str) -> Self:
        """Set :py:attr:`labelCol`: 0/1 array or class index."""
        return self._set(labelCol=value)

    def getLabelCol(self) -> str:
        """The value of :py:attr:`labelCol` (set or default): 0/1 array or class index."""
        return self.getOrDefault(self.labelCol)

    def setLabelNames(self, value: list[str]) -> Self:
        """Set :py:attr:`labelNames`: names of the labels (for metricLabel and summaries)."""
        return self._set(labelNames=value)

    def getLabelNames(self) -> list[str]:
        """The value of :py:attr:`labelNames` (set or default): names of the labels (for metricLabel and summaries).
        """
        return self.getOrDefault(self.labelNames)

    def setMetricName(self, value: str) -> Self:
        """Set :py:attr:`metricName`: meanAUROC | AUROC | sensitivity | specificity."""
        return self._set(metricName=value)

    def getMetricName(self) -> str:
        """The value of :py:attr:`metricName` (set or default): meanAUROC | AUROC | sensitivity | specificity."""
        return self.getOrDefault(self.metricName)

    def setMetricLabel(self, value: str) -> Self:
        """Set :py:attr:`metricLabel`: label the metric is for ('' = macro mean over labels)."""
        return self._set(metricLabel=value)

    def getMetricLabel(self) -> str:
        """The value of :py:attr:`metricLabel` (set or default): label the metric is for ('' = macro mean over labels).
        """
        return self.getOrDefault(self.metricLabel)

    def setThresholds(self, value: list[float]) -> Self:
        """Set :py:attr:`thresholds`: decision threshold per label (one value = all labels)."""
        return self._set(thresholds=value)

    def getThresholds(self) -> list[float]:
        """The value of :py:attr:`thresholds` (set or default): decision threshold per label (one value = all labels).
        """
        return self.getOrDefault(self.thresholds)

    def setNumBootstrap(self, value: int) -> Self:
        """Set :py:attr:`numBootstrap`: bootstrap resamples for confidence intervals."""
        return self._set(numBootstrap=value)

    def getNumBootstrap(self) -> int:
        """The value of :py:attr:`numBootstrap` (set or default): bootstrap resamples for confidence intervals."""
        return self.getOrDefault(self.numBootstrap)

    def setConfidenceLevel(self, value: float) -> Self:
        """Set :py:attr:`confidenceLevel`: level of the confidence intervals."""
        return self._set(confidenceLevel=value)

    def getConfidenceLevel(self) -> float:
        """The value of :py:attr:`confidenceLevel` (set or default): level of the confidence intervals."""
        return self.getOrDefault(self.confidenceLevel)

    def setSeed(self, value: int) -> Self:
        """Set :py:attr:`seed`: seed of the bootstrap."""
        return self._set(seed=value)

    def getSeed(self) -> int:
        """The value of :py:attr:`seed` (set or default): seed of the bootstrap."""
        return self.getOrDefault(self.seed)
