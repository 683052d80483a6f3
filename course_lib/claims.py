"""Claim checks: a sentence a lesson says, checked against the numbers it rests on (lesson 00).

A lesson that writes "prompts cut sex violations below the no-prompt model" runs
``check_below("prompts cut sex violations", with_prompts, without_prompts, noise=se)`` next to
that sentence. The line it prints shows the claim, the numbers and the margin; when the claim
stops holding (new code, new data, another preset) the cell raises :class:`ClaimError`, so
nbval fails instead of the page quietly contradicting itself.
"""

from __future__ import annotations

import math


class ClaimError(AssertionError):
    """A lesson's claim that its own numbers no longer support."""


def _number(value: float) -> str:
    return f"{value:.4g}"


def _verdict(claim: str, holds: bool, detail: str) -> bool:
    line = f"check: {claim}: {detail} -> {'holds' if holds else 'DOES NOT HOLD'}"
    print(line)
    if not holds:
        raise ClaimError(line)
    return True


def _finite(claim: str, **values: float) -> None:
    bad = {name: value for name, value in values.items() if not math.isfinite(float(value))}
    if bad:
        raise ClaimError(f"check: {claim}: not a finite number: {bad}")


def check_below(claim: str, value: float, bound: float, *, noise: float = 0.0, k: float = 2.0):
    """``value < bound - k * noise``: smaller, by more than ``k`` times the noise."""
    _finite(claim, value=value, bound=bound, noise=noise)
    margin = k * noise
    detail = f"{_number(value)} < {_number(bound)}" + (
        f" - {k:g} x noise {_number(noise)}" if noise else ""
    )
    return _verdict(claim, value < bound - margin, detail)


def check_above(claim: str, value: float, bound: float, *, noise: float = 0.0, k: float = 2.0):
    """``value > bound + k * noise``: larger, by more than ``k`` times the noise."""
    _finite(claim, value=value, bound=bound, noise=noise)
    margin = k * noise
    detail = f"{_number(value)} > {_number(bound)}" + (
        f" + {k:g} x noise {_number(noise)}" if noise else ""
    )
    return _verdict(claim, value > bound + margin, detail)


def check_within(claim: str, value: float, target: float, tolerance: float):
    """``|value - target| <= tolerance``: the same, up to the stated tolerance."""
    _finite(claim, value=value, target=target, tolerance=tolerance)
    detail = f"|{_number(value)} - {_number(target)}| <= {_number(tolerance)}"
    return _verdict(claim, abs(value - target) <= tolerance, detail)


def check_true(claim: str, holds: bool, detail: str = ""):
    """A claim that is not a comparison of two numbers (say what was seen in ``detail``)."""
    return _verdict(claim, bool(holds), detail or str(bool(holds)))
