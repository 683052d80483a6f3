"""One prepared GPU run (about 9 minutes on one card): throughput of the ``base`` preset, every
recipe's reference run at the ``base`` preset, then every lesson under nbval on that preset.

    python -m benchmarks.gpu [--minutes 8.5] [--jobs 10] [--lesson-jobs 4] [--out DIR]
    python -m benchmarks.gpu --skip-throughput --recipes generator --lessons 08_generating_patients

Stage 1 prints training tokens/s and patients/s, achieved TFLOP/s and its share of the card's
bf16 dense peak (a table below; the estimate counts 6 x parameters x tokens for the matmuls
plus the attention scores), peak GPU memory, and ``generate()`` patients/s at batch 256 and
1,024 with 128 new tokens. Compare with the upstream PromptEHR figures for the bart-base shape
on 2 CPU cores: 2.47 patients/s training, 1.21 patients/s generation (the original project's
notes). Stage 2 trains every recipe's ``-base`` variant (``scripts/reference_runs.py --preset
base``, ``--jobs`` processes sharing the card) into ``reference_runs/``; beside it, stage 3
runs each lesson under ``pytest --nbval-lax`` with ``COURSE_PRESET=base``, ``--lesson-jobs`` at
a time, each once stage 2 has stored the runs it loads. Everything ends by ``--minutes``; what
did not finish is reported as such. Logs go to ``--out`` (default ``runs/gpu``).

On 2026-12-04 one H200 trained 28 of the 29 base runs in 8 minutes with ``--jobs 10`` (README).
The machine's own Python must have what the project needs: transformers >= 5.24 loads saved
weights only with its ``kernels`` package installed, and nbval needs the Jupyter kernel stack.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from course_lib.recipe_runs import REFERENCE_DIR
from course_lib.recipes import RECIPES

REFERENCE_DIR_PATH = Path(__file__).resolve().parent.parent / REFERENCE_DIR

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
    """Patients/s of the library's path (``sample_sequences``: KV cache, inverse-CDF draw), every
    row writing ``new_tokens`` tokens (end and padding suppressed, as in ``model_speed``)."""
    from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor

    from course_lib.generation import sample_sequences
    from course_lib.tokens import EOS_ID, PAD_ID

    model.eval()
    x_num = torch.randn(batch, 1, device="cuda")
    x_cat = torch.randint(0, 2, (batch, 1), device="cuda")
    full_length = LogitsProcessorList([SuppressTokensLogitsProcessor([EOS_ID, PAD_ID])])
    with torch.autocast("cuda", dtype=dtype):
        sample_sequences(model, x_num, x_cat, full_length, max_new_tokens=8)  # warm-up
        torch.cuda.synchronize()
        started = time.perf_counter()
        sample_sequences(model, x_num, x_cat, full_length, max_new_tokens=new_tokens)
        torch.cuda.synchronize()
    return batch / (time.perf_counter() - started)


def start_reference_runs(jobs: int, log: Path, recipes: list[str]) -> subprocess.Popen:
    """Stage 2 in the background: the recipes' ``-base`` variants, ``jobs`` processes."""
    command = [sys.executable, "scripts/reference_runs.py", *recipes, "--preset", "base"]
    command += ["--jobs", str(jobs), "--drop-work", "--keep-going", "--limit-mb", "1e6"]
    environment = os.environ | {"OMP_NUM_THREADS": "1"}
    with log.open("w") as stream:  # the child keeps its own handle
        return subprocess.Popen(
            command,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )


def finish_reference_runs(process: subprocess.Popen, log: Path, started: float) -> None:
    """Stop stage 2 if it is still running (the deadline) and print what it stored."""
    code = process.poll()
    if code is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        code = "stopped at the deadline"
    stored = [line for line in log.read_text().splitlines() if line.startswith("stored ")]
    for line in stored:
        print("  " + line)
    print(
        f"reference runs at base: {len(stored)} stored in "
        f"{time.perf_counter() - started:.0f} s (exit {code}; log {log})"
    )


def lesson_needs() -> dict[str, list[str]]:
    """The ``-base`` runs each lesson loads (it waits for them): its own recipes, and every
    other recipe whose name its source quotes."""
    needs: dict[str, list[str]] = {}
    for lesson in sorted(Path("lessons").glob("[0-9][0-9]_*.py")):
        source = lesson.read_text()
        needs[lesson.stem] = [
            recipe.for_preset("base").name
            for name, recipe in RECIPES.items()
            if recipe.lesson == lesson.stem or f'"{name}"' in source
        ]
    return needs


def time_lessons(
    jobs: int, deadline: float, log: Path, stems: list[str], producing=lambda: False
) -> None:
    """Stage 3: each lesson under nbval with the ``base`` preset, ``jobs`` at a time. A lesson
    starts once stage 2 has stored its recipes' runs; without them by 30 s before the deadline
    (or once ``producing()``, stage 2 still running, turns false) it is reported as not run:
    it would train them itself."""
    needs = lesson_needs()
    lessons = sorted(
        (Path("lessons") / f"{stem}.ipynb" for stem in stems),
        key=lambda p: (bool(needs.get(p.stem)), p.stem),
    )
    environment = os.environ | {
        "COURSE_PRESET": "base",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "2",
    }

    def run(lesson: Path) -> tuple[Path, float, float, str, str]:
        waiting = time.perf_counter()
        stored = [REFERENCE_DIR_PATH / name for name in needs.get(lesson.stem, [])]
        while (
            not all(p.is_dir() for p in stored)
            and producing()
            and time.perf_counter() < deadline - 30
        ):
            time.sleep(2)
        started = time.perf_counter()
        missing = [p.name for p in stored if not p.is_dir()]
        if missing:  # training them here would only run into the deadline
            return lesson, started - waiting, 0.0, f"not run: {len(missing)} runs not stored", ""
        command = [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider"]
        try:
            result = subprocess.run(
                [*command, str(lesson)],
                capture_output=True,
                text=True,
                env=environment,
                timeout=max(1.0, deadline - time.perf_counter()),
            )
            status = "passed" if result.returncode == 0 else "FAILED"
            output = result.stdout + result.stderr
        except subprocess.TimeoutExpired as stopped:
            status, output = "stopped at the deadline", str(stopped.stdout or "")
        return lesson, started - waiting, time.perf_counter() - started, status, output

    started = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool, log.open("w") as stream:
        for lesson, waited, taken, status, output in pool.map(run, lessons):
            print(f"lesson {lesson.stem:<24} waited {waited:5.0f} s, ran {taken:6.1f} s  {status}")
            stream.write(f"==== {lesson.stem}: {status} in {taken:.1f} s\n{output[-6000:]}\n")
            stream.flush()
    print(f"all lessons: {time.perf_counter() - started:.0f} s wall, {jobs} at a time (log {log})")


def throughput(batch: int, length: int, steps: int) -> None:
    """Stage 1: training and ``generate()`` throughput of a randomly initialised base model."""
    from benchmarks.model_speed import fake_vocabulary
    from course_lib.model import build_model
    from course_lib.presets import get_preset

    name = torch.cuda.get_device_name()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    torch.manual_seed(0)
    vocabulary = fake_vocabulary(7000)  # the notes' vocabulary had ~7,000 codes
    model = build_model(vocabulary, get_preset("base"), max_sequence_length=max(length, 160))
    model.to("cuda")
    params = sum(p.numel() for p in model.parameters())
    print(f"device: {name}; dtype {dtype}; base preset: {params:,} parameters, vocab 7,000")
    torch.cuda.reset_peak_memory_stats()
    train = training_throughput(model, batch, length, steps, dtype)
    peak_memory = torch.cuda.max_memory_allocated() / 2**30
    peak = peak_for(name)
    share = (
        f"{100 * train['tflops'] / peak:.1f}% of {peak:.0f} TFLOP/s bf16 peak"
        if peak
        else "peak unknown"
    )
    print(
        f"training: batch {batch} x {length} tokens, {train['s_per_step'] * 1000:.0f} ms/step, "
        f"{train['tokens_per_s']:,.0f} tokens/s, {train['patients_per_s']:,.1f} patients/s "
        f"({train['patients_per_s'] / UPSTREAM_CPU['train_patients_per_s']:,.0f}x upstream CPU), "
        f"{train['tflops']:.1f} TFLOP/s ({share}), "
        f"peak memory {peak_memory:.1f} GiB"
    )
    for generated in (256, 1024):
        rate = generation_throughput(model, generated, 128, dtype)
        print(
            f"generate(): batch {generated}, 128 new tokens: {rate:,.1f} patients/s "
            f"({rate / UPSTREAM_CPU['generate_patients_per_s']:,.0f}x upstream CPU)"
        )
    del model
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64, help="training batch (patients)")
    parser.add_argument("--length", type=int, default=256, help="tokens per patient")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=8.5, help="deadline for all stages")
    parser.add_argument("--jobs", type=int, default=10, help="reference-run processes")
    parser.add_argument("--lesson-jobs", type=int, default=4, help="lessons side by side")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu"), help="logs")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help="default: all")
    parser.add_argument("--lessons", nargs="+", default=None, help="stems; default: all")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-reference-runs", action="store_true")
    parser.add_argument("--skip-lessons", action="store_true")
    args = parser.parse_args()
    lessons = args.lessons or sorted(p.stem for p in Path("lessons").glob("[0-9][0-9]_*.ipynb"))
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU")
    deadline = time.perf_counter() + 60 * args.minutes
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not args.skip_throughput:
        try:
            throughput(args.batch, args.length, args.steps)
        except Exception as error:  # a broken stage must not cost the stages after it
            print(f"stage throughput failed: {error!r}")
        print(f"stage throughput: {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    refs = None
    if not args.skip_reference_runs:
        refs = start_reference_runs(args.jobs, args.out / "refs.log", args.recipes)
    if not args.skip_lessons:
        producing = (lambda: refs.poll() is None) if refs is not None else (lambda: False)
        time_lessons(args.lesson_jobs, deadline, args.out / "lessons.log", lessons, producing)
    if refs is not None:
        while refs.poll() is None and time.perf_counter() < deadline:
            time.sleep(2)
        finish_reference_runs(refs, args.out / "refs.log", started)


if __name__ == "__main__":
    main()
