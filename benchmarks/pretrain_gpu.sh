#!/usr/bin/env bash
# The larger variant of benchmarks/pretrain.py (issue 7), for a GPU machine with many cores:
# full-width ResNet-18 encoders and the image diffusion recipe's own UNet, more steps than the
# 2-core CPU budget, and the independent runs of each stage in parallel on the one GPU.
#
#   bash benchmarks/pretrain_gpu.sh [SCRATCH [RESULTS]]     # defaults: the repo, benchmarks/results
#
# Stages: image stores (lift, stack and their multitask stores) -> 12 encoder pretraining runs
# (3 methods x task/multitask x lift/stack) -> linear probes -> downstream image diffusion runs
# (lift 10 and 50 demos, stack 50 then 10; scratch vs each encoder), JOBS at a time.
# Each finished run merges its row into RESULTS/pretrain.json; merge them into the repo's table
# with `python benchmarks/pretrain.py table --import RESULTS/pretrain.json`.
# Knobs (environment): PRE_STEPS, POLICY_STEPS, JOBS, WORKERS, PYTHON; a file SCRATCH/overrides.sh,
# if present, is sourced before the downstream stage (to resize a run already under way).
set -uo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${1:-$PWD}
RESULTS=${2:-benchmarks/results}
PRE_STEPS=${PRE_STEPS:-3000}
POLICY_STEPS=${POLICY_STEPS:-3000}
JOBS=${JOBS:-8}
WORKERS=${WORKERS:-2}
PY=${PYTHON:-python3}
mkdir -p "$RESULTS" "$SCRATCH/logs"
B=("$PY" benchmarks/pretrain.py --profile gpu --scratch "$SCRATCH" --results "$RESULTS")
stage() { echo "=== $(date -u +%H:%M:%S) $*"; }

stage stores
for task in lift stack; do
  "${B[@]}" stores --task "$task" --workers "$(nproc)" > "$SCRATCH/logs/stores_$task.log" 2>&1 || { echo "stores $task failed"; exit 1; }
done

stage "encoders ($PRE_STEPS steps)"
for task in lift stack; do for method in dynamo inverse_dynamics act_jepa; do for source in task multitask; do
  "${B[@]}" encoders --task "$task" --methods "$method" --source "$source" --steps "$PRE_STEPS" \
    > "$SCRATCH/logs/enc_${task}_${method}_${source}.log" 2>&1 &
done; done; done
wait

stage "probes (in the background)"
for task in lift stack; do "${B[@]}" probe --task "$task" > "$SCRATCH/logs/probe_$task.log" 2>&1 & done

[ -f "$SCRATCH/overrides.sh" ] && source "$SCRATCH/overrides.sh"
stage "downstream ($POLICY_STEPS policy steps, $JOBS at a time)"
runs() {  # task demos cap: scratch first, then multitask and task encoders
  for enc in scratch dynamo:multitask inverse_dynamics:multitask act_jepa:multitask dynamo:task \
             inverse_dynamics:task act_jepa:task; do echo "$1 $2 $3 ${enc%%:*} ${enc#*:}"; done
}
{ runs lift 10 200; runs lift 50 200; runs stack 50 200; runs stack 10 200; } |
  while read -r task demos cap enc source; do
    [ "$enc" = scratch ] && source=task
    echo "${B[*]} downstream --task $task --demos $demos --encoder $enc --source $source --policy-steps $POLICY_STEPS" \
         "--eval-max-steps $cap --workers $WORKERS > $SCRATCH/logs/down_${task}_${demos}_${enc}_${source}.log 2>&1"
  done | xargs -P "$JOBS" -I{} bash -c '{}'
wait
stage done
