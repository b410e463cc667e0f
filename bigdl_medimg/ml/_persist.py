"""Save/load of Spark ML models that hold a BigDL network: Params as JSON, the network next to them."""
from __future__ import annotations

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter

MODEL_DIR = "bigdl_model"


class NetworkModelPersistence(MLWritable, MLReadable):
    """Mixin: ``self._network`` (a BigDL Keras model) is saved at ``<path>/bigdl_model`` with the Params."""

    _network = None

    @property
    def network(self):
        """The BigDL network."""
        return self._network

    def copy(self, extra=None):
        that = super().copy(extra)
        that._network = self._network
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
        self.instance._validate()
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sc)
        self.instance.network.saveModel(f"{path.rstrip('/')}/{MODEL_DIR}", over_write=True)


class _NetworkModelReader(MLReader):
    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def load(self, path: str):
        from bigdl.dllib.keras.models import load_model

        meta = DefaultParamsReader.loadMetadata(path, self.sc)
        model = self.cls()
        DefaultParamsReader.getAndSetParams(model, meta)
        model._resetUid(meta["uid"])
        model._network = load_model(f"{path.rstrip('/')}/{MODEL_DIR}")
        return model
