"""GPU checks: run on a GPU runner (.github/workflows/gpu.yml), skipped on CPU machines."""

from __future__ import annotations

import pytest
import torch

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.dataset import AgeNormalizer
from course_lib.generation import generate_patients
from course_lib.model import build_model
from course_lib.presets import get_preset
from course_lib.tokens import Vocabulary

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def vocabulary() -> Vocabulary:
    codes = ["4019", "25000", "41401", "4280", "42731", "5849", "486", "0389"]
    return Vocabulary.build(Cohort([Patient(1, "F", 60.0, [Visit(codes, 60.0)])]))


def test_mixed_precision_forward_backward_on_gpu():
    model = build_model(vocabulary(), get_preset("tiny")).cuda()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    labels = torch.randint(7, 15, (4, 10), device="cuda")
    x_num, x_cat = torch.randn(4, 1, device="cuda"), torch.randint(0, 2, (4, 1), device="cuda")
    with torch.autocast("cuda", dtype=dtype):
        out = model(labels=labels, x_num=x_num, x_cat=x_cat)
    out.loss.backward()
    assert torch.isfinite(out.loss).item()
    assert model.bart.shared.weight.grad is not None


def test_generate_patients_on_gpu_returns_cpu_side_cohort():
    vocab = vocabulary()
    model = build_model(vocab, get_preset("tiny")).cuda()
    cohort = generate_patients(
        model,
        vocab,
        AgeNormalizer(50.0, 20.0),
        [30.0, 70.0],
        ["F", "M"],
        max_new_tokens=20,
        validity=True,
    )
    assert len(cohort) == 2
