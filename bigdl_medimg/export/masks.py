"""Predicted masks as NIfTI files (executors write them), on the source image's grid."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["to_reference_grid", "write_nifti_masks"]


def to_reference_grid(mask: np.ndarray, affine: np.ndarray, shape, ref_affine: np.ndarray) -> np.ndarray:
    """Resample a label mask onto another grid of the same world space (nearest neighbour).

    ``affine`` and ``ref_affine`` map the spatial indices of ``mask`` and of
    the target grid (``shape``) to RAS+ mm.  Voxels of the target outside the
    mask's field of view become 0.  When the grids coincide the mask is
    returned as is; a reorientation (axes permuted or flipped) maps voxels
    exactly.
    """
    from scipy import ndimage as ndi

    mask = np.asarray(mask)
    shape = tuple(int(s) for s in shape)
    aff, ref = np.asarray(affine, float).reshape(4, 4), np.asarray(ref_affine, float).reshape(4, 4)
    if mask.ndim != len(shape):
        raise ValueError(f"mask has {mask.ndim} axes but the reference grid has {len(shape)}")
    if mask.shape == shape and np.allclose(aff, ref, atol=1e-4):
        return mask
    m = np.linalg.solve(aff, ref)  # reference index -> mask index
    nd = mask.ndim
    lin, off = m[:nd, :nd], m[:nd, 3]
    if not np.all(np.isfinite(m)):
        raise ValueError("the grids cannot be related (singular affine)")
    return ndi.affine_transform(mask, lin, offset=off, output_shape=shape, order=0, mode="constant", cval=0,
                                prefilter=False).astype(mask.dtype, copy=False)


def _nifti_bytes(array: np.ndarray, affine: np.ndarray, gz: bool) -> bytes:
    import gzip

    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    data = img.to_bytes()
    return gzip.compress(data, compresslevel=6, mtime=0) if gz else data


def write_nifti_masks(df, outDir: str, *, maskCol: str = "segmentation", nameCol: str = "series_key",
                      referenceCol: str | None = None, compress: bool = True, mode: str = "permissive"):
    """Write each row's mask as ``<outDir>/<name>.nii.gz`` (on the executors).

    Parameters
    ----------
    df : DataFrame
        Rows with a label-mask tensor column ``maskCol`` and a ``nameCol``
        giving each file its name (made file-name safe).
    outDir : str
        Local path or URI (``file:``, ``hdfs://``, ``s3a://``; see
        :mod:`bigdl_medimg.io.files`).
    referenceCol : str, optional
        A tensor column holding the source image: the mask is put back on
        its grid (nearest neighbour, undoing reorientation or resampling) and
        written with the source's affine.  Without it the mask's own affine
        is written.
    mode : {"permissive", "failfast"}
        Permissive: a row that cannot be written gets an ``error`` and the
        others are written; failfast raises on the first.

    Returns
    -------
    pandas.DataFrame
        One row per input row: ``name``, ``path`` written (None on error), ``error``.
    """
    import pandas as pd
    from pyspark.sql import types as T

    from ..errors import ExportError, one_line
    from ..tensor import get_affine, spatial_shape, to_numpy
    from ..io import files

    if mode not in ("permissive", "failfast"):
        raise ConfigError(f"mode must be 'permissive' or 'failfast', got {mode!r}")
    cols = [nameCol, maskCol] + ([referenceCol] if referenceCol else [])
    for c in cols:
        if c not in df.columns:
            raise ConfigError(f"column {c!r} not found (columns: {', '.join(df.columns)})")
    suffix = ".nii.gz" if compress else ".nii"
    failfast = mode == "failfast"

    def run(batches):
        for pdf in batches:
            out = []
            for rec in pdf.to_dict("records"):
                name, path, error = rec[nameCol], None, None
                try:
                    if rec[maskCol] is None:
                        raise ValueError("mask is null")
                    mask, aff = to_numpy(rec[maskCol]), get_affine(rec[maskCol])
                    if referenceCol:
                        ref = rec[referenceCol]
                        if ref is None:
                            raise ValueError("reference image is null")
                        ref_aff = get_affine(ref)
                        mask = to_reference_grid(mask, aff, spatial_shape(ref["shape"]), ref_aff)
                        aff = ref_aff
                    target = files.join(outDir, files.safe_name(name) + suffix)
                    path = files.write_bytes(target, _nifti_bytes(mask, aff, compress))
                except Exception as exc:
                    err = ExportError(str(name), f"{type(exc).__name__}: {one_line(exc)}")
                    if failfast:
                        raise err from exc
                    error = err.column_text()
                out.append({"name": None if name is None else str(name), "path": path, "error": error})
            yield pd.DataFrame(out, columns=["name", "path", "error"])

    schema = T.StructType([T.StructField(n, T.StringType()) for n in ("name", "path", "error")])
    return df.select(*cols).mapInPandas(run, schema).toPandas()
