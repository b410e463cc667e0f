"""bigdl-medimg: Spark-native deep learning for medical imaging on BigDL.

Importing this package never starts a JVM: public names are loaded lazily on
first use.
"""
from __future__ import annotations

from .lazy import lazy_getattr
from .version import __version__

__all__ = [
    "__version__",
    "get_spark",
    "read_dicom",
    "read_dicom_series",
    "read_dicomweb",
    "read_nifti",
    "read_images",
    "read_mhd",
    "write_tensors",
    "read_tensors",
    "to_numpy",
    "from_numpy",
]

_LAZY = {
    "get_spark": "bigdl_medimg.session",
    "read_dicom": "bigdl_medimg.io.readers",
    "read_dicom_series": "bigdl_medimg.io.readers",
    "read_dicomweb": "bigdl_medimg.io.dicomweb",
    "read_nifti": "bigdl_medimg.io.readers",
    "read_images": "bigdl_medimg.io.readers",
    "read_mhd": "bigdl_medimg.io.readers",
    "write_tensors": "bigdl_medimg.io.readers",
    "read_tensors": "bigdl_medimg.io.readers",
    "to_numpy": "bigdl_medimg.tensor",
    "from_numpy": "bigdl_medimg.tensor",
}

__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


def __dir__():
    return sorted(set(globals()) | set(__all__))
