"""One self-contained HTML report: tables plus PNG plots embedded as data URIs."""
from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from typing import Iterable, Sequence

import numpy as np

from ..version import __version__
from ..errors import ConfigError
from . import plots
from .results import ClassificationResults, SegmentationResults

__all__ = ["render_report", "write_report", "REFERENCES"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}
figcaption{font-size:.85em;color:#555}.muted{color:#777;font-size:.85em}.err{color:#a00}"""


def _references():
    from ..datasets.reference import CHEXNET_AUROC, WANG2017_AUROC

    return {"CheXNet (Rajpurkar 2017)": CHEXNET_AUROC, "ChestX-ray14 baseline (Wang 2017)": WANG2017_AUROC}


#: Published per-label AUROCs the report compares ChestX-ray14 labels with.
REFERENCES = _references()


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    v = float(v)
    if np.isnan(v):
        return "–"
    if np.isinf(v):
        return "∞"
    return f"{v:.{digits}f}"


def _img(png: tuple[bytes, int, int], caption: str) -> str:
    data, w, h = png
    b64 = base64.b64encode(data).decode("ascii")
    cap = html.escape(caption)
    return (f'<figure><img src="data:image/png;base64,{b64}" width="{w}" height="{h}" alt="{cap}">'
            f"<figcaption>{cap}</figcaption></figure>")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _ci(ci) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci and ci[0] is not None else ""


def _classification(res: ClassificationResults) -> str:
    s = res.summary
    refs = {name: vals for name, vals in REFERENCES.items() if any(lab["label"] in vals for lab in s["labels"])}
    level = int(round(100 * s["confidence_level"]))
    out = [f"<h2>{html.escape(res.title)}</h2>",
           f"<p>{s['n']} scored cases ({res.n_unscored} without a score), {len(res.label_names)} labels, "
           f"{res.mode}. Mean AUROC <b>{_fmt(s['mean_auroc'])}</b> {_ci(s['mean_auroc_ci'])} "
           f"({level}% bootstrap interval, {s['num_bootstrap']} resamples)."]
    if refs:
        means = []
        for name, vals in refs.items():
            common = [vals[lab["label"]] for lab in s["labels"] if lab["label"] in vals]
            means.append(f"{html.escape(name)}: {np.mean(common):.3f}")
        out.append(" Published means over the same labels: " + "; ".join(means) + ".")
    out.append("</p>")
    header = ["label", "AUROC", f"{level}% CI", *refs, "threshold", "sensitivity", "specificity", "positives",
              "negatives"]
    rows = [[lab["label"], _fmt(lab["auroc"]), _ci(lab["auroc_ci"]),
             *[_fmt(vals.get(lab["label"])) for vals in refs.values()], _fmt(lab["threshold"], 2),
             _fmt(lab["sensitivity"]), _fmt(lab["specificity"]), lab["n_pos"], lab["n_neg"]]
            for lab in s["labels"]]
    rows.append(["mean", _fmt(s["mean_auroc"]), _ci(s["mean_auroc_ci"]),
                 *[_fmt(np.mean([v for k, v in vals.items() if k in res.label_names])) for vals in refs.values()],
                 "", "", "", "", ""])
    out.append(_table(header, rows))
    out.append(_img(plots.auroc_bars(res, refs), "AUROC per label with bootstrap interval"
                    + (" and published values" if refs else "")))
    out.append(_img(plots.roc_curves(res), "ROC curve per label"))
    out.append(_img(plots.label_confusion(res), "Confusion matrices (rows: reference)"))
    return "\n".join(out)


def _segmentation(res: SegmentationResults) -> str:
    per = res.per_class()
    ok = [v for v in res.volumes if v["error"] is None]
    bad = [v for v in res.volumes if v["error"] is not None]
    p = int(res.percentile) if float(res.percentile).is_integer() else res.percentile
    out = [f"<h2>{html.escape(res.title)}</h2>",
           f"<p>{len(ok)} volumes scored, {len(bad)} could not be scored.</p>"]
    header = ["class", "Dice", f"HD{p} (mm)", "MSD (mm)"]
    rows = [[name, _fmt(per.get("dice", [None] * len(res.class_names))[k]),
             _fmt(per["hd"][k], 2) if "hd" in per else "–", _fmt(per["msd"][k], 2) if "msd" in per else "–"]
            for k, name in enumerate(res.class_names)]
    if "dice" in per:
        finite = [v for v in per["dice"] if np.isfinite(v)]
        rows.append(["mean", _fmt(np.mean(finite) if finite else None),
                     _fmt(np.mean(per["hd"]), 2) if "hd" in per else "–",
                     _fmt(np.mean(per["msd"]), 2) if "msd" in per else "–"])
    out.append(_table(header, rows))
    if ok:
        out.append(_img(plots.dice_boxplot(res), "Dice per class over volumes"))
    out.append(_img(plots.class_confusion(res.confusion, ["background", *res.class_names]),
                    "Voxel confusion matrix over all volumes"))
    if res.overlays:
        out.append(_img(plots.overlays(res), "Best, median and worst volume by mean Dice: reference and "
                                             "prediction on the slice with most reference foreground"))
    vol_rows = [[v["key"], *[_fmt(d) for d in v["dice"]]] for v in ok[:500]]
    out.append("<details><summary>Dice per volume</summary>"
               + _table(["volume", *res.class_names], vol_rows) + "</details>")
    if bad:
        out.append('<p class="err">Not scored:</p>'
                   + _table(["volume", "error"], [[v["key"], v["error"]] for v in bad[:200]]))
    return "\n".join(out)


def _training(summaries: dict) -> str:
    out = ["<h2>Training</h2>"]
    for app, parts in summaries.items():
        tags = sorted(set(parts.get("train", {})) | set(parts.get("validation", {})))
        out.append(_img(plots.training_curves(app, parts), f"{app}: " + ", ".join(tags)
                        + " (from the BigDL summaries)"))
    return "\n".join(out)


def render_report(*, title: str = "bigdl-medimg report", results: Sequence = (),
                  summary_dirs: Sequence[str] = ()) -> str:
    """The report as an HTML string.

    ``results``: :class:`ClassificationResults` / :class:`SegmentationResults`;
    ``summary_dirs``: BigDL ``summaryDir`` folders (training and validation
    curves are read from their event files).
    """
    from ..ml.tfevents import read_summaries

    summaries: dict = {}
    for d in summary_dirs:
        found = read_summaries(d)
        if not found:
            raise ConfigError(f"no BigDL summaries (train/ or validation/ event files) under {d}")
        run = os.path.basename(os.path.dirname(os.path.abspath(d)))  # <run>/summaries: name curves by run
        summaries.update({(f"{run}/{app}" if len(summary_dirs) > 1 else app): parts for app, parts in found.items()})
    if not results and not summaries:
        raise ConfigError("nothing to report: give results and/or summary folders")
    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="muted">bigdl-medimg {__version__}, generated {now}</p>']
    if summaries:
        body.append(_training(summaries))
    for res in results:
        if isinstance(res, ClassificationResults):
            body.append(_classification(res))
        elif isinstance(res, SegmentationResults):
            body.append(_segmentation(res))
        else:
            raise ConfigError(f"cannot report a {type(res).__name__}")
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(path: str, **kwargs) -> str:
    """Write :func:`render_report` to ``path`` (one file, images inside); returns the path."""
    text = render_report(**kwargs)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
