"""The estimators' sides of a torch fit (the tasks :func:`~bigdl_medimg.ml.engines.torch.fit_on_ranks` runs), their losses, and sliding-window inference.

A task receives a rank's share of the rows (``add_rows``, Arrow batches),
keeps them in a :class:`~bigdl_medimg.ml.engines.torch.ShardStore`, and gives
the :class:`~bigdl_medimg.ml.engines.torch.TorchEngine` its batches, loss and
validation scores.  The losses are the BigDL criteria written in torch (tested
equal).
"""
from __future__ import annotations

import numpy as np

from .torch import ShardStore, build_torch_network

__all__ = ["SegmentationTask", "ClassificationTask", "predict_volume", "dice_ce_loss", "weighted_bce_loss"]


# ------------------------------------------------------------------ losses ---
def dice_ce_loss(logits, onehot, class_weights, smooth: float = 1.0):
    """Weighted cross-entropy + (1 - mean foreground soft Dice) per sample, batch mean (as the BigDL criterion)."""
    import torch

    p = torch.softmax(logits, 1).flatten(2)  # (N, C, V)
    t = onehot.flatten(2)
    wt = t * class_weights.view(1, -1, 1)
    ce = -(wt * torch.log(p.clamp(1e-7, 1.0))).sum((1, 2)) / (wt.sum((1, 2)) + 1e-7)
    inter = (p * t).sum(2)
    dice = (2 * inter + smooth) / (p.sum(2) + t.sum(2) + smooth + 1e-7)
    return (ce + 1.0 - dice[:, 1:].mean(1)).mean()


def weighted_bce_loss(logits, y, wp, wn):
    """``-mean_k(w+_k y log p + w-_k (1-y) log(1-p))`` per sample on sigmoid outputs, batch mean."""
    import torch

    p = torch.sigmoid(logits).clamp(1e-7, 1 - 1e-7)
    return -(y * wp * torch.log(p) + (1 - y) * wn * torch.log(1 - p)).mean(1).mean()


# ------------------------------------------------------------------- tasks ---
class _Rows:
    """Indexable stack of a shard's images: ``rows[idx]`` -> one float32 batch array of ``shape`` images.

    With an augmentation config each image is augmented as its batch is
    drawn (nothing augmented is kept), with a generator of the epoch's
    ``seed`` and the image's bytes (their CRC, taken once when the rows
    arrive): the BigDL engine's ``Augment`` stage draws the same way.
    """

    def __init__(self, arrays, shape, affines=None, crcs=None, cfg=None, seed=None):
        self.arrays, self.shape, self.affines, self.crcs = arrays, tuple(shape), affines, crcs
        self.cfg, self.seed = cfg, seed

    def __len__(self):
        return len(self.arrays)

    def _one(self, i: int) -> np.ndarray:
        x = self.arrays[i]
        if self.cfg is not None:
            from ...transforms.array import row_seed
            from ...transforms.augment import augment

            x, _aff, _ = augment(x, self.affines[i], None, row_seed(self.seed, crc=self.crcs[i]), self.cfg)
        return np.asarray(x, np.float32).reshape(self.shape)

    def __getitem__(self, idx):
        return np.stack([self._one(int(i)) for i in idx])


class SegmentationTask:
    """The segmentation estimator's side of a torch fit: patches, Dice + CE loss, validation Dice."""

    def __init__(self, spec: dict, store: ShardStore):
        self.spec, self.p, self.store = spec, spec["params"], store
        self.patch = tuple(int(v) for v in self.p["patchShape"])
        self.n_classes = int(self.p["nClasses"])
        w = self.p["classWeights"] or [1.0] * self.n_classes
        import torch

        self.weights = torch.tensor(w, dtype=torch.float32)
        self.train, self.val = [], []
        self.validating = bool(spec.get("validating"))

    def add_rows(self, batch) -> None:
        import zlib

        from ...arrow import read_tensor

        for i in range(batch.num_rows):
            img = read_tensor(batch.column(batch.schema.get_field_index("__x")), i)
            mask = read_tensor(batch.column(batch.schema.get_field_index("__y")), i)
            is_val = bool(batch.column(batch.schema.get_field_index("__val"))[i].as_py())
            if img is None or mask is None:
                continue
            row = {"image": self.store.keep(img[0]), "mask": self.store.keep(mask[0]), "crc": zlib.crc32(img[2]),
                   "affine": img[1]}
            (self.val if is_val else self.train).append(row)

    def counts(self) -> dict:
        return {"train": len(self.train), "val": len(self.val)}

    def network(self):
        return build_torch_network(self.spec["network"])

    def epoch_samples(self, epoch: int):
        """This rank's patches of ``epoch``: the sampler and seeds of the BigDL engine's ``PatchSampler``."""
        from ...transforms import array as A
        from ...transforms.augment import augment
        from ...transforms.sampling import augment_config, epoch_seed, sample_patches

        seed, aug_seed = epoch_seed(self.p["seed"], epoch), epoch_seed(self.p["seed"], epoch, 1)
        cfg = augment_config(self.p.get("augment"))
        xs, ys = [], []
        for r in self.train:
            for start, _fg in sample_patches(r["image"], r["mask"], self.patch, int(self.p["patchesPerImage"]),
                                             float(self.p["posFraction"]), A.row_seed(seed, crc=r["crc"])):
                x = np.ascontiguousarray(A.extract_patch(r["image"], start, self.patch))
                y = A.extract_patch(r["mask"], start, self.patch)
                if cfg is not None:  # seeded by the patch's bytes, as the BigDL engine's Augment stage is
                    x, _aff, y = augment(x, r["affine"], y, A.row_seed(aug_seed, x.tobytes()), cfg)
                xs.append(x.astype(np.float32).reshape((1,) + self.patch))
                ys.append(y.reshape(self.patch).astype(np.int64))
        if not xs:
            return np.zeros((0, 1) + self.patch, np.float32), np.zeros((0,) + self.patch, np.int64)
        return np.stack(xs), np.stack(ys)

    def target(self, y, idx):
        import torch

        return torch.from_numpy(y[idx])

    def loss(self, logits, y):
        import torch.nn.functional as F

        if self.p["loss"] == "ce":
            return F.cross_entropy(logits, y, weight=self.weights)
        onehot = F.one_hot(y, self.n_classes).permute(0, 4, 1, 2, 3).float()
        return dice_ce_loss(logits, onehot, self.weights, float(self.p["diceSmooth"]))

    def score_validation(self, net) -> list:
        from ...metrics.functional import dice_per_class

        return [dice_per_class(np.argmax(predict_volume(net, r["image"], self.patch, float(self.p["overlap"]),
                                                        int(self.p["batchSize"])), axis=0),
                               r["mask"].reshape(r["mask"].shape[-3:]), self.n_classes).tolist()
                for r in self.val]

    def validation_record(self, scores: list) -> dict:
        from ...metrics.functional import mean_dice_record

        return mean_dice_record(scores, self.n_classes)


def predict_volume(net, image: np.ndarray, patch, overlap: float, batch: int, mode: str = "gaussian",
                   output: str = "probabilities"):
    """Class probabilities ``(classes, D, H, W)`` of a ``(D, H, W)`` or ``(C, D, H, W)`` volume: tiles scored
    with softmax and blended in this process (what the torch SegmentationModel runs per volume).

    The windows, padding and blending weights are those of
    :func:`~bigdl_medimg.ml.inference.sliding_window_predict`; tiles are cut,
    scored and accumulated with torch's in-place tensor ops (its threads, no
    numpy copies per tile).  ``labels=True`` returns ``(probabilities, argmax
    labels as uint8)``.
    """
    import torch

    from ..inference import blend_weights, pad_to_patch, window_starts

    vol = image if image.ndim == 4 else image[np.newaxis]
    padded, orig = pad_to_patch(vol, patch)
    padded = np.ascontiguousarray(padded, dtype=np.float32)
    if not padded.flags.writeable:  # a read-only view on an Arrow buffer: torch wants memory it may own
        padded = padded.copy()
    x = torch.from_numpy(padded)
    shape = tuple(padded.shape[1:])
    starts = window_starts(shape, patch, overlap)
    w = torch.from_numpy(blend_weights(patch, mode))
    acc, norm = None, torch.zeros(shape)
    with torch.inference_mode():
        for i in range(0, len(starts), batch):
            cuts = [tuple(slice(s, s + p) for s, p in zip(st, patch)) for st in starts[i:i + batch]]
            prob = torch.softmax(net(torch.stack([x[(slice(None),) + c] for c in cuts])), 1)
            if acc is None:
                acc = torch.zeros((prob.shape[1],) + shape)
            for c, tile in zip(cuts, prob):
                acc[(slice(None),) + c].addcmul_(tile, w)
                norm[c].add_(w)
        acc /= norm
        out = acc[(slice(None),) + tuple(slice(0, s) for s in orig)]
        probs = np.ascontiguousarray(out.numpy()) if output in ("probabilities", "both") else None
        if output == "probabilities":
            return probs
        seg = out.argmax(0).to(torch.uint8).numpy()
        return seg if output == "labels" else (probs, seg)


class ClassificationTask:
    """The classification estimator's side of a torch fit: images, weighted BCE or CE, validation AUROC."""

    def __init__(self, spec: dict, store: ShardStore):
        import torch

        self.spec, self.p, self.store = spec, spec["params"], store
        self.shape = tuple(int(v) for v in self.p["inputShape"])
        self.mode = self.p["mode"]
        lw = spec["loss_weights"]
        self.wp = torch.tensor(lw.get("pos_weights") or [1.0], dtype=torch.float32)
        self.wn = torch.tensor(lw.get("neg_weights") or [1.0], dtype=torch.float32)
        cw = lw.get("class_weights")
        self.class_weights = None if cw is None else torch.tensor(cw, dtype=torch.float32)
        self.train_x, self.train_aff, self.train_crc, self.train_y, self.val = [], [], [], [], []
        self.validating = bool(spec.get("validating"))

    def add_rows(self, batch) -> None:
        import zlib

        from ...arrow import read_tensor

        for i in range(batch.num_rows):
            img = read_tensor(batch.column(batch.schema.get_field_index("__x")), i)
            if img is None:
                continue
            label = batch.column(batch.schema.get_field_index("__y"))[i].as_py()
            if batch.column(batch.schema.get_field_index("__val"))[i].as_py():
                self.val.append((self.store.keep(np.asarray(img[0], np.float32).reshape(self.shape)), label))
            else:
                # kept as stored (the augmentation draws from the image's own bytes, as the BigDL engine's do)
                self.train_x.append(self.store.keep(img[0]))
                self.train_aff.append(img[1])
                self.train_crc.append(zlib.crc32(img[2]))
                self.train_y.append(label)

    def counts(self) -> dict:
        return {"train": len(self.train_x), "val": len(self.val)}

    def network(self):
        return build_torch_network(self.spec["network"])

    def epoch_samples(self, epoch: int):
        from ...transforms.sampling import augment_config, epoch_seed

        cfg = augment_config(self.spec.get("augment"))  # the estimator's settings, spatialDims filled in
        seed = epoch_seed(self.p["seed"], epoch, 1) if cfg is not None else None
        return _Rows(self.train_x, self.shape, self.train_aff, self.train_crc, cfg, seed), self.train_y

    def target(self, y, idx):
        import torch

        if self.mode == "multilabel":
            return torch.tensor(np.asarray([y[int(i)] for i in idx], np.float32))
        return torch.tensor([int(y[int(i)]) for i in idx], dtype=torch.long)

    def loss(self, logits, y):
        import torch.nn.functional as F

        if self.mode == "multilabel":
            return weighted_bce_loss(logits, y, self.wp, self.wn)
        return F.cross_entropy(logits, y, weight=self.class_weights)

    def score_validation(self, net) -> list:
        import torch

        out, bs = [], int(self.p["batchSize"])
        for i in range(0, len(self.val), bs):
            chunk = self.val[i:i + bs]
            with torch.no_grad():
                logits = net(torch.from_numpy(np.stack([x for x, _ in chunk])))
            probs = torch.sigmoid(logits) if self.mode == "multilabel" else torch.softmax(logits, 1)
            out += [(p, lab) for p, (_, lab) in zip(probs.numpy().astype(np.float64).tolist(), chunk)]
        return out

    def validation_record(self, scores: list) -> dict:
        from ...metrics.classification import validation_auroc

        return validation_auroc([s for s, _ in scores], [y for _, y in scores], self.mode,
                                len(self.p["labelNames"]))
