#!/usr/bin/env bash
# Runs a config on the GPUs of this machine: one process for all of them (the default), or one
# process per GPU joined by a coordinator on localhost (the multi-host code path on one machine).
set -euo pipefail

SCRIPT_NAME=launch/gpu.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch/common.sh
source "$REPO/launch/common.sh"

usage() {
  cat <<'EOF'
Usage: launch/gpu.sh --config=CONFIG --workdir=WORKDIR [--processes=one|per_gpu] [--gpus=N]
                     [--port=8476] [--log_dir=~/ssl_jax_logs] [--dry_run] [-- MAIN_FLAGS]

Runs `python -m ssl_jax.main --config=CONFIG --workdir=WORKDIR MAIN_FLAGS` from the repository
root, with the CUDA build of JAX (pip install -r requirements.txt 'jax[cuda13]==<requirements.txt's
jax version>'). $PYTHON (default: python) is the interpreter.

  --processes=one      one process drives every visible GPU (the default); its output is this
                       terminal's; SIGTERM reaches it directly.
  --processes=per_gpu  one process per GPU, process i on GPU i (CUDA_VISIBLE_DEVICES), joined by
                       --coordinator_address=localhost:PORT --num_processes=N --process_id=i.
                       Each writes LOG_DIR/process_<i>.log. SIGTERM or Ctrl-C is passed to every
                       process (each saves its checkpoint and exits); if one fails, the others
                       are stopped and the failing status is returned.
  --gpus=N             how many processes for per_gpu (default: the GPUs that
                       CUDA_VISIBLE_DEVICES names, else those nvidia-smi lists).
  --port=PORT          the coordinator's port (per_gpu).
  --log_dir=DIR        where per_gpu writes its logs (default: ~/ssl_jax_logs).
  --dry_run            print the commands instead of running them (or DRY_RUN=1).

Example:
  launch/gpu.sh --config=configs/simclr_resnet50.py --workdir=/data/simclr \
      -- --config.dataset.data_dir=/data/tensorflow_datasets
EOF
}

# The GPUs this machine shows: CUDA_VISIBLE_DEVICES's entries when it is set, else nvidia-smi's.
visible_gpus() {
  if [[ -n ${CUDA_VISIBLE_DEVICES:-} ]]; then
    tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES"
  elif command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index --format=csv,noheader
  fi
}

# Starts process i of the per_gpu run in the background, or prints its command.
start_process() {
  local i=$1 gpu=$2
  # CUDA_VISIBLE_DEVICES gives the process its one GPU; JAX_LOCAL_DEVICE_IDS=0 keeps
  # jax.distributed from picking another one from a scheduler's variables (SLURM_LOCALID).
  local command=(env CUDA_VISIBLE_DEVICES="$gpu" JAX_LOCAL_DEVICE_IDS=0
    XLA_PYTHON_CLIENT_MEM_FRACTION="$MEM_FRACTION" "$PYTHON" -m ssl_jax.main "${MAIN_ARGS[@]}"
    --coordinator_address="localhost:$PORT" --num_processes="$GPUS" --process_id="$i")
  local log="$LOG_DIR/process_$i.log"
  if [[ $DRY_RUN == 1 ]]; then
    printf '%s > %s 2>&1 &\n' "$(quote_words "${command[@]}")" "$(quote_word "$log")"
  else
    "${command[@]}" >"$log" 2>&1 &
    RUNNING[$!]=$i
    echo "process $i on GPU $gpu: pid $!, log $log"
  fi
}

# Waits for every process; the first failure stops the others and becomes the exit status.
# It polls rather than `wait -n PIDS`: a process that exits before that call may already
# be reaped and noted by bash, and `wait -n` then waits for the others only (a hang when
# they run on). `wait PID` returns the saved status of an exited child.
supervise() {
  local status=0 pid rc
  while ((${#RUNNING[@]} > 0)); do
    for pid in "${!RUNNING[@]}"; do
      ! kill -0 "$pid" 2>/dev/null || continue
      wait "$pid" && rc=0 || rc=$?
      echo "process ${RUNNING[$pid]} exited with status $rc"
      unset "RUNNING[$pid]"
      if ((rc != 0 && status == 0)); then
        status=$rc
        if ((${#RUNNING[@]} > 0)); then
          echo "$SCRIPT_NAME: stopping the other processes" >&2
          kill -TERM "${!RUNNING[@]}" 2>/dev/null || true
        fi
      fi
    done
    ((${#RUNNING[@]} == 0)) || sleep 0.2 # a SIGTERM's trap runs when the sleep ends
  done
  return "$status"
}

CONFIG='' WORKDIR='' PROCESSES=one GPUS='' PORT=8476 LOG_DIR="$HOME/ssl_jax_logs" EXTRA=()
while [[ $# -gt 0 ]]; do
  arg=$1
  shift
  case $arg in
    -h | --help) usage; exit 0 ;;
    --) EXTRA=("$@"); break ;;
    --config=* | --config) CONFIG=$(flag_value "$arg") ;;
    --workdir=* | --workdir) WORKDIR=$(flag_value "$arg") ;;
    --processes=* | --processes) PROCESSES=$(flag_value "$arg") ;;
    --gpus=* | --gpus) GPUS=$(flag_value "$arg") ;;
    --port=* | --port) PORT=$(flag_value "$arg") ;;
    --log_dir=* | --log_dir) LOG_DIR=$(flag_value "$arg") ;;
    --dry_run) DRY_RUN=1 ;;
    *) usage_error "unknown flag '$arg' (flags for ssl_jax.main go after --)" ;;
  esac
done
check_dry_run
[[ -n $CONFIG ]] || usage_error "--config=CONFIG is needed (for example configs/rotation_resnet50.py)"
[[ -n $WORKDIR ]] || usage_error "--workdir=WORKDIR is needed (a local folder or gs://BUCKET/DIR)"
[[ $PROCESSES == one || $PROCESSES == per_gpu ]] ||
  usage_error "--processes=$PROCESSES: use one (one process, all GPUs) or per_gpu (one process per GPU)"
require_positive_int --port "$PORT"

PYTHON=${PYTHON:-python}
# JAX preallocates 75% of each GPU's memory by default; the input pipeline runs on the CPU.
MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
MAIN_ARGS=(--config="$CONFIG" --workdir="$WORKDIR" "${EXTRA[@]}")
cd "$REPO"

if [[ $PROCESSES == one ]]; then
  [[ -z $GPUS ]] || usage_error "--gpus is for --processes=per_gpu (one process uses every visible GPU; choose them with CUDA_VISIBLE_DEVICES)"
  command=(env XLA_PYTHON_CLIENT_MEM_FRACTION="$MEM_FRACTION" "$PYTHON" -m ssl_jax.main "${MAIN_ARGS[@]}")
  [[ $DRY_RUN == 1 ]] || exec "${command[@]}"
  run "${command[@]}"
  exit 0
fi

mapfile -t DEVICES < <(visible_gpus)
if [[ -z $GPUS ]]; then
  ((${#DEVICES[@]} > 0)) || usage_error "no GPU found (neither CUDA_VISIBLE_DEVICES nor nvidia-smi): give --gpus=N"
  GPUS=${#DEVICES[@]}
fi
require_positive_int --gpus "$GPUS"
if ((${#DEVICES[@]} == 0)); then
  mapfile -t DEVICES < <(seq 0 $((GPUS - 1))) # a dry run on a machine without GPUs
elif ((GPUS > ${#DEVICES[@]})); then
  usage_error "--gpus=$GPUS but only ${#DEVICES[@]} GPUs are visible (${DEVICES[*]})"
fi

declare -A RUNNING=() # pid -> process index
[[ $DRY_RUN == 1 ]] ||
  trap 'echo "$SCRIPT_NAME: passing the signal to every process" >&2; kill -TERM "${!RUNNING[@]}" 2>/dev/null || true' TERM INT
run mkdir -p "$LOG_DIR"
for ((i = 0; i < GPUS; i++)); do
  start_process "$i" "${DEVICES[$i]}"
done
[[ $DRY_RUN == 1 ]] || supervise
