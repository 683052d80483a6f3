"""``python -m course_lib train``: the command line of :func:`course_lib.training.train`.

Its flags are built from :class:`~course_lib.config.TrainConfig`'s fields
(:func:`course_lib.config.configure_parser`); it trains with the default end-of-epoch
callbacks (the sample check of :mod:`course_lib.sample_check`).
"""

from __future__ import annotations

import argparse

from accelerate import PartialState

from course_lib.cli import check_input_folder, check_output_path
from course_lib.config import config_from_args, configure_parser
from course_lib.sample_check import default_callbacks
from course_lib.training import train

__all__ = ["configure_parser", "run_cli"]


def run_cli(args: argparse.Namespace) -> int:
    """Train from the flags; every path is checked before any work starts.

    Errors are left to :func:`course_lib.cli.main`, which makes them one line: exit code 2
    for a bad setting or path (``TrainConfigError``, ``UsageError``, ``ResumeError``), 1 for
    bad data, a damaged or locked run folder, or a non-finite loss.
    """
    config = config_from_args(args)
    check_input_folder(config.data, "--data")
    # --resume continues a non-empty run; --overwrite replaces one (swapped in when complete)
    check_output_path(config.out, "--out", overwrite=args.overwrite, allow_nonempty=args.resume)
    result = train(
        config, resume=args.resume, overwrite=args.overwrite, callbacks=default_callbacks(config)
    )
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
