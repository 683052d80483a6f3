"""``python -m course_lib train``: the command line of :func:`course_lib.training.train`.

Its flags are built from :class:`~course_lib.config.TrainConfig`'s fields
(:func:`course_lib.config.configure_parser`); it trains with the default end-of-epoch
callbacks (the sample check of :mod:`course_lib.sample_check`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from accelerate import PartialState

from course_lib.config import TrainConfigError, config_from_args, configure_parser
from course_lib.runs import RunError
from course_lib.sample_check import default_callbacks
from course_lib.training import NonFiniteLossError, train

__all__ = ["configure_parser", "run_cli"]


def run_cli(args: argparse.Namespace) -> int:
    """Exit code 2 for a bad setting or run folder, 1 when training hit a non-finite loss."""
    try:
        config = config_from_args(args)
        if config.data is None:
            raise TrainConfigError("--data is required (a folder in the MIMIC-III CSV layout)")
        if not Path(config.data).is_dir():
            raise TrainConfigError(f"--data {config.data}: no such folder")
        result = train(
            config,
            resume=args.resume,
            overwrite=args.overwrite,
            callbacks=default_callbacks(config),
        )
    except (TrainConfigError, RunError) as error:
        print(f"course_lib train: error: {error}", file=sys.stderr)
        return 2
    except NonFiniteLossError as error:
        print(f"course_lib train: {error}", file=sys.stderr)
        return 1
    if PartialState().is_main_process:
        best = "n/a" if result.best_val_lm is None else f"{result.best_val_lm:.4f}"
        print(
            f"trained {result.steps} steps ({result.stopped}); best validation LM loss {best} "
            f"at epoch {result.best_epoch}; run folder {result.run_dir}"
        )
        distributed = result.run_dir / "logs" / "distributed.json"
        if distributed.exists():
            print(distributed.read_text())
    return 0
