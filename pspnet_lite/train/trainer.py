"""The training loop: :class:`Trainer` (one run, any number of processes), :func:`train` and :func:`validate`.

The recipe it implements is described in :mod:`pspnet_lite.train`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import checkpoint
from ..checkpoint import CHECKPOINT_FORMAT
from ..data import data_loader
from ..inference import PROTOCOLS, Protocol, aligned_for, predict
from ..labels import check_label_range
from ..losses import DeepSupervisionLoss
from ..metrics import ConfusionMatrix, json_safe
from ..model import PSPNet
from . import distributed as D
from . import faults
from .config import FromScratchWarning, TrainConfig, accum_steps, check_config, from_scratch_message
from .runlog import CheckpointWriteError, NonFiniteLossError, RunLogger, RunResult
from .sampling import IterationBatchSampler, build_datasets, stream_seed


def poly_lr(base_lr: float, it: int, max_iter: int, power: float = 0.9) -> float:
    """The paper's "poly" policy (§4): ``base_lr * (1 - it / max_iter) ** power``."""
    return base_lr * (1 - min(it, max_iter) / max_iter) ** power


def grad_scaler(enabled: bool):
    """The CUDA loss scaler of fp16 training: ``torch.amp.GradScaler("cuda")`` (torch >= 2.3), else the older
    ``torch.cuda.amp.GradScaler`` (torch 2.1-2.2, which a GPU machine may have)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool):
    """Within the block, ``torch.backends.cudnn.benchmark = enabled``; the previous value afterwards.

    Training crops have one fixed size (§4: 473 or 713), so the trainer lets cuDNN time its kernels once per shape
    and keep the fastest (as ``benchmarks/gpu_check.py`` measures). Whole-image validation meets a new shape with
    almost every ADE20K image, and each new shape would be timed again, so validation runs without it unless it
    slides fixed windows."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """PSPNet from the config (seeded, on CPU), with ``cfg.pretrained`` loaded if given."""
    torch.manual_seed(cfg.seed)
    model = PSPNet(dataclasses.replace(cfg.model, num_classes=num_classes))
    if cfg.pretrained:
        if not Path(cfg.pretrained).is_file():
            raise ValueError(f"pretrained weights {cfg.pretrained!r} not found; pass an existing file or unset it")
        checkpoint.load_weights(model, cfg.pretrained, kind=cfg.pretrained_kind)
    return model


def param_groups(model: nn.Module, lr: float, head_lr_mult: float) -> list[dict]:
    """Two SGD groups as the authors (hszhao/semseg, ``tool/train.py``): backbone at ``lr``, the new layers
    (``model.head_modules()``: PPM, classifier, aux) at ``head_lr_mult * lr``. Weight decay applies to all."""
    head = {id(p) for m in model.head_modules() for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"name": "backbone", "params": [p for p in params if id(p) not in head], "lr": lr, "lr_mult": 1.0},
            {"name": "head", "params": [p for p in params if id(p) in head], "lr": lr * head_lr_mult,
             "lr_mult": head_lr_mult}]


def build_optimizer(model: nn.Module, cfg: TrainConfig):
    """SGD (momentum 0.9, wd 1e-4) and a per-iteration poly LambdaLR (§4)."""
    opt = torch.optim.SGD(param_groups(model, cfg.lr, cfg.head_lr_mult), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    # LambdaLR multiplies each group's initial lr (backbone lr, head 10x lr) by poly_lr(1, it, ...)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda it: poly_lr(1.0, it, cfg.iters, cfg.poly_power))
    return opt, sched


def set_train_mode(model: nn.Module, freeze_bn: str = "none") -> None:
    """``model.train()``, then BN layers of the backbone (or all) back in eval mode if frozen."""
    model.train()
    if freeze_bn == "none":
        return
    scope = model.backbone if freeze_bn == "backbone" else model
    for m in scope.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def rng_state(device: torch.device) -> dict:
    """This process's RNG states (torch, CUDA, NumPy global, Python) as weights_only-loadable values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
            "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]}}


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


class Trainer:
    """One training run (see the module docstring). ``Trainer(cfg).fit()`` == ``train(cfg)``."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.owns_group = D.init_distributed(cfg.device)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        cfg = self.cfg
        self.rank, self.world = D.get_rank(), D.get_world_size()
        check_config(cfg, self.world)
        self.main = self.rank == 0
        self.device = D.resolve_device(cfg.device)
        if self.world > 1:  # torchrun's output streams into the launching cell: show which device each rank took
            print(f"rank {self.rank}/{self.world}: device {self.device}\n", end="", flush=True)  # one write per line
        restart_problem = D.restart_store_problem()
        if restart_problem and self.main:
            warnings.warn(restart_problem, faults.RestartStoreWarning, stacklevel=2)
        if cfg.amp == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("amp='bf16' but this GPU has no bf16 support; use --amp fp16")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed training crops: cuDNN's fastest kernels (see cudnn_benchmark)
        self.micro, self.accum = accum_steps(cfg, self.world)
        self.out_dir = Path(cfg.out_dir)
        # data first: a missing data root fails before any model is built
        self.train_set, self.val_set = build_datasets(cfg)
        scratch = from_scratch_message(cfg)
        if scratch and self.main:
            warnings.warn(scratch, FromScratchWarning, stacklevel=4)  # the caller of train()
        base = self.train_set.dataset
        self.num_classes = cfg.model.num_classes or getattr(base, "num_classes", None)
        if not self.num_classes:
            raise ValueError(f"dataset {cfg.dataset!r} has no num_classes attribute; set num_classes")
        self.class_names = list(getattr(base, "classes", [])) or None
        self.model = self._build_model()  # the plain module: checkpoints, validation
        self.opt, self.sched = build_optimizer(self.model, cfg)
        self.scaler = grad_scaler(enabled=cfg.amp == "fp16" and self.device.type == "cuda")
        self.criterion = DeepSupervisionLoss(alpha=cfg.alpha, check_labels=False)  # step() checks on the host
        resume = self._start_state()
        self.net = self._wrap(self.model)
        if self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.logger = RunLogger(self.out_dir, self.main, cfg.tensorboard,
                                resume_from=self.start_iter if resume else None)

    def _build_model(self) -> nn.Module:
        model = build_model(self.cfg, self.num_classes)
        if self.world > 1 and self.cfg.sync_bn:
            model = D.convert_sync_batchnorm(model, self.device)
        model.to(self.device)
        if self.cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def _start_state(self) -> str | None:
        """Resume from a checkpoint (returns its path), or seed this rank's dropout stream (returns None).

        Every rank looks for its checkpoint on its own disk, so the ranks first agree on where they start
        (:meth:`_agree_on_start`): ranks that found no ``last.pt`` while others resume would restart at iteration 0
        with fresh momentum, and the job would hang at its end."""
        self.start_iter, self.best_miou, self.best_metrics = 0, -1.0, None
        resume = self.cfg.resume
        if resume == "auto":
            resume = str(self.out_dir / "last.pt") if (self.out_dir / "last.pt").is_file() else None
        ckpt, problem = None, None
        if resume:
            try:
                ckpt = checkpoint.load_trainer_checkpoint(resume)
            except (ValueError, OSError) as e:  # reported after the ranks have compared notes, never alone
                problem = str(e)
        faults.agree_on_start(resume, None if ckpt is None else int(ckpt["iteration"]), problem, self.cfg)
        if ckpt is not None:
            self._resume(resume, ckpt)
            here = Path(resume).resolve() == (self.out_dir / "last.pt").resolve()
            self._saved_iter = self.start_iter if here else None  # the iteration of the last.pt in out_dir
            return resume
        # a stream of its own per rank: torch.manual_seed(cfg.seed) already drew the initial weights, and
        # replaying it made every dropout mask a function of those weights (measured on ContextScenes:
        # B1 scored 7-10 mIoU higher with the replayed stream than with an independent one)
        s = stream_seed(self.cfg.seed, "dropout", self.rank)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        self._saved_iter = None  # the iteration of the last.pt this run wrote or resumed from
        return None

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The module the forward passes run through: DDP over several processes, then torch.compile."""
        net = model
        if self.world > 1:
            net = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile and self.world > 1 and self.cfg.sync_bn and self.main:
            warnings.warn(faults.compile_sync_bn_message(model), faults.CompileSyncBatchNormWarning, stacklevel=2)
        return torch.compile(net) if self.cfg.compile else net

    def _resume(self, path: str, ckpt: dict) -> None:
        stored = checkpoint.model_config(ckpt)
        if stored != self.model.config:
            diff = ", ".join(f"{k}: checkpoint {v!r} vs config {getattr(self.model.config, k)!r}"
                             for k, v in vars(stored).items() if v != getattr(self.model.config, k))
            raise ValueError(f"checkpoint {path!r} holds another architecture or class count ({diff}); "
                             "use the same model settings as the run that wrote it")
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.start_iter = int(ckpt["iteration"])
        self.best_miou = float(ckpt.get("best_miou", -1.0))
        sampler = ckpt.get("sampler", {})
        same_seed = sampler.get("seed", self.cfg.seed) == self.cfg.seed
        if sampler.get("num_samples") not in (None, len(self.train_set)) or not same_seed:
            warnings.warn(f"resuming {path} with a different data set size or seed; the data order will differ",
                          stacklevel=2)
        states = ckpt.get("rng") or []
        if len(states) == self.world:
            set_rng_state(states[self.rank], self.device)
        else:
            warnings.warn(f"checkpoint has RNG states for {len(states)} processes, this run has {self.world}; "
                          "seeding afresh (the run continues, but not bit-exactly)", stacklevel=2)
            torch.manual_seed(stream_seed(self.cfg.seed, "dropout", self.rank, self.start_iter))
        if self.start_iter >= self.cfg.iters:
            warnings.warn(f"checkpoint {path} is already at iteration {self.start_iter} >= iters={self.cfg.iters}",
                          stacklevel=2)

    # -- checkpoints
    def checkpoint_dict(self, iteration: int, metrics: dict | None) -> dict:
        """What a checkpoint holds: weights, architecture, optimiser/scheduler/RNG states, config (format 2)."""
        return {"format": CHECKPOINT_FORMAT, "model": self.model.state_dict(),
                "model_config": self.model.config.to_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "iteration": iteration, "best_miou": self.best_miou, "metrics": json_safe(metrics or {}),
                "rng": D.all_gather_object(rng_state(self.device)),
                "sampler": {"seed": self.cfg.seed, "num_samples": len(self.train_set),
                            "samples_seen": iteration * self.cfg.batch_size},
                "config": self.cfg.to_dict(), "class_names": self.class_names, "world_size": self.world}

    def save(self, iteration: int, metrics: dict | None = None, best: bool = False) -> None:
        """Write ``last.pt`` (and ``best.pt``) on rank 0; every rank calls it and returns when the files are
        written. A write that fails (disk full, permission denied) stops every rank with one
        :class:`CheckpointWriteError` naming the folder and the cause; the previous ``last.pt`` stays intact."""
        ckpt = self.checkpoint_dict(iteration, metrics)  # collective (RNG gather): every rank calls it
        problem = self._write(ckpt, iteration, best) if self.main else None
        problem = D.all_gather_object(problem)[0]  # rank 0's outcome, on every rank (and the barrier)
        if problem:
            raise D.mark_every_rank(CheckpointWriteError(problem))
        self._saved_iter = iteration
        faults.kill_drill(self.rank, iteration)

    def _write(self, ckpt: dict, iteration: int, best: bool) -> str | None:
        """Rank 0 writes the files; returns None, or the one-line reason a write failed."""
        for name in ("last.pt", "best.pt") if best else ("last.pt",):
            try:
                checkpoint.save(ckpt, self.out_dir / name)
            except OSError as e:
                return faults.write_failure(self.out_dir, name, iteration, e, self._saved_iter)
        return None

    # -- validation
    def validate(self) -> dict:
        """Scores of the current model on this rank's share of the val set, summed over ranks."""
        return validate(self.model, self.val_set, self.num_classes, self.cfg, self.device)

    # -- one iteration
    def step(self, batches) -> torch.Tensor:
        """Forward/backward over this rank's ``accum`` micro-batches of one iteration; returns the global
        batch's [total, main, aux] losses, each the mean over all its labelled pixels.

        The gradient is that of the batch-16 loss (§4) whatever the split over ranks and micro-batches:
        the labelled (non-255) pixels of every micro-batch are counted before the forward passes and
        summed over ranks (``n``); micro-batch ``a`` with ``n_a`` labelled pixels then back-propagates
        ``loss_a * n_a / n`` (its summed cross-entropy over the global count), times the world size W
        to undo DDP's averaging of gradients over ranks. Averaging each micro-batch's (or rank's) own
        mean instead would weight pixels unequally whenever ignore pixels (ADE20K's "other", the padding
        of random scale/rotation) are unevenly spread.

        Nothing here waits for the device: the labels are checked and counted on the host before they are
        copied, the count goes to the device from pinned memory without a stream synchronisation
        (:func:`~pspnet_lite.train.distributed.to_device`), and the losses stay on the device (:meth:`fit` reads
        them back once per ``log_every``).
        """
        cfg, dt = self.cfg, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.cfg.amp)
        ignore = self.criterion.ignore_index
        for _, y in batches:  # on the host, before the copy: the check makes no device wait
            check_label_range(y, self.num_classes, ignore, "target")
        counts = [int((y != ignore).sum()) for _, y in batches]  # labelled pixels per micro-batch (host tensors)
        # the global count stays on the device: reading it back would make the host wait for the GPU every step
        n = D.all_reduce_sum(D.to_device(torch.tensor(float(sum(counts)), dtype=torch.float64), self.device))
        n = n.clamp(min=1.0)  # a global batch without labelled pixels: zero loss, zero gradient
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for a, (x, y) in enumerate(batches):
            x = x.to(self.device, non_blocking=True)  # (m, 3, H, W)
            y = y.to(self.device, non_blocking=True)  # (m, H, W)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            sync = self.world == 1 or a == self.accum - 1
            ctx = self.net.no_sync() if not sync and hasattr(self.net, "no_sync") else contextlib.nullcontext()
            with ctx:
                with torch.autocast(self.device.type, dtype=dt, enabled=dt is not None):
                    out = self.net(x)
                loss, p = self.criterion(out, y)  # float32 means over this micro-batch's labelled pixels
                self.scaler.scale(loss * (counts[a] * self.world / n).float()).backward()
            aux = p["aux"] if p["aux"] is not None else torch.zeros((), device=loss.device)
            sums += torch.stack([loss.detach(), p["main"], aux]).double() * counts[a]
        return D.all_reduce_sum(sums) / n  # (3,) float64 on the device; read back only when logged

    def fit(self) -> RunResult:
        """Train from ``start_iter`` to ``stop_at`` (or ``iters``); validate and checkpoint on the way."""
        cfg = self.cfg
        end = min(cfg.stop_at or cfg.iters, cfg.iters)
        sampler = IterationBatchSampler(len(self.train_set), cfg.batch_size, self.micro, self.accum, self.rank,
                                        self.world, cfg.seed, self.start_iter, end)
        # own generator: creating the loader iterator must not draw from the global RNG (dropout's stream)
        loader = data_loader(self.train_set, batch_sampler=sampler, num_workers=cfg.workers,
                             pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
        batches = iter(loader)
        bar = tqdm(total=end - self.start_iter, disable=not (cfg.progress and self.main), mininterval=1,
                   desc="train", dynamic_ncols=True)
        self._window, self._t_window, self._t_start = [], time.perf_counter(), time.perf_counter()
        last_metrics, done = None, self.start_iter
        try:
            for it in range(self.start_iter, end):
                set_train_mode(self.model, cfg.freeze_bn)
                lrs = [g["lr"] for g in self.opt.param_groups]
                parts = self.step([next(batches) for _ in range(self.accum)])
                self.scaler.step(self.opt)
                self.scaler.update()
                self.opt.zero_grad(set_to_none=True)
                self.sched.step()
                done = it + 1
                saving = done == end or (cfg.ckpt_every > 0 and done % cfg.ckpt_every == 0)
                self._log_train(parts, lrs, done, end, bar)
                bar.update(1)
                if (saving or self._validates_at(done)) and self._window:
                    self._check_finite(torch.stack(self._window), done)  # never save non-finite weights
                if self._validates_at(done):
                    last_metrics = self._validate_and_save(done)
                elif saving:
                    self.save(done, last_metrics)
        finally:
            bar.close()
        return self._result(last_metrics, done)

    def _check_finite(self, window: torch.Tensor, last_iteration: int) -> None:
        """NonFiniteLossError if any iteration of ``window`` ((k, 3) losses ending at ``last_iteration``) is
        not finite; called before anything is logged or saved, so no checkpoint ever holds such weights."""
        finite = torch.isfinite(window).all(1).tolist()  # the one host sync per logged window
        if all(finite):
            return
        bad = finite.index(False)
        parts, iteration = window[bad].tolist(), last_iteration - len(finite) + 1 + bad
        self.opt.zero_grad(set_to_none=True)
        last = self.out_dir / "last.pt"
        kept = f"the last good checkpoint {last} is kept" if last.is_file() else "no checkpoint was written yet"
        raise D.mark_every_rank(NonFiniteLossError(
            f"loss is {parts[0]} at iteration {iteration} (main {parts[1]}, aux "
            f"{parts[2]}); stopping, {kept}. Try a lower --lr, --amp bf16 instead of fp16, "
            "or check the labels (values must be class ids or 255)"))

    def _log_train(self, parts: torch.Tensor, lrs: list[float], done: int, end: int, bar) -> None:
        """Keep the iteration's losses (on the device); every ``log_every`` iterations check them and write one
        record of their mean. A non-finite loss is thus caught at the next record or checkpoint, whichever
        comes first, and named with its iteration."""
        self._window.append(parts)
        if done % self.cfg.log_every and done != end:
            return
        window = torch.stack(self._window)  # (k, 3)
        self._check_finite(window, done)
        now = time.perf_counter()
        m = window.mean(0).cpu()
        rec = {"kind": "train", "iter": done, "loss": m[0].item(), "loss_main": m[1].item(),
               "loss_aux": m[2].item() if self.model.aux is not None else None,
               "lr": lrs[0], "lr_head": lrs[1],
               "images_per_s": len(self._window) * self.cfg.batch_size / max(now - self._t_window, 1e-9),
               "time_s": now - self._t_start}
        self.logger.log(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", img_s=f"{rec['images_per_s']:.1f}", refresh=False)
        self._window, self._t_window = [], now

    def _validates_at(self, done: int) -> bool:
        cfg = self.cfg
        return self.val_set is not None and (
            (cfg.val_every > 0 and done % cfg.val_every == 0) or (done == cfg.iters and cfg.val_every >= 0))

    def _validate_and_save(self, done: int) -> dict:
        metrics = self.validate()
        best = metrics["miou"] is not None and metrics["miou"] > self.best_miou
        if best:
            self.best_miou, self.best_metrics = metrics["miou"], metrics
        self.logger.log({"kind": "val", "iter": done, **{k: v for k, v in metrics.items() if not isinstance(v, list)},
                         "iou": metrics["iou"]})
        self.save(done, metrics, best=best)
        self._t_window = time.perf_counter()  # validation time is not training throughput
        return metrics

    def _result(self, last_metrics: dict | None, done: int) -> RunResult:
        best = self.out_dir / "best.pt"
        return RunResult(
            config=self.cfg, final=last_metrics or {}, best_miou=self.best_miou if self.best_miou >= 0 else None,
            best=self.best_metrics, iterations=done, train_time_s=time.perf_counter() - self._t_start,
            history=self.logger.history, out_dir=str(self.out_dir), metrics_file=str(self.logger.path),
            checkpoints={"last": str(self.out_dir / "last.pt"), "best": str(best) if best.is_file() else None},
            class_names=self.class_names, world_size=self.world)

    def close(self, barrier: bool = False) -> None:
        """Close the log and this trainer's process group; ``barrier`` (after a successful run) first waits for every
        rank, so none tears its connections down while a peer finishes the last collective (a gloo peer aborts)."""
        if getattr(self, "logger", None) is not None:
            self.logger.close()
        if self.owns_group:
            if barrier:
                D.barrier()
            D.cleanup()


def validate(model: nn.Module, dataset, num_classes: int, cfg: TrainConfig, device) -> dict:
    """mIoU / mAcc / pixel accuracy (§5.2) with ``pspnet_lite.inference.predict`` and the package's
    ConfusionMatrix; each rank scores every W-th image and the matrices are all-reduced."""
    protocol = val_protocol(cfg.val_protocol, cfg.crop_size, cfg.model.output_stride)
    rank, world = D.get_rank(), D.get_world_size()
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world))
    loader = data_loader(shard, batch_size=cfg.val_batch_size, num_workers=min(cfg.workers, 2),
                         generator=torch.Generator())  # leaves the global RNG alone
    cm = ConfusionMatrix(num_classes, device=device)
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    was_training = model.training
    model.eval()
    fixed = getattr(protocol, "mode", "whole") == "slide"  # windows of one size; whole images come in many
    with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=dt, enabled=dt is not None), \
            cudnn_benchmark(fixed and torch.backends.cudnn.benchmark):
        for x, y in loader:
            x = x.to(device)  # (n, 3, H, W)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            pred = predict(model, x, num_classes=num_classes, protocol=protocol)  # (n, H, W)
            cm.update(pred.to(device), y.to(device))
    model.train(was_training)
    scores = cm.all_reduce().compute()
    out = scores.as_dict()
    out["protocol"] = protocol.name if hasattr(protocol, "name") else cfg.val_protocol
    return json_safe(out)


def val_protocol(name: str, crop_size: int, output_stride: int = 8):
    """An inference Protocol by name (``PROTOCOLS``) with the training crop as its window, or ``"whole"``; inputs
    padded to ``8k + 1`` when the training crop is such a size (:func:`~pspnet_lite.inference.aligned_for`)."""
    align = aligned_for(crop_size, output_stride)
    if name == "whole":
        return Protocol(mode="whole", crop_size=crop_size, align=align)
    if name not in PROTOCOLS:
        raise ValueError(f"unknown val_protocol {name!r}; choose 'whole' or one of {sorted(PROTOCOLS)}")
    return dataclasses.replace(PROTOCOLS[name], crop_size=crop_size, align=align)


def train(cfg: TrainConfig) -> RunResult:
    """Run one training (in-process; usable from notebooks) and return its :class:`RunResult`.
    Raises :class:`NonFiniteLossError` on a NaN/inf loss."""
    trainer = Trainer(cfg)
    try:
        result = trainer.fit()
    except BaseException:
        trainer.close()  # no barrier: the other ranks may never reach it
        raise
    trainer.close(barrier=True)
    return result
