"""Downstream prediction heads on frozen PromptBart features (lesson 11).

``targets`` (labels and censoring), ``splits`` (patient / temporal), ``features`` (extraction
and cache), ``modules`` (the heads and their losses), ``metrics`` (with trivial baselines),
``storage`` (versioned folders), ``train`` (one by one or jointly), ``cli``
(``python -m course_lib heads train|evaluate|list``).
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
    compare_joint_and_separate,
    evaluate_head,
    fit_head,
    fit_joint,
    train_heads,
)

__all__ = [
    "FEATURE_KINDS",
    "HEAD_NAMES",
    "FeatureSet",
    "FitConfig",
    "HeadInputSizeError",
    "HeadStorageError",
    "HeadTargets",
    "LabelsFileError",
    "PredictionHead",
    "SplitIndex",
    "UntrainedHeadWarning",
    "build_targets",
    "cached_features",
    "class_weights",
    "compare_joint_and_separate",
    "evaluate_head",
    "expected_calibration_error",
    "extract_features",
    "feature_size",
    "fit_head",
    "fit_joint",
    "list_heads",
    "load_head",
    "make_head",
    "patient_split",
    "read_outcomes",
    "reliability_diagram",
    "save_head",
    "temporal_split",
    "train_heads",
]
