"""Downstream prediction heads on frozen PromptBart features (lesson 11).

``targets`` (labels and censoring), ``splits`` (patient / temporal), ``features`` (extraction
and cache), ``modules`` (the heads and their losses), ``metrics`` (with trivial baselines),
``storage`` (versioned folders), ``train`` (one by one or jointly), ``workflow`` (the steps the
command chains: load a run's features and targets, pick a split, re-score saved heads), ``cli``
(``python -m course_lib heads train|evaluate|list``: flags and printing only).
"""

from course_lib.heads.features import (
    FEATURE_KINDS,
    FeatureSet,
    cached_features,
    extract_features,
    feature_size,
)
from course_lib.heads.metrics import expected_calibration_error, reliability_diagram
from course_lib.heads.modules import (
    HEAD_NAMES,
    PredictionHead,
    UntrainedHeadWarning,
    class_weights,
    make_head,
)
from course_lib.heads.splits import SplitIndex, patient_split, temporal_split
from course_lib.heads.storage import (
    HeadInputSizeError,
    HeadStorageError,
    list_heads,
    load_head,
    save_head,
)
from course_lib.heads.targets import HeadTargets, LabelsFileError, build_targets, read_outcomes
from course_lib.heads.train import (
    FitConfig,
    binary_correct,
    compare_joint_and_separate,
    evaluate_head,
    fit_head,
    fit_joint,
    train_heads,
)
from course_lib.heads.workflow import (
    HeadData,
    evaluate_saved_heads,
    load_head_data,
    load_saved_heads,
    make_split,
)

__all__ = [
    "FEATURE_KINDS",
    "HEAD_NAMES",
    "FeatureSet",
    "FitConfig",
    "HeadData",
    "HeadInputSizeError",
    "HeadStorageError",
    "HeadTargets",
    "LabelsFileError",
    "PredictionHead",
    "SplitIndex",
    "UntrainedHeadWarning",
    "binary_correct",
    "build_targets",
    "cached_features",
    "class_weights",
    "compare_joint_and_separate",
    "evaluate_head",
    "evaluate_saved_heads",
    "expected_calibration_error",
    "extract_features",
    "feature_size",
    "fit_head",
    "fit_joint",
    "list_heads",
    "load_head",
    "load_head_data",
    "load_saved_heads",
    "make_head",
    "make_split",
    "patient_split",
    "read_outcomes",
    "reliability_diagram",
    "save_head",
    "temporal_split",
    "train_heads",
]
