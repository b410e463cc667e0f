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

from ..console import counter
from ..errors import ConfigError
from ..params import param
from ._persist import NetworkModelPersistence
from .segmentation_params import SegmentationParams

__all__ = ["SegmentationModel"]


class SegmentationModel(NetworkModelPersistence, Model, SegmentationParams):
    """A trained segmentation network applied by sliding window.

    Parameters (Params)
    -------------------
    inputCol : image tensor column, ``(D, H, W)`` or ``(channels, D, H, W)``
    outputCol : label mask column (``uint8``, same grid and affine)
    probabilityCol : optional per-class probability column ``(classes, D, H, W)`` ('' for none)
    patchShape, nClasses, inChannels : the network's input patch, classes and channels
    classNames : names of the classes, background first (from the estimator)
    overlap : fraction of overlap between neighbouring tiles (0 <= overlap < 1)
    blendMode : ``"gaussian"`` or ``"constant"``
    batchSize : tiles per BigDL inference batch
    """

    probabilityCol = param("probabilityCol", "per-class probability column ('' for none)", TypeConverters.toString)
    inChannels = param("inChannels", "input channels", TypeConverters.toInt)
    blendMode = param("blendMode", "'gaussian' or 'constant' tile weights", TypeConverters.toString)

    @keyword_only
    def __init__(self, *, network=None, network_spec=None, inputCol="image", outputCol="segmentation",
                 probabilityCol="", patchShape=None, nClasses=None, classNames=None, inChannels=1, overlap=0.5,
                 blendMode="gaussian", batchSize=8, engine="bigdl"):
        super().__init__()
        self._setDefault(inputCol="image", outputCol="segmentation", probabilityCol="", classNames=[], inChannels=1,
                         overlap=0.5, blendMode="gaussian", batchSize=8, engine="bigdl")
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
        from pyspark.sql import types as T

        from ..arrow import arrow_schema, read_tensor
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
        outs = [out_col] + ([prob_col] if prob_col else [])
        voxels, n_in = int(np.prod(patch)), chans * int(np.prod(patch))
        out_schema = T.StructType([f for f in df.schema.fields if f.name not in outs]
                                  + [T.StructField(c, tensor_type(), True) for c in outs])
        ints = T.ArrayType(T.IntegerType())
        tile_schema = T.StructType([
            T.StructField("__key", T.LongType()), T.StructField("__kind", T.IntegerType()),
            T.StructField("__start", ints), T.StructField("__shape", ints), T.StructField("__padded", ints),
            T.StructField("__row", T.BinaryType()), T.StructField("features", T.ArrayType(T.FloatType())),
        ])
        in_idx = df.columns.index(in_col)

        def tiles(batches):
            # One pass over the input: every row becomes a row record (kind 0: the row itself as Arrow IPC, so
            # the upstream stages run once and nothing is joined back) followed by its tiles (kind 1).  Rows are
            # keyed by partition and position, not by their bytes: equal images with other affines stay apart.
            from pyspark import TaskContext

            schema = arrow_schema(tile_schema)
            zeros = pa.array(np.zeros(n_in, np.float32))  # NNModel scores every row: the record gets a dummy tile
            key = TaskContext.get().partitionId() << 36
            for batch in batches:
                for i in range(batch.num_rows):
                    key += 1
                    row = batch.slice(i, 1)
                    sink = pa.BufferOutputStream()
                    with pa.ipc.new_stream(sink, row.schema) as w:
                        w.write_batch(row)
                    t = read_tensor(row.column(in_idx), 0)
                    vol = None
                    if t is not None:
                        vol = t[0] if t[0].ndim == 4 else t[0][np.newaxis]
                        if vol.ndim != 4 or vol.shape[0] != chans:
                            raise ConfigError(f"SegmentationModel expects {chans}-channel 3-D images, "
                                              f"got shape {t[0].shape}")
                        padded, orig = pad_to_patch(vol, patch)
                    shapes = [None, None] if vol is None else [list(orig), list(padded.shape[1:])]
                    yield pa.RecordBatch.from_arrays([
                        pa.array([key], pa.int64()), pa.array([0], pa.int32()), pa.nulls(1, pa.list_(pa.int32())),
                        pa.array([shapes[0]], pa.list_(pa.int32())), pa.array([shapes[1]], pa.list_(pa.int32())),
                        pa.array([sink.getvalue().to_pybytes()], pa.binary()),
                        pa.ListArray.from_arrays(pa.array([0, n_in], pa.int32()), zeros)], schema=schema)
                    if vol is None:
                        continue
                    for st in window_starts(padded.shape[1:], patch, overlap):
                        x = padded[(slice(None),) + tuple(slice(s, s + p) for s, p in zip(st, patch))]
                        flat = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
                        yield pa.RecordBatch.from_arrays([
                            pa.array([key], pa.int64()), pa.array([1], pa.int32()),
                            pa.array([list(st)], pa.list_(pa.int32())), pa.nulls(1, pa.list_(pa.int32())),
                            pa.nulls(1, pa.list_(pa.int32())), pa.nulls(1, pa.binary()),
                            pa.ListArray.from_arrays(pa.array([0, flat.size], pa.int32()), pa.array(flat)),
                        ], schema=schema)

        tile_df = df.mapInArrow(tiles, tile_schema)
        nn = NNModel(flat_model(self._network, voxels, n_classes), [chans, *patch]) \
            .setFeaturesCol("features").setPredictionCol("__pred").setBatchSize(self.getOrDefault("batchSize"))
        scored = nn.transform(tile_df).drop("features") \
            .repartition("__key").sortWithinPartitions("__key", "__kind")
        want_prob = bool(prob_col)
        done = counter("segmented")  # a prediction's progress display, when one runs

        def blend(batches):
            # Streams each partition's records (sorted by row, the row record first) into one accumulator per
            # row: a task holds one row, its (classes, D, H, W) sums, the weights and one small batch of tiles.
            from ..arrow import arrow_schema, fold_by_key, null_array, replace_columns, tensor_array
            from .inference import TileBlender, blend_weights

            schema = arrow_schema(out_schema)
            ttype = schema.field(out_col).type
            weights = blend_weights(patch, mode)

            def start(cols, i):
                return {}

            def add(state, cols, i):
                if cols["__kind"][i].as_py() == 0:
                    row = pa.ipc.open_stream(cols["__row"][i].as_buffer()).read_next_batch()
                    state["row"] = row
                    if cols["__shape"][i].is_valid:
                        state["shape"] = tuple(cols["__shape"][i].as_py())
                        state["aff"] = read_tensor(row.column(in_idx), 0)[1]
                        state["blender"] = TileBlender(n_classes, tuple(cols["__padded"][i].as_py()), weights)
                    return
                logits = cols["__pred"][i].values.to_numpy(zero_copy_only=False).astype(np.float32)
                logits = logits.reshape(voxels, n_classes).T.reshape((n_classes,) + patch)
                logits -= logits.max(axis=0, keepdims=True)
                np.exp(logits, out=logits)
                logits /= logits.sum(axis=0, keepdims=True)
                state["blender"].add(cols["__start"][i].as_py(), logits)

            def finish(key, state):
                if "blender" not in state:  # rows without an image pass through with null outputs
                    return replace_columns(state["row"], schema, {c: null_array(ttype) for c in outs})
                prob = state["blender"].result()
                prob = prob[(slice(None),) + tuple(slice(0, s) for s in state["shape"])]
                new = {out_col: tensor_array(np.argmax(prob, axis=0).astype(np.uint8), state["aff"], ttype)}
                if want_prob:
                    new[prob_col] = tensor_array(np.ascontiguousarray(prob), state["aff"], ttype)
                if done is not None:
                    done.add(1)
                return replace_columns(state["row"], schema, new)

            return fold_by_key(batches, "__key", start, add, finish)

        return scored.select("__key", "__kind", "__start", "__shape", "__padded", "__row", "__pred") \
            .mapInArrow(blend, out_schema)

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
        done = counter("segmented")

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
                    if done is not None:
                        done.add(1)
                    yield replace_columns(row, a_schema, new)

        return df.mapInArrow(run, schema)

    def setProbabilityCol(self, value: str) -> Self:
        """Set :py:attr:`probabilityCol`: per-class probability column ('' for none)."""
        return self._set(probabilityCol=value)

    def getProbabilityCol(self) -> str:
        """The value of :py:attr:`probabilityCol` (set or default): per-class probability column ('' for none)."""
        return self.getOrDefault(self.probabilityCol)

    def setInChannels(self, value: int) -> Self:
        """Set :py:attr:`inChannels`: input channels."""
        return self._set(inChannels=value)

    def getInChannels(self) -> int:
        """The value of :py:attr:`inChannels` (set or default): input channels."""
        return self.getOrDefault(self.inChannels)

    def setBlendMode(self, value: str) -> Self:
        """Set :py:attr:`blendMode`: 'gaussian' or 'constant' tile weights."""
        return self._set(blendMode=value)

    def getBlendMode(self) -> str:
        """The value of :py:attr:`blendMode` (set or default): 'gaussian' or 'constant' tile weights."""
        return self.getOrDefault(self.blendMode)
