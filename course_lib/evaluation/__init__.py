"""Evaluation of synthetic cohorts against real ones, each metric with its real floor (lesson 09).

One module per metric family, all working on :class:`course_lib.cohort.Cohort` objects:
:mod:`.fidelity` (detection, precision/recall), :mod:`.validity`, :mod:`.coherence`,
:mod:`.sequence`, :mod:`.diversity`, :mod:`.privacy`, :mod:`.utility`; :mod:`.floor` makes the
real-vs-real reference samples, :mod:`.uncertainty` the bootstrap intervals, and
:func:`evaluate_cohorts` runs them all. :mod:`.folders` loads and checks MIMIC-III folders,
:mod:`.report` writes the report and is the ``evaluate`` command, :mod:`.plots` draws the
figures, :mod:`.likelihood` scores patients with a PromptBart model. Importing this package
stays cheap for the CLI (no torch).
"""

from course_lib.evaluation.diversity import AlarmThresholds, mode_collapse_alarms
from course_lib.evaluation.privacy import privacy_alarms
from course_lib.evaluation.suite import Evaluation, evaluate_cohorts

__all__ = [
    "AlarmThresholds",
    "Evaluation",
    "evaluate_cohorts",
    "mode_collapse_alarms",
    "privacy_alarms",
]
