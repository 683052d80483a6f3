#!/usr/bin/env bash
# Two processes on the CPU train one model together (DDP over gloo), through the same entry
# point as a multi-GPU or multi-node job. Prints the evidence: each rank's share of the data
# and a digest of its final parameters, which must be identical on every rank.
#
# Usage: scripts/train_ddp_cpu.sh [WORK_DIR]        (default: a new temporary folder)
# On GPUs the same command runs one process per GPU (`--nproc_per_node N`, plus `--nnodes`
# and a rendezvous endpoint for several nodes), or `accelerate launch --multi_gpu
# --num_processes N -m course_lib train ...`. (`accelerate launch --cpu --num_processes 2`
# starts several CPU processes only through MPI, `--mpirun_hostfile`; torchrun needs nothing.)
set -euo pipefail

work_dir="${1:-$(mktemp -d)}"
mkdir -p "$work_dir"
data_dir="$work_dir/data"
run_dir="$work_dir/run"
python="${PYTHON:-python}"
# One intra-op thread per process: two processes already use both cores.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

"$python" -m course_lib simulate --patients 200 --seed 7 --out "$data_dir"
cat > "$work_dir/train.yaml" <<'YAML'
preset: tiny
model: {d_model: 32, encoder_layers: 1, decoder_layers: 1, ffn_dim: 64}
max_length: 48
batch_size: 8
max_steps: 12
log_every: 4
sample_every_epoch: 16
sample_max_new_tokens: 24
cpu: true
YAML

"$python" -m torch.distributed.run --standalone --nproc_per_node 2 \
  -m course_lib train --data "$data_dir" --out "$run_dir" --config "$work_dir/train.yaml" \
  --overwrite --no-progress

"$python" - "$run_dir" <<'PY'
import json, sys
from pathlib import Path

run = Path(sys.argv[1])
evidence = json.loads((run / "logs" / "distributed.json").read_text())
for rank in evidence["ranks"]:
    print(
        f"rank {rank['rank']}: {rank['samples']} patients in {rank['batches_per_epoch']} batches "
        f"per epoch; final parameters sha256 {rank['parameters_sha256']}"
    )
print(
    f"epoch 0: {evidence['epoch0_patients_covered']} of {evidence['train_patients']} training "
    f"patients covered, {evidence['epoch0_patients_on_several_ranks']} seen by two ranks (padding)"
)
digests = {rank["parameters_sha256"] for rank in evidence["ranks"]}
if len(digests) != 1:
    sys.exit(f"FAILED: the ranks ended with different parameters: {sorted(digests)}")
steps = [json.loads(line)["step"] for line in (run / "logs" / "train.jsonl").open()]
print(f"logged steps {steps} (written once, by rank 0)")
print(f"final parameters identical on every rank ({evidence['world_size']} processes)")
PY
