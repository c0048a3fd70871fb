#!/usr/bin/env bash
# The GPU smoke check of issue 15: on a GPU node, from a clone, one command:
#
#     bench/gpu_smoke.sh                 (RUN=runs/gpu-smoke STEPS=20 LIMIT=50 by default)
#
# 1. installs the GPU set (`make install GPU=1`: CUDA torch, vllm, DeepSpeed, FlashAttention when it installs);
# 2. trains the embedded SmolLM2-135M for STEPS optimizer steps with ZeRO-3 and packing, on 1 GPU and,
#    when the node has two or more, on 2 GPUs (torchrun), on the bundled GSM8K/MATH training questions;
# 3. evaluates the 1-GPU model with vLLM on every benchmark, LIMIT questions each;
# 4. prints tokens/s per GPU, model FLOPs utilisation and questions/s (bench/gpu_smoke_report.py), and writes
#    them to RUN/gpu_smoke.json and RUN/gpu_smoke.md (the table to paste into bench/RESULTS.md).
#
# On a CPU machine `GPU=0 STEPS=3 LIMIT=2 bench/gpu_smoke.sh` runs the same plumbing on two CPU ranks
# (numbers meaningless, MFU left out). Set PEAK_TFLOPS for a GPU the report does not know.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN:-runs/gpu-smoke}
STEPS=${STEPS:-20}
LIMIT=${LIMIT:-50}
GPU=${GPU:-1}
VENV=${VENV:-.venv}
WI="$VENV/bin/webinstruct"

echo "== install (GPU=$GPU)"
make -s install GPU="$GPU" VENV="$VENV"

if [ "$GPU" = 1 ]; then
  n_gpus=$(nvidia-smi -L | grep -c '^GPU ' || true)
  [ "$n_gpus" -ge 1 ] || { echo "gpu_smoke: no GPU visible (nvidia-smi -L lists none); GPU=0 runs the CPU plumbing" >&2; exit 2; }
  max_len=2048; micro=4; bf16=true
else
  n_gpus=2; max_len=256; micro=2; bf16=false   # two CPU ranks stand in for two GPUs
  export DS_ACCELERATOR=cpu OMP_NUM_THREADS=1
fi

mkdir -p "$RUN"
# Packed rows of the bundled training questions, repeated so STEPS steps never run out of rows.
cat > "$RUN/smoke.yaml" <<YAML
train:
  format: chat
  max_len: $max_len
  micro_batch: $micro
  epochs: 1000
  max_steps: $STEPS
  lrs: {smollm2-135m: 1.0e-5}
  warmup_ratio: 0.1
  zero_stage: 3
  bf16: $bf16
  packing: true
  gradient_checkpointing: false
  save_every: 0
  data:
    - {path: data/sample/augment/gsm8k_train.jsonl, weight: 200, name: gsm8k}
    - {path: data/sample/augment/math_train.jsonl, weight: 200, name: math}
YAML

runs=()
for world in 1 2; do
  [ "$world" -le "$n_gpus" ] || { echo "== train on $world GPUs: skipped (the node has $n_gpus)"; continue; }
  echo "== train SmolLM2-135M, $STEPS steps, ZeRO-3, packing, $world process(es)"
  # The same rows per process at any world size: the global batch grows with the world.
  "$WI" train --recipe "$RUN/smoke.yaml" --model smollm2-135m --run "$RUN/train-$world" --gpus "$world" \
      --global-batch $((micro * 2 * world)) --name smoke
  runs+=("$RUN/train-$world/train/smoke")
done

echo "== eval with vLLM, LIMIT=$LIMIT per benchmark"
"$WI" eval --model "$RUN/train-1/train/smoke/final" --run "$RUN" --backend vllm --limit "$LIMIT" --fresh true

"$VENV/bin/python" bench/gpu_smoke_report.py --eval "$RUN/eval" --out "$RUN" "${runs[@]}"
