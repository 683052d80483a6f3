"""One prepared GPU run (<= 8 min on one card): throughput of the ``base`` preset, then every
lesson under nbval with the GPU preset, each timed.

    python benchmarks/gpu.py [--batch 64] [--steps 30] [--skip-lessons]

Prints: training tokens/s and patients/s, achieved TFLOP/s and its share of the card's bf16
dense peak (a table below; the estimate counts 6 x parameters x tokens for the matmuls plus
the attention scores), peak GPU memory, and ``generate()`` patients/s at batch 256 and 1,024
with 128 new tokens. Compare with the upstream PromptEHR figures for the bart-base shape on
2 CPU cores: 2.47 patients/s training, 1.21 patients/s generation (the original project's notes).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

# bf16 dense tensor-core peaks (TFLOP/s), from the vendors' data sheets (SXM parts).
BF16_PEAK_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
    "T4": 65.0,
    "V100": 125.0,
}
UPSTREAM_CPU = {"train_patients_per_s": 2.47, "generate_patients_per_s": 1.21}


def peak_for(name: str) -> float | None:
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def training_throughput(model, batch: int, length: int, steps: int, dtype) -> dict[str, float]:
    vocab = model.config.vocab_size
    labels = torch.randint(7, vocab, (batch, length), device="cuda")
    x_num = torch.randn(batch, 1, device="cuda")
    x_cat = torch.randint(0, 2, (batch, 1), device="cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    model.train()
    for step in range(steps + 3):
        if step == 3:  # warm-up steps excluded
            torch.cuda.synchronize()
            started = time.perf_counter()
        with torch.autocast("cuda", dtype=dtype):
            loss = model(labels=labels, x_num=x_num, x_cat=x_cat).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    config = model.config
    params = sum(p.numel() for p in model.parameters())
    layers = config.encoder_layers + config.decoder_layers
    # 6 N T for weights; attention scores: 12 * layers * d_model * T^2 per sequence (fwd+bwd)
    flops = 6 * params * batch * length + 12 * layers * config.d_model * length**2 * batch
    return {
        "s_per_step": seconds,
        "tokens_per_s": batch * length / seconds,
        "patients_per_s": batch / seconds,
        "tflops": flops / seconds / 1e12,
    }


def generation_throughput(model, batch: int, new_tokens: int, dtype) -> float:
    from course_lib.tokens import BOS_ID, EOS_ID, PAD_ID

    model.eval()
    x_num = torch.randn(batch, 1, device="cuda")
    x_cat = torch.randint(0, 2, (batch, 1), device="cuda")
    kwargs = dict(
        x_num=x_num,
        x_cat=x_cat,
        do_sample=True,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
    )
    with torch.autocast("cuda", dtype=dtype):
        model.generate(**(kwargs | {"max_new_tokens": 8, "min_new_tokens": 8}))
        torch.cuda.synchronize()
        started = time.perf_counter()
        model.generate(**kwargs)
        torch.cuda.synchronize()
    return batch / (time.perf_counter() - started)


def time_lessons() -> None:
    lessons = sorted(Path("lessons").glob("[0-9][0-9]_*.ipynb"))
    total = 0.0
    for lesson in lessons:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--nbval-lax", str(lesson)],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        total += seconds
        status = "passed" if result.returncode == 0 else f"FAILED\n{result.stdout[-2000:]}"
        print(f"lesson {lesson.stem:<32} {seconds:7.1f} s  {status}")
    print(f"all lessons: {total:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64, help="training batch (patients)")
    parser.add_argument("--length", type=int, default=256, help="tokens per patient")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-lessons", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU")

    from benchmarks.model_speed import fake_vocabulary
    from course_lib.model import build_model
    from course_lib.presets import get_preset

    name = torch.cuda.get_device_name()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    torch.manual_seed(0)
    vocabulary = fake_vocabulary(7000)  # the notes' vocabulary had ~7,000 codes
    model = build_model(vocabulary, get_preset("base"), max_sequence_length=max(args.length, 160))
    model.to("cuda")
    params = sum(p.numel() for p in model.parameters())
    print(
        f"device: {name}; dtype {dtype}; base preset: {params:,} parameters, vocab {len(vocabulary):,}"
    )
    torch.cuda.reset_peak_memory_stats()
    train = training_throughput(model, args.batch, args.length, args.steps, dtype)
    peak_memory = torch.cuda.max_memory_allocated() / 2**30
    peak = peak_for(name)
    share = (
        f"{100 * train['tflops'] / peak:.1f}% of {peak:.0f} TFLOP/s bf16 peak"
        if peak
        else "peak unknown"
    )
    print(
        f"training: batch {args.batch} x {args.length} tokens, {train['s_per_step'] * 1000:.0f} ms/step, "
        f"{train['tokens_per_s']:,.0f} tokens/s, {train['patients_per_s']:,.1f} patients/s "
        f"({train['patients_per_s'] / UPSTREAM_CPU['train_patients_per_s']:,.0f}x upstream CPU), "
        f"{train['tflops']:.1f} TFLOP/s ({share}), peak memory {peak_memory:.1f} GiB"
    )
    for batch in (256, 1024):
        rate = generation_throughput(model, batch, 128, dtype)
        print(
            f"generate(): batch {batch}, 128 new tokens: {rate:,.1f} patients/s "
            f"({rate / UPSTREAM_CPU['generate_patients_per_s']:,.0f}x upstream CPU)"
        )
    if not args.skip_lessons:
        time_lessons()


if __name__ == "__main__":
    main()
