"""Save/load of Spark ML models that hold a network: Params as JSON, the network next to them.

A BigDL network is written by BigDL's ``saveModel`` at ``<path>/bigdl_model``;
a torch network as ``<path>/torch_model/model.pt`` (its ``state_dict``) and
``network.json`` (topology and builder Params, so it can be rebuilt), both
through Hadoop's FileSystem, so a PipelineModel on HDFS holds either.
"""
from __future__ import annotations

import json

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter

MODEL_DIR = "bigdl_model"
TORCH_DIR = "torch_model"


class NetworkModelPersistence(MLWritable, MLReadable):
    """Mixin: ``self._network`` (a BigDL Keras model or, with ``engine="torch"``, a ``torch.nn.Module`` built
    from ``self._network_spec``) is saved with the Params."""

    _network = None
    _network_spec = None
    #: what the fit recorded and users read (per-epoch records; counts, class weights, best epoch, ...):
    #: saved in the stage's metadata, so they survive ``PipelineModel.save``/``load``
    history: list = ()
    training_stats: dict = {}

    @property
    def network(self):
        """The network (BigDL model or torch module)."""
        return self._network

    def copy(self, extra=None):
        that = super().copy(extra)
        that._network = self._network
        that._network_spec = self._network_spec
        that.history, that.training_stats = list(self.history), dict(self.training_stats)
        return that

    def write(self) -> MLWriter:
        return _NetworkModelWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        return _NetworkModelReader(cls)


class _NetworkModelWriter(MLWriter):
    def __init__(self, instance):
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        from ..io import hfs

        self.instance._validate()
        record = {"history": list(self.instance.history), "training_stats": dict(self.instance.training_stats)}
        # numpy scalars and arrays in the records become plain JSON numbers and lists
        record = json.loads(json.dumps(record, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sc, extraMetadata=record)
        root = path.rstrip("/")
        if self.instance.getOrDefault("engine") == "torch":
            from .engines.torch import state_bytes

            spark = self.sparkSession
            hfs.write_bytes(spark, hfs.join(root, TORCH_DIR, "model.pt"), state_bytes(self.instance.network))
            hfs.write_bytes(spark, hfs.join(root, TORCH_DIR, "network.json"),
                            json.dumps(self.instance._network_spec).encode())
        else:
            self.instance.network.saveModel(f"{root}/{MODEL_DIR}", over_write=True)


class _NetworkModelReader(MLReader):
    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def load(self, path: str):
        meta = DefaultParamsReader.loadMetadata(path, self.sc)
        model = self.cls()
        DefaultParamsReader.getAndSetParams(model, meta)
        model._resetUid(meta["uid"])
        model.history, model.training_stats = list(meta.get("history", [])), dict(meta.get("training_stats", {}))
        root = path.rstrip("/")
        if model.getOrDefault("engine") == "torch":
            from ..io import hfs
            from .engines.torch import build_torch_network, load_state_bytes

            spark = self.sparkSession
            spec = json.loads(hfs.read_text(spark, hfs.join(root, TORCH_DIR, "network.json")))
            net = build_torch_network(spec)
            model._network = load_state_bytes(net, hfs.read_bytes(spark, hfs.join(root, TORCH_DIR, "model.pt"))).eval()
            model._network_spec = spec
        else:
            from bigdl.dllib.keras.models import load_model

            model._network = load_model(f"{root}/{MODEL_DIR}")
        return model
