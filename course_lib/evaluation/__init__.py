"""Evaluation of synthetic cohorts against real ones, each metric with its real floor (lesson 09).

One module per metric family, all working on :class:`course_lib.cohort.Cohort` objects:
:mod:`.validity`, :mod:`.coherence`, :mod:`.diversity`, :mod:`.privacy`, :mod:`.utility`;
:mod:`.floor` makes the real-vs-real reference samples and :func:`evaluate_cohorts` runs them
all. Importing this package stays cheap for the CLI (no torch).
"""

from course_lib.evaluation.diversity import AlarmThresholds, mode_collapse_alarms
from course_lib.evaluation.suite import Evaluation, evaluate_cohorts

__all__ = ["AlarmThresholds", "Evaluation", "evaluate_cohorts", "mode_collapse_alarms"]
