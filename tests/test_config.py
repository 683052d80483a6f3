"""TrainConfig (course_lib.config): one field per setting, its flag built from it (issue 13)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from course_lib.config import (
    OPTIONAL_TERMS,
    TrainConfig,
    TrainConfigError,
    config_from_args,
    configure_parser,
)
from course_lib.losses import LOSS_TERMS
from course_lib.mimic import DEFAULT_UNKNOWN_CODES


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(list(argv))


def test_every_field_has_help_and_a_flag():
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    dests = {action.dest for action in parser._actions}
    for spec in dataclasses.fields(TrainConfig):
        assert spec.metadata.get("help"), f"{spec.name} has no help text"
        assert spec.name in dests, f"{spec.name} has no flag"


def test_flags_reach_the_config():
    args = parse(
        "--data", "somewhere", "--grad-clip", "0", "--patience", "0",
        "--loss-weights", "age=0.5,sex=0.25,cooc=0.1", "--model-options", "d_model=32,dropout=0",
        "--extra-losses", "cooc", "--split-fractions", "0.7,0.2,0.1",
        "--unknown-codes", "error", "--no-progress", "--cpu", "--scheduler", "cosine",
        "--group-by-length",
    )  # fmt: skip
    config = config_from_args(args)
    assert config.grad_clip is None and config.patience is None
    assert config.loss_weights == {"age": 0.5, "sex": 0.25, "cooc": 0.1}
    assert config.model == {"d_model": 32, "dropout": 0}
    assert config.extra_losses == ["cooc"] and config.split_fractions == [0.7, 0.2, 0.1]
    assert config.unknown_codes == "error" and config.progress is False and config.cpu is True
    assert config.scheduler == "cosine" and config.group_by_length is True
    untouched = config_from_args(parse("--data", "x"))
    assert untouched.group_by_length is False  # one-length batches bias the record length
    assert untouched.unknown_codes == DEFAULT_UNKNOWN_CODES == "skip"  # real MIMIC-III loads
    assert untouched.progress is True


def test_unparsable_flag_values_name_the_flag():
    with pytest.raises(TrainConfigError, match="--split-fractions"):
        config_from_args(parse("--split-fractions", "a,b,c"))
    with pytest.raises(TrainConfigError, match="--model-options"):
        config_from_args(parse("--model-options", "d_model"))


def test_unknown_codes_must_be_a_choice():
    with pytest.raises(TrainConfigError, match="unknown_codes='maybe'"):
        TrainConfig(unknown_codes="maybe").validate()


def test_loss_terms_come_from_the_registry():
    core = [n for n, t in LOSS_TERMS.items() if not t.optional]
    assert TrainConfig(extra_losses=[]).terms == core
    # issue 11's measured winner: the log-hinge validity term is on by default
    assert TrainConfig().terms == [*core, "validity_log"]
    assert TrainConfig().loss_weights["validity_log"] == 1.0
    for term in OPTIONAL_TERMS:
        config = TrainConfig(extra_losses=[term], weighting="dwa", loss_weights={})
        config.validate()
        assert config.terms[-1] == term
    with pytest.raises(TrainConfigError, match="extra_losses"):
        TrainConfig(extra_losses=["lm"]).validate()


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(epochs=3, unknown_codes="skip", model={"d_model": 32})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert TrainConfig.from_yaml(path) == config
    path.write_text("- 1\n- 2\n")
    with pytest.raises(TrainConfigError, match="mapping"):
        TrainConfig.from_yaml(path)
