"""Read DICOM series from any Hadoop path into a Parquet tensor table.

Runs unchanged with spark-submit on local, standalone or YARN masters::

    spark-submit --master local[2] examples/ingest_dicom_series.py \
        file:///data/knee-mri /tmp/knee-series.parquet

On a cluster pass BigDL's jars and the packed environment as described in
README.md; the script itself only needs ``bigdl_medimg`` importable.
"""
from __future__ import annotations

import sys

from pyspark.sql import functions as F

from bigdl_medimg import get_spark, read_dicom_series, write_tensors


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]
    spark = get_spark()  # reuses the session spark-submit created
    df = read_dicom_series(spark, src)
    write_tensors(df, dst, mode="overwrite")
    stats = spark.read.parquet(dst).agg(F.count(F.lit(1)).alias("series"), F.count("error").alias("errors")).first()
    print(f"{stats.series} series written to {dst}; {stats.errors} with errors (see the 'error' column)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
