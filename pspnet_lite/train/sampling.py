"""Which images a training iteration sees, and the random draws of their augmentation.

Data order comes from :class:`IterationBatchSampler`, a seeded, rank-aware sampler positioned by
iteration: it plays ``DistributedSampler``'s role, but it can start mid-epoch and gives every world
size the same global batches. Every sample's augmentation is drawn from a generator seeded by
``(seed, epoch, index)`` (:class:`SeededSamples`). So resuming is exact, and a W-process run sees the
same global batches as a 1-process run.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import build_dataset
from ..data.transforms import EvalTransform, TrainTransform
from .config import TrainConfig


def stream_seed(seed: int, name: str, *keys: int) -> int:
    """A seed for the random stream ``name`` (e.g. "dropout") of run ``seed`` and ``keys`` (e.g. the rank),
    independent of the stream ``torch.manual_seed(seed)`` itself starts (the one that draws the weights)."""
    words = [int(seed) & (2**64 - 1), *[int(k) & (2**64 - 1) for k in keys], *name.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> 1)


class IterationBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's micro-batches of ``(epoch, index)`` keys for iterations ``start..end-1``.

    The global sample stream is epoch after epoch of ``torch.randperm(N)`` seeded by ``(seed, epoch)``;
    iteration ``it`` takes stream positions ``[it*B, (it+1)*B)`` (B = global batch). Within them,
    micro-step ``a`` of rank ``r`` takes the ``micro`` positions at ``a*W*micro + r*micro``: so a
    micro-step over all ranks is one contiguous block (what SyncBatchNorm normalises together), and any
    world size sees the same global batches. Starting at ``start`` resumes the exact position.
    """

    def __init__(self, num_samples: int, batch_size: int, micro: int, accum: int, rank: int, world: int,
                 seed: int, start: int, end: int):
        if num_samples < 1:
            raise ValueError("the training set is empty; check data_root / num_train_images")
        self.n, self.b, self.micro, self.accum = num_samples, batch_size, micro, accum
        self.rank, self.world, self.seed, self.start, self.end = rank, world, seed, start, end
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=g)}  # keep one epoch in memory
        return self._perms[epoch]

    def key(self, position: int) -> tuple[int, int]:
        epoch, pos = divmod(position, self.n)
        return epoch, int(self._perm(epoch)[pos])

    def __iter__(self):
        for it in range(self.start, self.end):
            for a in range(self.accum):
                base = it * self.b + a * self.world * self.micro + self.rank * self.micro
                yield [self.key(base + j) for j in range(self.micro)]

    def __len__(self) -> int:
        return (self.end - self.start) * self.accum


class SeededTransform:
    """Calls a transform with ``rng=self.rng`` (set per sample by :class:`SeededSamples`)."""

    def __init__(self, transform):
        self.transform, self.rng = transform, None

    def __call__(self, image, mask):
        return self.transform(image, mask, rng=self.rng)


class SeededSamples(torch.utils.data.Dataset):
    """Index a data set by ``(epoch, index)``: the sample's augmentation draws from
    ``numpy.random.default_rng([seed, epoch, index])``, independent of workers, ranks and resumes."""

    def __init__(self, dataset, proxy: SeededTransform, seed: int):
        self.dataset, self.proxy, self.seed = dataset, proxy, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        self.proxy.rng = np.random.default_rng([self.seed, epoch, index])
        return self.dataset[index]


def _subset(ds, n):
    """The first ``n`` images of ``ds`` (all of them for None), keeping its class metadata."""
    if n is None or n >= len(ds):
        return ds
    sub = torch.utils.data.Subset(ds, range(n))
    for attr in ("classes", "palette", "num_classes", "ignore_index"):
        if hasattr(ds, attr):
            setattr(sub, attr, getattr(ds, attr))
    return sub


def build_datasets(cfg: TrainConfig):
    """(train set as :class:`SeededSamples` over a :class:`SeededTransform`, val set or None)."""
    if cfg.augment:
        tt = TrainTransform(crop_size=cfg.crop_size, scale=(cfg.scale_min, cfg.scale_max),
                            rotate=(-cfg.rotate, cfg.rotate) if cfg.rotate else None, blur=cfg.blur, flip=cfg.flip)
    else:
        tt = TrainTransform(crop_size=cfg.crop_size, scale=None, rotate=None, blur=False, flip=False)
    proxy = SeededTransform(tt)
    kw_train, kw_val = {}, {}
    if cfg.dataset == "context_scenes":
        if cfg.image_size is not None:
            kw_train["image_size"] = kw_val["image_size"] = cfg.image_size
        if cfg.data_seed is not None:
            kw_train["seed"] = kw_val["seed"] = cfg.data_seed
        if cfg.num_train_images is not None:
            kw_train["num_images"] = cfg.num_train_images
        if cfg.num_val_images is not None:
            kw_val["num_images"] = cfg.num_val_images
    train_ds = build_dataset(cfg.dataset, root=cfg.data_root, split=cfg.train_split, transform=proxy, **kw_train)
    train_ds = _subset(train_ds, cfg.num_train_images)
    val_ds = None
    if cfg.val_split and cfg.val_every >= 0:
        val_ds = build_dataset(cfg.dataset, root=cfg.data_root, split=cfg.val_split, transform=EvalTransform(),
                               **kw_val)
        val_ds = _subset(val_ds, cfg.num_val_images)
    if len(train_ds) == 0:
        raise ValueError(f"no training images in dataset={cfg.dataset!r} root={cfg.data_root!r} "
                         f"split={cfg.train_split!r}; check the path (see data_scripts/)")
    return SeededSamples(train_ds, proxy, cfg.seed), val_ds
