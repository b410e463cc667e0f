"""The torch engine: PyTorch DistributedDataParallel (gloo) on a Spark barrier stage.

:func:`fit_on_ranks` runs the whole fit as one barrier stage
(``mapInArrow(..., barrier=True)``): one task per rank, the rendezvous
address and port exchanged with ``BarrierTaskContext.allGather``, then
``torch.distributed`` over gloo.  Each rank receives its share of the rows
once, keeps them decoded in memory (spilling to local disk above a budget,
:class:`ShardStore`) and runs the library's one training loop
(:func:`~bigdl_medimg.ml.training.train_epochs`) with a :class:`TorchEngine`:
segmentation patches are re-sampled on the rank every epoch by the same
sampler and seeds as the BigDL engine; validation rows are scored on the rank
that holds them and the scores gathered, so every rank takes the same
best-epoch and early-stopping decisions.  Rank 0 writes checkpoints,
TensorBoard summaries and progress lines; it returns the trained weights as the
stage's only row.  Nothing else reaches the driver.

Threads: one rank per Spark task slot, each with ``spark.task.cpus`` torch
threads (Spark sets ``OMP_NUM_THREADS`` to the same in Python workers).
"""
from __future__ import annotations

import copy
import io
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np

from ...io import files
from ...ports import free_port
from ..training import EpochEngine, lr_factor, poly_held

__all__ = ["TorchEngine", "ShardStore", "fit_on_ranks", "state_bytes", "load_state_bytes", "weights_digest",
           "network_spec", "build_torch_network", "cached_network"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- weights ---
def state_bytes(module) -> bytes:
    """A module's ``state_dict`` (weights and batch-norm statistics) as ``torch.save`` bytes."""
    return torch_bytes(module.state_dict())


def torch_bytes(obj) -> bytes:
    """``torch.save`` of ``obj`` as bytes (written anywhere :mod:`bigdl_medimg.io.files` reaches)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def torch_read(uri: str):
    """``torch.load`` of file ``uri`` (tensors only: ``weights_only``)."""
    import torch

    return torch.load(io.BytesIO(files.read_bytes(uri)), map_location="cpu", weights_only=True)


def load_state_bytes(module, data: bytes):
    """Load ``state_bytes`` output into ``module``; returns the module."""
    import torch

    module.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))
    return module


def weights_digest(module) -> str:
    """SHA-256 over every parameter and buffer, in ``state_dict`` order (equal weights, equal digests)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def network_spec(topology: str, n_outputs: int, input_shape, params: dict) -> dict:
    """What rebuilds a torch network: :func:`~bigdl_medimg.models.build_network`'s arguments (JSON-able)."""
    return {"topology": topology, "n_outputs": int(n_outputs), "input_shape": [int(v) for v in input_shape],
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}}


def build_torch_network(spec: dict):
    """A fresh torch network from a :func:`network_spec`."""
    from ...models.network import build_network

    params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec["params"].items()}
    return build_network(spec["topology"], "torch", n_outputs=spec["n_outputs"], input_shape=spec["input_shape"],
                         **params)


_CACHE: dict = {}


def cached_network(spec: dict, weights: bytes, digest: str):
    """The network with these weights, built once per Python worker (inference in ``eval`` mode)."""
    net = _CACHE.get(digest)
    if net is None:
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        net = load_state_bytes(build_torch_network(spec), weights).eval()
        _CACHE.clear()  # one model per worker: a new model replaces the last
        _CACHE[digest] = net
    return net


# ------------------------------------------------------------------ shards ---
class ShardStore:
    """A rank's decoded rows: arrays in memory up to ``budget_mb``, then ``.npy`` files on local disk (memory-mapped)."""

    def __init__(self, budget_mb: float, spill_dir: str | None = None):
        self.budget = float(budget_mb) * 2 ** 20
        self.used = 0
        self.spilled = 0
        self._dir = None
        self._spill_root = spill_dir

    def keep(self, arr: np.ndarray):
        """``arr`` copied into memory, or spilled to a memory-mapped ``.npy`` file once the budget is used."""
        arr = np.array(arr, copy=True)  # the Arrow buffers it was read from are released after the batch
        if self.used + arr.nbytes <= self.budget:
            self.used += arr.nbytes
            return arr
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="bigdl-medimg-shard-", dir=self._spill_root)
        path = os.path.join(self._dir, f"{self.spilled}.npy")
        np.save(path, arr)
        self.spilled += 1
        return np.load(path, mmap_mode="r")

    def close(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


# ------------------------------------------------------------------ engine ---
class TorchEngine(EpochEngine):
    """One rank's side of a DDP fit: network, optimiser, schedule and the task's data.

    ``task`` (:class:`SegmentationTask` or :class:`ClassificationTask`) builds the network, yields an epoch's samples,
    computes the loss and scores the validation rows; the engine does
    everything that is the same for both.
    """

    def __init__(self, task, spec: dict, rank: int, world: int):
        self.task, self.spec, self.rank, self.world = task, spec, int(rank), int(world)
        p = spec["params"]
        self.batch = max(1, int(p["batchSize"]) // self.world)  # per rank; the global batch is batchSize
        self.validating = task.validating
        self.iteration = 0
        self.net = self.ddp = self.opt = None
        self._best = None
        self._scalars = None
        self._total_iterations = None
        self._iters_per_epoch = 1
        sumdir = spec.get("summary_dir")
        if sumdir and self.rank == 0:
            from ..tfevents import ScalarWriter

            self._scalars = ScalarWriter(os.path.join(sumdir, spec["app"], "train"))

    # ------------------------------------------------------------ building ---
    def build(self) -> None:
        self._agree(0)  # before any collective of the network's own
        self.build_network()

    def build_network(self) -> None:
        """A fresh network (rank 0's initial weights on every rank), optimiser and iteration count."""
        import torch
        from torch.nn.parallel import DistributedDataParallel

        torch.manual_seed(int(self.spec["params"].get("seed", 0)))
        self.net = self.task.network()
        # DDP broadcasts rank 0's initial weights.  No buffer broadcast before every forward (a collective per
        # iteration): each rank's batch-norm statistics run on, and _sync_buffers gives every rank rank 0's at
        # the end of each epoch, the very values the per-forward broadcast would have left.  Gradients are
        # all-reduced in place in their buckets (no copy per step).
        self.ddp = DistributedDataParallel(self.net, forward_sync_buffers=False, gradient_as_bucket_view=True)
        p = self.spec["params"]
        if p["optimizer"] == "adam":
            self.opt = torch.optim.Adam(self.net.parameters(), lr=p["learningRate"], eps=1e-8)
        else:
            m = float(p["momentum"])
            self.opt = torch.optim.SGD(self.net.parameters(), lr=p["learningRate"], momentum=m, nesterov=m > 0)
        self.iteration = 0

    def load(self, checkpoint: str, state: dict) -> None:
        self._agree(int(state["epoch"]))
        self.build_network()
        self.net.load_state_dict(torch_read(files.join(checkpoint, "model.pt")))
        saved = torch_read(files.join(checkpoint, "optim.pt"))
        self.opt.load_state_dict(saved["optimizer"])
        self.iteration = int(saved["iteration"])

    def _agree(self, epoch: int) -> None:
        """Every rank must start from the same epoch: the checkpoint folder has to be one they all see."""
        import torch.distributed as dist

        seen = [None] * self.world
        dist.all_gather_object(seen, epoch)
        if len(set(seen)) > 1:
            from ...errors import ConfigError

            raise ConfigError(f"{self.spec['owner']}: the ranks found different checkpoints in checkpointDir "
                              f"(epochs {seen}); with engine='torch' it must be a folder every executor sees "
                              "(a shared file system)")

    def _set_lr(self) -> None:
        p = self.spec["params"]
        held = self._iters_per_epoch if poly_held(p["optimizer"], p["lrSchedule"]) else 1
        f = lr_factor(p["lrSchedule"], float(p["lrDecay"]), self.iteration, self._total_iterations or 1, held)
        for g in self.opt.param_groups:
            g["lr"] = float(p["learningRate"]) * f

    def _sync_buffers(self) -> None:
        """Rank 0's batch-norm statistics on every rank (each rank's last forward updated its own)."""
        import torch.distributed as dist

        for b in self.net.buffers():
            dist.broadcast(b.data, 0)

    # -------------------------------------------------------------- epochs ---
    def fit_epoch(self, epoch: int, history: list[dict]) -> dict:
        import torch
        import torch.distributed as dist

        from ..progress import EpochProgress

        x, y = self.task.epoch_samples(epoch)
        counts = torch.tensor([len(x)], dtype=torch.long)
        dist.all_reduce(counts)
        total = int(counts.item())
        if total == 0:
            from ...errors import ConfigError

            raise ConfigError(f"{self.spec['owner']}: no training samples on any rank")
        iters = max(1, -(-total // (self.batch * self.world)))
        if self._total_iterations is None:
            self._total_iterations = iters * int(self.spec["params"]["maxEpoch"])
            self._iters_per_epoch = iters
        # every rank runs the same number of steps (DDP needs it); a rank with fewer samples repeats some
        rng = np.random.default_rng([int(self.spec["params"].get("seed", 0)), epoch, self.rank])
        if len(x) == 0:  # after the collective above, so no rank waits for this one
            raise RuntimeError(f"rank {self.rank} holds no training rows; use fewer ranks than training rows")
        order = np.resize(rng.permutation(len(x)), iters * self.batch)
        progress = EpochProgress(None, epoch, int(self.spec["params"]["maxEpoch"]), total,
                                 self.batch * self.world, [r["seconds"] for r in history])
        progress.t0 = t_last = last_line = time.time()
        self.ddp.train()
        for it in range(iters):
            idx = np.sort(order[it * self.batch:(it + 1) * self.batch])
            xb = torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32))
            yb = self.task.target(y, idx)
            self._set_lr()
            self.opt.zero_grad(set_to_none=True)
            loss = self.task.loss(self.ddp(xb), yb)
            loss.backward()
            self.opt.step()
            self.iteration += 1
            if self.rank == 0:
                now = time.time()
                if self._scalars:  # per iteration, as BigDL's TrainSummary records them
                    self._scalars.add_scalar("Loss", float(loss.item()), self.iteration)
                    self._scalars.add_scalar("LearningRate", self.opt.param_groups[0]["lr"], self.iteration)
                    self._scalars.add_scalar("Throughput", self.batch * self.world / max(now - t_last, 1e-9),
                                             self.iteration)
                t_last = now
                if now - last_line >= self.spec.get("progress_seconds", 10.0):
                    last_line = now
                    self.spec["say"](progress.line(it + 1, float(loss.item()), now))
        self._sync_buffers()
        return {self.spec["count_key"]: total}

    def validate(self) -> dict:
        import torch.distributed as dist

        self.net.eval()
        mine = self.task.score_validation(self.net)
        everyone = [None] * self.world
        dist.all_gather_object(everyone, mine)
        return self.task.validation_record([s for part in everyone for s in part])

    # ---------------------------------------------------------- snapshots ---
    def save(self, folder: str) -> None:
        files.write_bytes(files.join(folder, "model.pt"), torch_bytes(self.net.state_dict()))
        files.write_bytes(files.join(folder, "optim.pt"),
                          torch_bytes({"optimizer": self.opt.state_dict(), "iteration": self.iteration}))

    def keep_best(self) -> None:
        self._best = copy.deepcopy(self.net.state_dict())
        ckdir = self.spec.get("checkpoint_dir")
        if ckdir and self.rank == 0:  # a resumed fit finds the best epoch of the run before it
            tmp = files.join(ckdir, "best_model.pt.tmp")
            files.write_bytes(tmp, torch_bytes(self._best))
            files.remove(files.join(ckdir, "best_model.pt"))
            files.move(tmp, files.join(ckdir, "best_model.pt"))

    def restore_best(self) -> None:
        if self._best is None:
            ckdir = self.spec.get("checkpoint_dir")
            if not ckdir or not files.is_file(files.join(ckdir, "best_model.pt")):
                return
            self._best = torch_read(files.join(ckdir, "best_model.pt"))
        self.net.load_state_dict(self._best)


# ------------------------------------------------------------- the stage ---
def _rank_main(spec: dict, make_task):
    """The barrier task of one rank: rows -> shard -> rendezvous -> the training loop -> weights (rank 0)."""

    def run(batches):
        import pyarrow as pa
        import torch
        import torch.distributed as dist
        from pyspark import BarrierTaskContext

        from ..progress import progress_sender
        from ..training import train_epochs

        ctx = BarrierTaskContext.get()
        rank, infos = ctx.partitionId(), ctx.getTaskInfos()
        world = len(infos)
        torch.set_num_threads(max(1, int(ctx.cpus())))
        store = ShardStore(spec["params"].get("cacheMemoryMB", 4096), spill_dir=spec.get("spill_dir"))
        task = make_task(spec, store)
        for batch in batches:
            task.add_rows(batch)
        say = spec["say"] = progress_sender(spec.get("progress") if rank == 0 else None)
        host = infos[0].address.rsplit(":", 1)[0]
        port = ctx.allGather(str(free_port("") if rank == 0 else 0))[0]
        dist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank, world_size=world)
        try:
            engine = TorchEngine(task, spec, rank, world)
            history, best = train_epochs(
                engine, max_epoch=spec["params"]["maxEpoch"], metric=spec["metric"], tag=spec["tag"],
                checkpoint_dir=spec.get("checkpoint_dir", ""), summary_dir=spec.get("summary_dir", ""),
                app=spec["app"], patience=spec.get("patience", 0), select_best=spec.get("select_best", False),
                writer=rank == 0, report=lambda rec: say(spec["epoch_line"](rec)))
            digest = weights_digest(engine.net)
            digests = ctx.allGather(digest)
            weights = state_bytes(engine.net) if rank == 0 else None
            info = json.dumps({"history": history, "best": best, "digests": digests, "world": world,
                               "rows": task.counts(), "spilled": store.spilled})
        finally:
            dist.destroy_process_group()
            store.close()
            say.close()
        yield pa.RecordBatch.from_arrays([pa.array([rank], pa.int32()), pa.array([weights], pa.binary()),
                                          pa.array([info], pa.string())], names=["rank", "weights", "info"])

    return run


def _shard(rows, world: int):
    """``rows`` in ``world`` partitions, training and validation rows each dealt out evenly.

    Round-robin ``repartition`` can leave a rank without training rows when
    there are few; here the driver deals the rows' keys (a JVM-side hash of the
    image bytes and the validation flag: numbers only) to the ranks, and each
    rank's rows are routed by a partition key whose hash lands on that rank's
    partition.  Returns the sharded rows and the world size (at most one rank
    per training row).
    """
    from pyspark.sql import functions as F

    spark = rows.sparkSession
    keyed = rows.withColumn("__k", F.xxhash64(F.col("__x.data")))
    keys = keyed.groupBy("__k", "__val").count().collect()
    train = sorted(r["__k"] for r in keys if not r["__val"])
    val = sorted(r["__k"] for r in keys if r["__val"])
    world = max(1, min(int(world), len(train)))
    # a long value per rank whose Murmur3 hash (HashPartitioning's) maps to that rank's partition
    probe = spark.range(0, 64 * world).select("id", F.expr(f"pmod(hash(id), {world})").alias("p")).collect()
    route = {}
    for r in probe:
        route.setdefault(int(r["p"]), int(r["id"]))
    if len(route) < world:  # pragma: no cover - 64 candidates per rank always cover them
        raise RuntimeError(f"no partition key found for every one of {world} ranks")
    deal = [(k, is_val, route[i % world]) for is_val, group in ((False, train), (True, val))
            for i, k in enumerate(group)]
    table = spark.createDataFrame(deal, "__k long, __val boolean, __part long")
    shards = keyed.join(F.broadcast(table), ["__k", "__val"]).drop("__k") \
        .repartition(world, "__part").drop("__part")
    return shards, world


def fit_on_ranks(rows, spec: dict, make_task, ranks: int = 0) -> tuple[bytes, dict]:
    """Run a torch fit over ``rows`` (the task's columns plus ``__val``) as one barrier stage.

    ``ranks`` = 0 takes one rank per task slot (``defaultParallelism``).
    Returns rank 0's weights (``state_bytes``) and its info: history, best
    epoch, every rank's weights digest, world size and row counts.
    """
    from pyspark.sql import types as T

    from ..progress import RankProgress

    spark = rows.sparkSession
    world = int(ranks) or int(spark.sparkContext.defaultParallelism)
    shards, world = _shard(rows, world)
    schema = T.StructType([T.StructField("rank", T.IntegerType()), T.StructField("weights", T.BinaryType()),
                           T.StructField("info", T.StringType())])
    conf = spark.sparkContext.getConf()
    host = conf.get("spark.driver.bindAddress", None) or conf.get("spark.driver.host", "127.0.0.1")
    with RankProgress(host) as progress:  # rank 0's lines reach the driver's console over TCP
        spec = dict(spec, progress=progress.endpoint,
                    progress_seconds=float(os.environ.get("BIGDL_MEDIMG_PROGRESS_SECONDS", 10.0)))
        out = shards.mapInArrow(_rank_main(spec, make_task), schema, barrier=True).collect()
    head = [r for r in out if r["rank"] == 0][0]
    return bytes(head["weights"]), json.loads(head["info"])
