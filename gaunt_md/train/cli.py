"""``gaunt-md train`` and ``gaunt-md plot-training``; also ``python -m gaunt_md.train``.

Every :class:`~gaunt_md.train.trainer.TrainConfig` field is a flag (``--num-channels 64``);
``--config run.yaml`` (YAML or JSON, keys = field names, kebab or snake case) sets defaults that
explicit flags override.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from gaunt_md.train.config import TrainConfig

log = logging.getLogger(__name__)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.name in ("train_files", "e0_files", "radial_hidden"):
            kind = int if f.name == "radial_hidden" else str
            parser.add_argument(flag, nargs="+", type=kind, default=None, help=f"({f.name})")
        elif isinstance(default, bool):
            parser.add_argument(flag, type=_boolean, default=None, metavar="{true,false}", help=f"default: {default}")
        else:
            parser.add_argument(flag, type=type(default) if default is not None else str, default=None,
                                help=f"default: {default}")


def _boolean(text: str) -> bool:
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``plot-training`` subcommands to the ``gaunt-md`` parser."""
    p = subparsers.add_parser("train", help="train a Gaunt potential on extxyz data",
                              description="Train a Gaunt potential; resumable with --resume.")
    p.add_argument("--config", help="YAML/JSON file of training options (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for this process")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--plot", action="store_true", help="draw learning curves to <output-dir>/training.png at the end")
    _add_config_flags(p)
    p.set_defaults(func=run_train)

    q = subparsers.add_parser("plot-training", help="draw learning curves of a training run to PNG")
    q.add_argument("run_dir", help="output directory of a training run (holds log.csv)")
    q.add_argument("--out", default=None, help="PNG path (default <run_dir>/training.png)")
    q.set_defaults(func=run_plot)

    v = subparsers.add_parser("validate", help="metrics of a checkpoint on the validation split of a training config")
    v.add_argument("--config", required=True, help="the training config (YAML/JSON) that defines the data and split")
    v.add_argument("--checkpoint", required=True, help="checkpoint to evaluate (.safetensors)")
    v.add_argument("--split", choices=("valid", "train"), default="valid")
    v.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    v.set_defaults(func=run_validate)


def load_config_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text()
    if path.endswith(".json"):
        return json.loads(text)
    import yaml

    return yaml.safe_load(text) or {}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = load_config_file(args.config) if args.config else {}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    for f in dataclasses.fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    return TrainConfig.from_dict(values)


def run_train(args: argparse.Namespace) -> int:
    import torch

    from gaunt_md.train.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)  # this CLI process only
    config = config_from_args(args)
    last = train(config, resume=args.resume, progress=not args.quiet)
    print(json.dumps({k: v for k, v in last.items() if not k.startswith(("mlearn", "train_"))}, indent=1))
    if args.plot:
        from gaunt_md.train.plot import plot_training

        print("learning curves:", plot_training(config.output_dir))
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from gaunt_md.train.plot import plot_training

    print(plot_training(args.run_dir, args.out))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from gaunt_md.train.validate import metrics_table, validate_checkpoint

    config = TrainConfig.from_dict(load_config_file(args.config))
    metrics = validate_checkpoint(args.checkpoint, config, split=args.split)
    print(f"{args.split} split of {args.config}: {metrics['num_frames']} frames, checkpoint {args.checkpoint}")
    print(metrics_table(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gaunt_md.train")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gaunt_md.errors import GauntError
    from gaunt_md.runtime import keep_freed_memory

    keep_freed_memory()  # this process is the application (gaunt_md.runtime)
    try:
        return args.func(args)
    except GauntError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
