"""The learning engines behind the estimators: ``bigdl`` (BigDL's distributed optimiser) and ``torch``
(PyTorch DistributedDataParallel on a Spark barrier stage).  Each is one module with an
:class:`~bigdl_medimg.ml.training.EpochEngine`; the loop that drives them is :func:`~bigdl_medimg.ml.training.train_epochs`.
"""
