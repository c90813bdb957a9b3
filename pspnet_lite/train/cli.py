"""``python -m pspnet_lite.train``: the trainer's command line (one flag per config field, presets, ``--set``)."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..cli import ArgumentParser, add_field_flags, cli_errors, field_values
from ..data.context_scenes import ROLES
from ..metrics import SegmentationScores
from . import distributed as D
from .config import FIELDS, MODEL_FIELDS, RUN_FIELDS, TrainConfig, apply_overrides, check_config
from .experiments import write_json
from .presets import DEFAULT_PRESET, PAPER_PRESETS, describe_presets, get_preset, resolve_preset
from .runlog import CheckpointWriteError, NonFiniteLossError, RunResult
from .trainer import train


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """Parser with ``--preset``, ``--set key=value`` and one ``--field`` flag per config field."""
    p = ArgumentParser(
        "python -m pspnet_lite.train", add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train PSPNet (Zhao et al., CVPR 2017) with the paper's recipe: SGD + poly LR, head at 10x, "
                    "aux loss 0.4, global batch 16. Works on CPU, one GPU, or torchrun (DDP + SyncBN).",
        epilog="Precedence: TrainConfig defaults < --preset < --FIELD flags < --set. Examples:\n"
               "  python -m pspnet_lite.train --preset scenes-lite --out-dir runs/lite\n"
               "  torchrun --nproc_per_node 8 -m pspnet_lite.train --preset ade20k-pspnet50 --data-root /data/ade\n"
               "  python -m pspnet_lite.train --preset scenes-lite --resume auto --out-dir runs/lite")
    p.add_argument("--preset", default=None,
                   help=f"start from a named preset (see --list-presets), or 'paper' for the data set's paper "
                        f"preset; default: {DEFAULT_PRESET} (the CPU demo) on ContextScenes, the paper's preset on "
                        f"a real data set ({', '.join(f'{k}: {v}' for k, v in PAPER_PRESETS.items())})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, repeatable (e.g. --set bins=[1,2,3,6] --set lr=0.02)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="start from a config saved as JSON (a run's config.json) instead of a preset")
    p.add_argument("--result", default=None, metavar="FILE",
                   help="also write the run's result (final scores, history, checkpoints) to this JSON file")
    p.add_argument("--list-presets", action="store_true", help="print the preset names and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    add_field_flags(p.add_argument_group("run settings (each overrides the preset)"),
                    [f for name, f in RUN_FIELDS.items() if name != "preset"])
    add_field_flags(p.add_argument_group("architecture: PSPNetConfig fields (each overrides the preset)"),
                    MODEL_FIELDS.values(), defaults={"num_classes": None})
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Resolve defaults, preset, explicit flags and ``--set`` into a TrainConfig."""
    changes = field_values(args, [f for n, f in FIELDS.items() if n != "preset"])
    if getattr(args, "config", None):
        if args.preset:
            raise ValueError("give --config FILE or --preset NAME, not both")
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config file {str(path)!r} is not valid JSON ({e})") from None
        cfg = TrainConfig.from_dict(stored).replace(**changes)
    else:
        cfg = get_preset(resolve_preset(args.preset, changes.get("dataset")), **changes)
    return apply_overrides(cfg, args.overrides)


def summarize(result: RunResult) -> str:
    """Per-class IoU of the final validation; on ContextScenes with the failure mode (§3.1) of each class."""
    roles = ROLES if result.config.dataset == "context_scenes" else None
    return SegmentationScores.from_dict(result.final).table(result.class_names, roles=roles)


@contextlib.contextmanager
def reported_once():
    """An error every rank raised alike (:func:`~pspnet_lite.train.distributed.mark_every_rank`: the ranks disagree
    on the start iteration, a NaN loss, a checkpoint that cannot be written) is reported by rank 0 alone; the other
    ranks exit with the same status and say nothing, so torchrun's output holds one ``error:`` line, not W."""
    try:
        yield
    except BaseException as e:
        if not getattr(e, "every_rank", False) or D.process_rank() == 0:
            raise
        raise SystemExit(1 if isinstance(e, (NonFiniteLossError, CheckpointWriteError)) else 2) from None


def main(args: argparse.Namespace | None = None) -> RunResult | None:
    """Entry point of ``python -m pspnet_lite.train``. Bad settings exit with status 2 and one
    ``error:`` line (:func:`pspnet_lite.cli.cli_errors`); a NaN/inf loss or a checkpoint that cannot be written
    exits with status 1 and one ``error:`` line. Under torchrun only rank 0 prints the results and writes
    ``--result``."""
    if args is None:
        args = get_args_parser().parse_args()
    if args.list_presets:
        print(describe_presets())
        return None
    with cli_errors():
        cfg = config_from_args(args)
        if args.print_config:
            check_config(cfg, D.env_world_size())  # the validation a training run would do first
            print(json.dumps(cfg.to_dict(), indent=2))
            return None
        try:
            with reported_once():
                result = train(cfg)
        except (NonFiniteLossError, CheckpointWriteError) as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
    if D.process_rank() == 0:  # the process group is gone by now: get_rank() would answer 0 on every rank
        if args.result:
            write_json(result.to_dict(), args.result)
        if result.iou:
            print(summarize(result))
        msg = f"done: {result.iterations} iterations, checkpoints in {result.out_dir}"
        if result.miou is not None:
            msg += f"; val mIoU {100 * result.miou:.2f}"
        print(msg)
    return result
