"""``python -m course_lib heads train|evaluate|list`` (lesson 11).

``train`` extracts (or reads cached) features of a PromptBart run for a cohort folder, trains
the chosen heads on its OUTCOMES.csv, evaluates them on the test split against their trivial
baselines and saves one version folder per head. ``evaluate`` re-scores saved heads on a
cohort; ``list`` shows every saved version and flags the untrained ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from course_lib.heads.modules import HEAD_NAMES, head_spec

COMMAND = "course_lib heads"


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
    train.add_argument("--data", required=True, type=Path, help="cohort folder with OUTCOMES.csv")
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
    evaluate.add_argument("--run", required=True, type=Path)
    evaluate.add_argument("--data", required=True, type=Path)
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


def run_cli(args: argparse.Namespace) -> int:
    from course_lib.heads.storage import HeadStorageError
    from course_lib.heads.targets import LabelsFileError
    from course_lib.mimic import MimicFormatError

    try:
        if args.heads_command == "list":
            return _list(args)
        if args.heads_command == "train":
            return _train(args)
        return _evaluate(args)
    except (LabelsFileError, HeadStorageError, MimicFormatError, FileNotFoundError) as error:
        print(f"{COMMAND} {args.heads_command}: error: {error}", file=sys.stderr)
        return 2


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
def _load(run: Path, data: Path, heads: list[str], cache_dir: Path, kind: str):
    from course_lib.heads.features import cached_features
    from course_lib.heads.targets import build_targets, read_outcomes
    from course_lib.mimic import load_mimic
    from course_lib.training import load_run

    outcomes = read_outcomes(data, heads)  # bad labels fail before the slow steps
    model, _, normalizer, config = load_run(run)
    cohort = load_mimic(data, unknown_codes="skip")
    features = cached_features(
        model, cohort, normalizer, cache_dir, kind=kind, max_length=config.max_length
    )
    targets = build_targets(outcomes, features.subject_ids)
    return model, cohort, features, targets


def _split(kind: str, cohort, subject_ids, run: Path, seed: int):
    from course_lib.heads.splits import patient_split, temporal_split

    if kind == "temporal":
        return temporal_split(cohort, subject_ids)
    return patient_split(subject_ids, run_dir=run, seed=seed)


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
def _train(args) -> int:
    from course_lib.heads.metrics import reliability_diagram
    from course_lib.heads.storage import save_head
    from course_lib.heads.train import FitConfig, train_heads

    for flag in ("epochs", "patience", "batch_size"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"{COMMAND} train: error: --{flag.replace('_', '-')} must be >= 1")
    cache_dir = args.cache_dir or args.out / "features"
    model, cohort, features, targets = _load(
        args.run, args.data, args.heads, cache_dir, args.feature_kind
    )
    print(
        f"features: {args.feature_kind} [{len(features.subject_ids)} x {features.input_size}] "
        f"({'read from' if features.from_cache else 'written to'} {features.cache_path})"
    )
    split = _split(args.split, cohort, features.subject_ids, args.run, args.seed)
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
        targets,
        split,
        args.heads,
        joint=args.joint,
        weighting=args.weighting,
        config=config,
    )
    now = datetime.now()
    versions: dict[str, str] = {}
    order = [name for name in HEAD_NAMES if name in args.heads]  # binary before confidence
    with tempfile.TemporaryDirectory() as scratch:
        for name in order:
            figure = reliability_diagram(
                result.curves[name],
                Path(scratch) / f"{name}.png",
                f"{name} head, {split.kind} split, test",
            )
            head_config = {
                "description": head_spec(name).description,
                "feature_kind": args.feature_kind,
                "feature_key": features.key,
                "d_model": model.config.d_model,
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
                "horizons_days": list(targets.horizons_days),
            }
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
    print(_table(result.metrics, versions))
    if args.compare:
        other = train_heads(
            features.features,
            targets,
            split,
            args.heads,
            joint=not args.joint,
            weighting=args.weighting,
            config=config,
        )
        comparison = {result.mode: result.metrics, other.mode: other.metrics}
        path = args.out / f"comparison_{now:%Y%m%d_%H%M%S}.json"
        from course_lib.heads.storage import json_text
        from course_lib.training import atomic_write_text

        atomic_write_text(path, json_text(comparison))
        print(f"\n{other.mode} training, for comparison (not saved as heads):")
        print(_table(other.metrics))
        print(f"comparison written to {path}")
    print(f"saved {len(versions)} head version(s) under {args.out}")
    return 0


# --------------------------------------------------------------------------------- evaluate
def _evaluate(args) -> int:
    import numpy as np
    import torch

    from course_lib.heads.features import cached_features, feature_size
    from course_lib.heads.metrics import reliability_diagram
    from course_lib.heads.storage import json_text, list_heads, load_head, resolve_version
    from course_lib.heads.targets import build_targets, read_outcomes
    from course_lib.heads.train import _binary_correct, evaluate_head
    from course_lib.mimic import load_mimic
    from course_lib.training import atomic_write_text, load_run

    if args.version:
        path = resolve_version(args.heads_dir, "", args.version)
        chosen = {json.loads((path / "config.json").read_text())["head"]: args.version}
    else:
        chosen = {row.head: row.version for row in list_heads(args.heads_dir)}  # latest wins
    if not chosen:
        print(f"{COMMAND} evaluate: error: no head versions in {args.heads_dir}", file=sys.stderr)
        return 2
    outcomes = read_outcomes(args.data, list(chosen))
    model, _, normalizer, run_config = load_run(args.run)
    stored = {}
    for name, version in chosen.items():
        config = json.loads((args.heads_dir / version / "config.json").read_text())
        size = feature_size(model, config.get("feature_kind", "decoder_end"))
        stored[name] = load_head(args.heads_dir, name, version, expected_input_size=size)
    binary = stored.get("binary")
    if "confidence" in stored and binary is None:
        binary = load_head(
            args.heads_dir, "binary", stored["confidence"].config.get("binary_version")
        )
    cohort = load_mimic(args.data, unknown_codes="skip")
    cache_dir = args.cache_dir or args.heads_dir / "features"
    features_by_kind = {}
    metrics, versions = {}, {}
    for name in [n for n in HEAD_NAMES if n in stored]:
        item = stored[name]
        kind = item.config.get("feature_kind", "decoder_end")
        if kind not in features_by_kind:
            features_by_kind[kind] = cached_features(
                model, cohort, normalizer, cache_dir, kind=kind, max_length=run_config.max_length
            )
        features = features_by_kind[kind]
        targets = build_targets(outcomes, features.subject_ids, item.config.get("horizons_days"))
        split_info = item.config.get("split", {})
        split = _split(
            split_info.get("kind", "patient"),
            cohort,
            features.subject_ids,
            args.run,
            int(split_info.get("seed", 0)),
        )
        rows = split.test if args.subset == "test" else np.arange(len(features.subject_ids))
        if name == "confidence":
            # the target: is the binary head right on these patients?
            labelled = np.flatnonzero(~np.isnan(targets.binary.numpy()))
            confidence = torch.full((len(features.subject_ids),), float("nan"))
            confidence[labelled] = _binary_correct(
                binary.head, features.features, targets, labelled
            )
            targets.confidence = confidence
        metrics[name], curves = evaluate_head(
            name, item.head, features.features, targets, rows, split.train
        )
        versions[name] = item.version
        if args.figures:
            reliability_diagram(
                curves,
                args.figures / f"{item.version}_reliability.png",
                f"{name} head, {args.subset} patients",
            )
        if not item.head.trained:
            print(f"warning: {item.version} is UNTRAINED (random init): its metrics are noise")
    print(_table(metrics, versions))
    if args.json:
        report = {"subset": args.subset, "versions": versions, "metrics": metrics}
        atomic_write_text(args.json, json_text(report))
    return 0


if __name__ == "__main__":  # ``python -m course_lib.heads.cli ...`` works before registration
    _parser = argparse.ArgumentParser(prog=COMMAND)
    configure_parser(_parser)
    raise SystemExit(run_cli(_parser.parse_args()))
