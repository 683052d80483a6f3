"""``python -m course_lib heads train|evaluate|list`` (lesson 11).

``train`` extracts (or reads cached) features of a PromptBart run for a cohort folder, trains
the chosen heads on its OUTCOMES.csv, evaluates them on the test split against their trivial
baselines and saves one version folder per head. ``evaluate`` re-scores saved heads on a
cohort; ``list`` shows every saved version and flags the untrained ones.

Errors reach :func:`course_lib.cli.main` as one line: a bad flag is a
:class:`~course_lib.cli.UsageError` (exit code 2, checked before any work), a bad labels
file, cohort or head version an error of its own (exit code 1).
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import datetime
from pathlib import Path

from course_lib.cli import (
    UsageError,
    add_cohort_arguments,
    check_input_folder,
    check_output_path,
    unknown_codes_arg,
)
from course_lib.heads.modules import HEAD_NAMES, head_spec

COMMAND = "course_lib heads"
DATA_HELP = "cohort folder in the MIMIC-III layout, with OUTCOMES.csv"
RUN_WHAT = "a run folder written by train"


def _head_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in HEAD_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {','.join(HEAD_NAMES)}, got {text!r}"
        )
    return list(dict.fromkeys(names))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from course_lib.heads.features import FEATURE_KINDS
    from course_lib.heads.splits import SPLITS
    from course_lib.weighting import STRATEGIES

    commands = parser.add_subparsers(dest="heads_command", metavar="{train,evaluate,list}")
    commands.required = True
    train = commands.add_parser("train", help="train heads on frozen features of a run")
    train.add_argument("--run", required=True, type=Path, help="run folder written by train")
    add_cohort_arguments(train, help_text=DATA_HELP)
    train.add_argument("--out", required=True, type=Path, help="heads folder (versions go here)")
    train.add_argument(
        "--heads", type=_head_list, default=list(HEAD_NAMES), help="e.g. binary,risk"
    )
    train.add_argument("--split", choices=SPLITS, default="patient")
    train.add_argument("--joint", action="store_true", help="train all heads jointly")
    train.add_argument("--compare", action="store_true", help="also train the other way; compare")
    train.add_argument("--weighting", choices=sorted(STRATEGIES), default="uncertainty")
    train.add_argument("--feature-kind", choices=FEATURE_KINDS, default="decoder_end")
    train.add_argument("--cache-dir", type=Path, help="feature cache (default OUT/features)")
    train.add_argument("--epochs", type=int, default=200)
    train.add_argument("--patience", type=int, default=10)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--batch-size", type=int, default=256)
    train.add_argument("--seed", type=int, default=0)

    evaluate = commands.add_parser("evaluate", help="score saved heads on a cohort")
    evaluate.add_argument("--run", required=True, type=Path, help="run folder written by train")
    add_cohort_arguments(evaluate, help_text=DATA_HELP)
    evaluate.add_argument("--heads-dir", required=True, type=Path)
    evaluate.add_argument("--version", help="one version folder name (default: latest of each)")
    evaluate.add_argument(
        "--subset",
        choices=("test", "all"),
        default="test",
        help="the saved split's test patients (default) or every patient of --data",
    )
    evaluate.add_argument(
        "--cache-dir", type=Path, help="feature cache (default HEADS_DIR/features)"
    )
    evaluate.add_argument("--figures", type=Path, help="folder for reliability diagrams (PNG)")
    evaluate.add_argument("--json", type=Path, help="write the metrics to this JSON file")

    listing = commands.add_parser("list", help="list saved head versions")
    listing.add_argument("--heads-dir", required=True, type=Path)


def _check_arguments(args: argparse.Namespace) -> None:
    """Every flag checked before any work: a :class:`UsageError` (exit code 2) naming it."""
    if args.heads_command == "list":
        return
    check_input_folder(args.run, "--run", RUN_WHAT)
    check_input_folder(args.data, "--data")
    if args.heads_command == "train":
        for flag in ("epochs", "patience", "batch_size"):
            if getattr(args, flag) < 1:
                name = f"--{flag.replace('_', '-')}"
                raise UsageError(f"{name} {getattr(args, flag)}: expected an integer >= 1")
        if not args.lr > 0:
            raise UsageError(f"--lr {args.lr}: expected a positive learning rate such as 1e-3")
        check_output_path(args.out, "--out", allow_nonempty=True)  # versions accumulate
    else:
        heads_dir = check_input_folder(args.heads_dir, "--heads-dir", "a folder of saved heads")
        if args.version and not (heads_dir / args.version / "config.json").is_file():
            raise UsageError(
                f"--version {args.version}: no such head version in {heads_dir} (expected a "
                f"folder with config.json; `{COMMAND} list --heads-dir {heads_dir}` shows them)"
            )
        if args.figures is not None:
            check_output_path(args.figures, "--figures", allow_nonempty=True)
        if args.json is not None:
            check_output_path(args.json, "--json", kind="file", overwrite=True)
    if args.cache_dir is not None:
        check_output_path(args.cache_dir, "--cache-dir", allow_nonempty=True)


def run_cli(args: argparse.Namespace) -> int:
    """Check the flags, then run the sub-command; errors reach ``course_lib.cli.main``."""
    _check_arguments(args)
    if args.heads_command == "list":
        return _list(args)
    if args.heads_command == "train":
        return _train(args)
    return _evaluate(args)


# ------------------------------------------------------------------------------------ list
def _list(args) -> int:
    from course_lib.heads.storage import list_heads

    rows = list_heads(args.heads_dir)
    if not rows:
        print(f"no head versions in {args.heads_dir}")
        return 0
    print(f"{'version':<32} {'head':<11} {'state':<10} {'created':<20} summary")
    for row in rows:
        state = "trained" if row.trained else "UNTRAINED"
        print(f"{row.version:<32} {row.head:<11} {state:<10} {row.created:<20} {row.summary}")
    untrained = [row.version for row in rows if not row.trained]
    if untrained:
        print(f"warning: {len(untrained)} untrained (random-init) head(s): {', '.join(untrained)}")
    return 0


# ------------------------------------------------------------------------------- shared
def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _table(metrics: dict[str, dict], versions: dict[str, str] | None = None) -> str:
    lines = [
        f"{'head':<11} {'AUROC (base)':<15} {'macro-F1 (base)':<16} {'ECE (base)':<15} "
        f"{'Brier (base)':<15} version"
    ]
    for name, m in metrics.items():
        b = m.get("baseline", {})

        def pair(key, m=m, b=b):
            return f"{_fmt(m.get(key))} ({_fmt(b.get(key))})" if key in m else "-"

        lines.append(
            f"{name:<11} {pair('auroc'):<15} {pair('macro_f1'):<16} {pair('ece'):<15} "
            f"{pair('brier'):<15} {(versions or {}).get(name, '')}"
        )
        for horizon, hm in m.get("per_horizon", {}).items():
            hb = hm["baseline"]
            lines.append(
                f"  {horizon:<9} {_fmt(hm['auroc'])} (0.5)     {'-':<16} "
                f"{_fmt(hm['ece'])} ({_fmt(hb['ece'])})   {_fmt(hm['brier'])} ({_fmt(hb['brier'])})"
                f"   n={hm['n']}, censored before={hm['censored_before_horizon']}"
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ train
def _head_config(name: str, args, data, split, result, config) -> dict:
    """config.json of one trained head version."""
    return {
        "description": head_spec(name).description,
        "feature_kind": args.feature_kind,
        "feature_key": data.features.key,
        "d_model": data.model.config.d_model,
        "run": str(args.run.resolve()),
        "data": str(args.data.resolve()),
        "split": {
            "kind": split.kind,
            "source": split.source,
            "sizes": split.sizes(),
            "seed": args.seed,
        },
        "training_mode": result.mode,
        "weighting": args.weighting if args.joint else None,
        "fit": result.fits[name],
        "fit_config": config.to_dict(),
        "horizons_days": list(data.targets.horizons_days),
    }


def _save_versions(args, data, split, result, config, now: datetime) -> dict[str, str]:
    """Save every trained head with its reliability diagram; ``name -> version``."""
    from course_lib.evaluation.report import save_figure
    from course_lib.heads.metrics import reliability_diagram
    from course_lib.heads.storage import save_head

    versions: dict[str, str] = {}
    order = [name for name in HEAD_NAMES if name in args.heads]  # binary before confidence
    with tempfile.TemporaryDirectory() as scratch:
        for name in order:
            figure = save_figure(
                reliability_diagram(result.curves[name], f"{name} head, {split.kind} split, test"),
                Path(scratch) / f"{name}.png",
            )
            head_config = _head_config(name, args, data, split, result, config)
            if name == "confidence":
                head_config["binary_version"] = versions.get("binary")
            path = save_head(
                result.heads[name],
                args.out,
                name,
                config=head_config,
                metrics=result.metrics[name],
                extra_files={"reliability.png": figure},
                now=now,
            )
            versions[name] = path.name
    return versions


def _compare(args, data, split, result, config, now: datetime) -> None:
    """Train the other way (joint vs one by one) and write both metrics side by side."""
    from course_lib.files import atomic_write_text
    from course_lib.heads.storage import json_text
    from course_lib.heads.train import train_heads

    other = train_heads(
        data.features.features,
        data.targets,
        split,
        args.heads,
        joint=not args.joint,
        weighting=args.weighting,
        config=config,
    )
    comparison = {result.mode: result.metrics, other.mode: other.metrics}
    path = args.out / f"comparison_{now:%Y%m%d_%H%M%S}.json"
    atomic_write_text(path, json_text(comparison))
    print(f"\n{other.mode} training, for comparison (not saved as heads):")
    print(_table(other.metrics))
    print(f"comparison written to {path}")


def _train(args) -> int:
    from course_lib.heads.train import FitConfig, train_heads
    from course_lib.heads.workflow import load_head_data, make_split

    cache_dir = args.cache_dir or args.out / "features"
    data = load_head_data(
        args.run,
        args.data,
        args.heads,
        cache_dir,
        args.feature_kind,
        unknown_codes=unknown_codes_arg(args),
    )
    features = data.features
    print(
        f"features: {args.feature_kind} [{len(features.subject_ids)} x {features.input_size}] "
        f"({'read from' if features.from_cache else 'written to'} {features.cache_path})"
    )
    split = make_split(args.split, data.cohort, features.subject_ids, args.run, args.seed)
    print(f"split: {split.kind} {split.sizes()} ({split.source})")
    config = FitConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
    )
    result = train_heads(
        features.features,
        data.targets,
        split,
        args.heads,
        joint=args.joint,
        weighting=args.weighting,
        config=config,
    )
    now = datetime.now()
    versions = _save_versions(args, data, split, result, config, now)
    print(_table(result.metrics, versions))
    if args.compare:
        _compare(args, data, split, result, config, now)
    print(f"saved {len(versions)} head version(s) under {args.out}")
    return 0


# --------------------------------------------------------------------------------- evaluate
def _evaluate(args) -> int:
    from course_lib.evaluation.report import save_figure
    from course_lib.files import atomic_write_text
    from course_lib.heads.metrics import reliability_diagram
    from course_lib.heads.storage import json_text
    from course_lib.heads.workflow import (
        choose_versions,
        evaluate_saved_heads,
        feature_kind_of,
        load_head_data,
        load_saved_heads,
    )

    chosen = choose_versions(args.heads_dir, args.version)
    cache_dir = args.cache_dir or args.heads_dir / "features"
    first_kind = feature_kind_of(args.heads_dir, next(iter(chosen.values())))
    data = load_head_data(
        args.run,
        args.data,
        list(chosen),
        cache_dir,
        first_kind,
        unknown_codes=unknown_codes_arg(args),
    )
    stored, binary = load_saved_heads(args.heads_dir, chosen, data.model)
    scores = evaluate_saved_heads(stored, binary, data, args.run, cache_dir, args.subset)
    if args.figures:
        for name, version in scores.versions.items():
            title = f"{name} head, {args.subset} patients"
            path = args.figures / f"{version}_reliability.png"
            save_figure(reliability_diagram(scores.curves[name], title), path)
    for version in scores.untrained:
        print(f"warning: {version} is UNTRAINED (random init): its metrics are noise")
    print(_table(scores.metrics, scores.versions))
    if args.json:
        report = {"subset": args.subset, "versions": scores.versions, "metrics": scores.metrics}
        atomic_write_text(args.json, json_text(report))
    return 0


if __name__ == "__main__":  # ``python -m course_lib.heads.cli ...`` works before registration
    _parser = argparse.ArgumentParser(prog=COMMAND)
    configure_parser(_parser)
    raise SystemExit(run_cli(_parser.parse_args()))
