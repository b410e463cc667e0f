"""Segmentation model stage: sliding-window inference on executors, with a BigDL or a torch network.

:class:`SegmentationModel` turns an image tensor column into a label-mask
tensor column on the same grid and affine.  With ``engine="bigdl"`` volumes
of any size are cut into overlapping tiles on executors (``mapInArrow``),
BigDL's ``NNModel`` scores the tiles inside the executors' JVMs, and each
volume is blended back (softmax per tile, Gaussian or constant weights) and
arg-maxed on an executor.  With ``engine="torch"`` each volume is tiled,
scored and blended inside one Python task (no per-tile rows), by a network
each Python worker builds once.  No volume passes through the driver.  The
network is held by the stage and written next to its Params by ``save``.
"""
from __future__ import annotations

from typing import Self

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Model
from pyspark.ml.param import TypeConverters

from ..errors import ConfigError
from ..params import param
from ._persist import NetworkModelPersistence

__all__ = ["SegmentationModel"]

class SegmentationModel(NetworkModelPersistence, Model):
    """A trained segmentation network applied by sliding window.

    Parameters (Params)
    -------------------
    inputCol : image tensor column, ``(D, H, W)`` or ``(channels, D, H, W)``
    outputCol : label mask column (``uint8``, same grid and affine)
    probabilityCol : optional per-class probability column ``(classes, D, H, W)`` ('' for none)
    patchShape, nClasses, inChannels : the network's input patch, classes and channels
    overlap : fraction of overlap between neighbouring tiles (0 <= overlap < 1)
    blendMode : ``"gaussian"`` or ``"constant"``
    batchSize : tiles per BigDL inference batch
    """

    inputCol = param("inputCol", "image tensor column", TypeConverters.toString)
    outputCol = param("outputCol", "label-mask tensor column to write", TypeConverters.toString)
    probabilityCol = param("probabilityCol", "per-class probability column ('' for none)", TypeConverters.toString)
    patchShape = param("patchShape", "network input patch (D, H, W)", TypeConverters.toListInt)
    nClasses = param("nClasses", "number of classes, background included", TypeConverters.toInt)
    inChannels = param("inChannels", "input channels", TypeConverters.toInt)
    overlap = param("overlap", "overlap between neighbouring tiles, in [0, 1)", TypeConverters.toFloat)
    blendMode = param("blendMode", "'gaussian' or 'constant' tile weights", TypeConverters.toString)
    batchSize = param("batchSize", "tiles per inference batch", TypeConverters.toInt)
    engine = param("engine", "engine of the network: 'bigdl' or 'torch'", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, network=None, network_spec=None, inputCol="image", outputCol="segmentation",
                 probabilityCol="", patchShape=None, nClasses=None, inChannels=1, overlap=0.5, blendMode="gaussian",
                 batchSize=8, engine="bigdl"):
        super().__init__()
        self._setDefault(inputCol="image", outputCol="segmentation", probabilityCol="", inChannels=1, overlap=0.5,
                         blendMode="gaussian", batchSize=8, engine="bigdl")
        kwargs = dict(self._input_kwargs)
        self._network = kwargs.pop("network", None)
        self._network_spec = kwargs.pop("network_spec", None)
        self._set(**kwargs)

    def _validate(self) -> None:
        from ..models.network import check_engine

        if self._network is None:
            raise ConfigError("SegmentationModel has no network; build it with SegmentationEstimator or load it")
        check_engine("SegmentationModel", self.getOrDefault("engine"))
        if self.getOrDefault("engine") == "torch" and not self._network_spec:
            raise ConfigError("SegmentationModel: a torch network needs its network_spec (topology and Params)")
        for name in ("patchShape", "nClasses"):
            if not self.isDefined(name) or self.getOrDefault(name) is None:
                raise ConfigError(f"SegmentationModel: {name} is required")
        if len(self.getOrDefault("patchShape")) != 3:
            raise ConfigError("SegmentationModel: patchShape must have three sizes")
        if not 0 <= self.getOrDefault("overlap") < 1:
            raise ConfigError(f"SegmentationModel: overlap must be in [0, 1), got {self.getOrDefault('overlap')}")
        if self.getOrDefault("blendMode") not in ("gaussian", "constant"):
            raise ConfigError("SegmentationModel: blendMode must be 'gaussian' or 'constant'")

    # ----------------------------------------------------------- transform ---
    def _transform(self, df):
        import pyarrow as pa
        from bigdl.dllib.nnframes import NNModel
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from ..arrow import read_tensor
        from ..models.unet3d import flat_model
        from ..tensor import tensor_type
        from .inference import pad_to_patch, window_starts

        self._validate()
        in_col = self.getOrDefault("inputCol")
        if in_col not in df.columns:
            raise ConfigError(f"SegmentationModel: column {in_col!r} not found; the DataFrame has {sorted(df.columns)}")
        if self.getOrDefault("engine") == "torch":
            return self._transform_torch(df)
        patch = tuple(self.getOrDefault("patchShape"))
        n_classes, chans = self.getOrDefault("nClasses"), self.getOrDefault("inChannels")
        overlap, mode = self.getOrDefault("overlap"), self.getOrDefault("blendMode")
        out_col, prob_col = self.getOrDefault("outputCol"), self.getOrDefault("probabilityCol")
        voxels = int(np.prod(patch))
        tile_schema = T.StructType([
            T.StructField("__key", T.LongType()), T.StructField("__start", T.ArrayType(T.IntegerType())),
            T.StructField("__shape", T.ArrayType(T.IntegerType())), T.StructField("__padded", T.ArrayType(T.IntegerType())),
            T.StructField("__affine", T.ArrayType(T.DoubleType())), T.StructField("features", T.ArrayType(T.FloatType())),
        ])

        def tiles(batches):
            for batch in batches:
                keys = batch.column(0)
                for i in range(batch.num_rows):
                    t = read_tensor(batch.column(1), i)
                    if t is None:
                        continue
                    arr, aff, _ = t
                    vol = arr if arr.ndim == 4 else arr[np.newaxis]
                    if vol.ndim != 4 or vol.shape[0] != chans:
                        raise ConfigError(f"SegmentationModel expects {chans}-channel 3-D images, got shape {arr.shape}")
                    padded, orig = pad_to_patch(vol, patch)
                    starts = window_starts(padded.shape[1:], patch, overlap)
                    for st in starts:
                        x = padded[(slice(None),) + tuple(slice(s, s + p) for s, p in zip(st, patch))]
                        flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
                        yield pa.RecordBatch.from_arrays([
                            pa.array([keys[i].as_py()], pa.int64()), pa.array([list(st)], pa.list_(pa.int32())),
                            pa.array([list(orig)], pa.list_(pa.int32())),
                            pa.array([list(padded.shape[1:])], pa.list_(pa.int32())),
                            pa.array([aff.ravel().tolist()], pa.list_(pa.float64())),
                            pa.ListArray.from_arrays(pa.array([0, flat.size], pa.int32()), pa.array(flat)),
                        ], names=[f.name for f in tile_schema.fields])

        keyed = df.withColumn("__key", F.xxhash64(F.col(f"{in_col}.data")))
        tile_df = keyed.select("__key", in_col).mapInArrow(tiles, tile_schema)
        nn = NNModel(flat_model(self._network, voxels, n_classes), [chans, *patch]) \
            .setFeaturesCol("features").setPredictionCol("__pred").setBatchSize(self.getOrDefault("batchSize"))
        scored = nn.transform(tile_df).drop("features") \
            .repartition("__key").sortWithinPartitions("__key")
        out_schema = T.StructType([T.StructField("__key", T.LongType()), T.StructField(out_col, tensor_type()),
                                   T.StructField("__prob", tensor_type())])
        want_prob = bool(prob_col)

        def blend(batches):
            # Streams each partition's tiles (sorted by volume) into one accumulator per volume:
            # a task holds the (classes, D, H, W) sums, the weights and one small batch of tiles.
            from ..arrow import arrow_schema, fold_by_key, tensor_array
            from .inference import TileBlender, blend_weights

            schema = arrow_schema(out_schema)
            ttype = schema.field(out_col).type
            weights = blend_weights(patch, mode)

            def start(cols, i):
                return {"shape": tuple(cols["__shape"][i].as_py()),
                        "aff": np.asarray(cols["__affine"][i].as_py(), np.float64).reshape(4, 4),
                        "blender": TileBlender(n_classes, tuple(cols["__padded"][i].as_py()), weights)}

            def add(state, cols, i):
                logits = cols["__pred"][i].values.to_numpy(zero_copy_only=False).astype(np.float32)
                logits = logits.reshape(voxels, n_classes).T.reshape((n_classes,) + patch)
                logits -= logits.max(axis=0, keepdims=True)
                np.exp(logits, out=logits)
                logits /= logits.sum(axis=0, keepdims=True)
                state["blender"].add(cols["__start"][i].as_py(), logits)

            def finish(key, state):
                prob = state["blender"].result()
                prob = prob[(slice(None),) + tuple(slice(0, s) for s in state["shape"])]
                seg = np.argmax(prob, axis=0).astype(np.uint8)
                probs = tensor_array(np.ascontiguousarray(prob), state["aff"], ttype) if want_prob \
                    else pa.nulls(1, type=ttype)
                return pa.RecordBatch.from_arrays([pa.array([key], pa.int64()),
                                                   tensor_array(seg, state["aff"], ttype), probs], schema=schema)

            return fold_by_key(batches, "__key", start, add, finish)

        stitched = scored.select("__key", "__start", "__shape", "__padded", "__affine", "__pred") \
            .mapInArrow(blend, out_schema)
        if not want_prob:
            stitched = stitched.drop("__prob")
        else:
            stitched = stitched.withColumnRenamed("__prob", prob_col)
        base = keyed.drop(*[c for c in (out_col, prob_col) if c and c in keyed.columns])
        return base.join(stitched, on="__key", how="left").drop("__key")

    def _transform_torch(self, df):
        """Each volume tiled, scored and blended in one Python task; the network cached per worker."""
        from pyspark.sql import types as T

        from ..arrow import arrow_schema, null_array, read_tensor, replace_columns, tensor_array
        from ..tensor import tensor_type
        from .engines.torch import cached_network, state_bytes, weights_digest
        from .engines.torch_tasks import predict_volume

        patch = tuple(self.getOrDefault("patchShape"))
        chans, overlap = self.getOrDefault("inChannels"), self.getOrDefault("overlap")
        mode, batch = self.getOrDefault("blendMode"), self.getOrDefault("batchSize")
        in_col, out_col, prob_col = self.getOrDefault("inputCol"), self.getOrDefault("outputCol"), \
            self.getOrDefault("probabilityCol")
        outs = [out_col] + ([prob_col] if prob_col else [])
        fields = [f for f in df.schema.fields if f.name not in outs]
        schema = T.StructType(fields + [T.StructField(c, tensor_type(), True) for c in outs])
        a_schema = arrow_schema(schema)
        t_type = a_schema.field(out_col).type
        shipped = df.sparkSession.sparkContext.broadcast(
            (self._network_spec, state_bytes(self._network), weights_digest(self._network)))

        def run(batches):
            net = cached_network(*shipped.value)
            for b in batches:
                for i in range(b.num_rows):
                    row = b.slice(i, 1)
                    t = read_tensor(row.column(row.schema.get_field_index(in_col)), 0)
                    if t is None:  # rows without an image pass through with null outputs
                        yield replace_columns(row, a_schema, {c: null_array(t_type) for c in outs})
                        continue
                    arr, aff, _ = t
                    vol = arr if arr.ndim == 4 else arr[np.newaxis]
                    if vol.ndim != 4 or vol.shape[0] != chans:
                        raise ConfigError(f"SegmentationModel expects {chans}-channel 3-D images, got shape {arr.shape}")
                    if prob_col:
                        prob, seg = predict_volume(net, vol, patch, overlap, batch, mode, output="both")
                    else:
                        prob, seg = None, predict_volume(net, vol, patch, overlap, batch, mode, output="labels")
                    new = {out_col: tensor_array(seg, aff, t_type)}
                    if prob is not None:
                        new[prob_col] = tensor_array(prob, aff, t_type)
                    yield replace_columns(row, a_schema, new)

        return df.mapInArrow(run, schema)

    def setInputCol(self, value: str) -> Self:
        """Set :py:attr:`inputCol`: image tensor column."""
        return self._set(inputCol=value)

    def getInputCol(self) -> str:
        """The value of :py:attr:`inputCol` (set or default): image tensor column."""
        return self.getOrDefault(self.inputCol)

    def setOutputCol(self, value: str) -> Self:
        """Set :py:attr:`outputCol`: label-mask tensor column to write."""
        return self._set(outputCol=value)

    def getOutputCol(self) -> str:
        """The value of :py:attr:`outputCol` (set or default): label-mask tensor column to write."""
        return self.getOrDefault(self.outputCol)

    def setProbabilityCol(self, value: str) -> Self:
        """Set :py:attr:`probabilityCol`: per-class probability column ('' for none)."""
        return self._set(probabilityCol=value)

    def getProbabilityCol(self) -> str:
        """The value of :py:attr:`probabilityCol` (set or default): per-class probability column ('' for none)."""
        return self.getOrDefault(self.probabilityCol)

    def setPatchShape(self, value: list[int]) -> Self:
        """Set :py:attr:`patchShape`: network input patch (D, H, W)."""
        return self._set(patchShape=value)

    def getPatchShape(self) -> list[int]:
        """The value of :py:attr:`patchShape` (set or default): network input patch (D, H, W)."""
        return self.getOrDefault(self.patchShape)

    def setNClasses(self, value: int) -> Self:
        """Set :py:attr:`nClasses`: number of classes, background included."""
        return self._set(nClasses=value)

    def getNClasses(self) -> int:
        """The value of :py:attr:`nClasses` (set or default): number of classes, background included."""
        return self.getOrDefault(self.nClasses)

    def setInChannels(self, value: int) -> Self:
        """Set :py:attr:`inChannels`: input channels."""
        return self._set(inChannels=value)

    def getInChannels(self) -> int:
        """The value of :py:attr:`inChannels` (set or default): input channels."""
        return self.getOrDefault(self.inChannels)

    def setOverlap(self, value: float) -> Self:
        """Set :py:attr:`overlap`: overlap between neighbouring tiles, in [0, 1)."""
        return self._set(overlap=value)

    def getOverlap(self) -> float:
        """The value of :py:attr:`overlap` (set or default): overlap between neighbouring tiles, in [0, 1)."""
        return self.getOrDefault(self.overlap)

    def setBlendMode(self, value: str) -> Self:
        """Set :py:attr:`blendMode`: 'gaussian' or 'constant' tile weights."""
        return self._set(blendMode=value)

    def getBlendMode(self) -> str:
        """The value of :py:attr:`blendMode` (set or default): 'gaussian' or 'constant' tile weights."""
        return self.getOrDefault(self.blendMode)

    def setBatchSize(self, value: int) -> Self:
        """Set :py:attr:`batchSize`: tiles per inference batch."""
        return self._set(batchSize=value)

    def getBatchSize(self) -> int:
        """The value of :py:attr:`batchSize` (set or default): tiles per inference batch."""
        return self.getOrDefault(self.batchSize)

    def setEngine(self, value: str) -> Self:
        """Set :py:attr:`engine`: engine of the network: 'bigdl' or 'torch'."""
        return self._set(engine=value)

    def getEngine(self) -> str:
        """The value of :py:attr:`engine` (set or default): engine of the network: 'bigdl' or 'torch'."""
        return self.getOrDefault(self.engine)
