#!/usr/bin/env bash
# A Cloud TPU VM slice from queue to deletion: create, status, setup, run, logs, stop, delete.
# Every host of the slice runs the same command; JAX finds the other hosts itself on Cloud TPU.
# The commands for the workers are built here and expanded there, hence the single quotes:
# shellcheck disable=SC2016
set -euo pipefail

SCRIPT_NAME=launch/tpu.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=launch/common.sh
source "$REPO/launch/common.sh"

# Where each worker keeps things, under the ssh user's home ($HOME is expanded on the worker).
REMOTE_REPO='$HOME/ssl_jax_repo'
REMOTE_VENV='$HOME/ssl_jax_venv'
REMOTE_LOGS='$HOME/ssl_jax_logs'
REMOTE_LOG="$REMOTE_LOGS/run.log"
REMOTE_PID="$REMOTE_LOGS/run.pid"
REMOTE_ARCHIVE='$HOME/ssl_jax_code.tgz'
# JAX's "Run JAX code on TPU slices" guide installs jax[tpu] with this index of libtpu wheels.
LIBTPU_INDEX=https://storage.googleapis.com/jax-releases/libtpu_releases.html

usage() {
  cat <<'EOF'
Usage: launch/tpu.sh COMMAND --tpu=NAME --zone=ZONE [--project=PROJECT] [OPTIONS] [--dry_run]

Commands (in the order of a run):
  create  --accelerator_type=TYPE [--runtime_version=VERSION] [--spot]
          Queues the slice: gcloud compute tpus queued-resources create NAME --node-id=NAME.
          The runtime version defaults to the one the Cloud TPU docs name for JAX on that
          generation (v6e-*: v2-alpha-tpuv6e, v5p-*: v2-alpha-tpuv5, v5litepod-*:
          v2-alpha-tpuv5-lite, v2/v3/v4-*: tpu-ubuntu2204-base). --spot: a Spot TPU (cheaper,
          preemptible at any time; a preempted run resumes when `run` is given again).
  status  [--wait]   The queued resource's state (WAITING_FOR_RESOURCES, PROVISIONING, ACTIVE,
          FAILED, ...); --wait polls every 30 s until ACTIVE (exit 0) or FAILED/SUSPENDED (exit 1).
  setup   On every worker: Python 3.11 in ~/ssl_jax_venv (uv; the TPU images ship Python 3.10),
          requirements.txt plus jax[tpu] at requirements.txt's jax version, and this checkout's
          ssl_jax/, configs/ and requirements.txt in ~/ssl_jax_repo (replaced each time).
          Prints each host's local and global device count at the end.
  run     --config=CONFIG --workdir=gs://BUCKET/DIR [--data_dir=gs://BUCKET/tfds]
          [--libtpu_init_args='--xla_tpu_...=true ...'] [-- MAIN_FLAGS]
          Starts `python -m ssl_jax.main` on every worker, detached (setsid nohup: a dropped ssh
          does not stop it); each host appends to its own ~/ssl_jax_logs/run.log. The workdir
          must be on GCS (every host writes the same one, and it outlives the slice);
          --data_dir becomes --config.dataset.data_dir; --libtpu_init_args becomes the run's
          LIBTPU_INIT_ARGS (XLA's TPU flags; README.md, "XLA flags"). Flags after -- go to
          ssl_jax.main.
  logs    [--worker=all|N] [--lines=50] [--follow]   The last lines of each host's log,
          prefixed by the host name; --follow (one worker) keeps printing.
  stop    [--wait_seconds=300]   SIGTERM to the run on every worker (what a preemption sends):
          it saves a checkpoint and exits; `run` with the same flags resumes.
  delete  Deletes the queued resource and its TPU VMs (--force). The gs:// workdir stays.

Flags for every command: --tpu=NAME (the queued resource and its node), --zone=ZONE,
--project=PROJECT (else gcloud's default), --dry_run (or DRY_RUN=1): print every command
instead of running it.

Example (see README.md, "Running on a TPU pod"):
  launch/tpu.sh create --tpu=ssl --zone=us-central2-b --accelerator_type=v4-32 --spot
  launch/tpu.sh status --tpu=ssl --zone=us-central2-b --wait
  launch/tpu.sh setup  --tpu=ssl --zone=us-central2-b
  launch/tpu.sh run    --tpu=ssl --zone=us-central2-b --config=configs/rotation_revnet50.py \
      --workdir=gs://BUCKET/rotation_revnet50 --data_dir=gs://BUCKET/tensorflow_datasets
  launch/tpu.sh logs   --tpu=ssl --zone=us-central2-b
  launch/tpu.sh delete --tpu=ssl --zone=us-central2-b
EOF
}

# The TPU software version the Cloud TPU docs ("TPU software versions", PyTorch and JAX)
# name for a generation; fails for a type it does not know.
default_runtime_version() {
  case $1 in
    v6e-*) echo v2-alpha-tpuv6e ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-*) echo v2-alpha-tpuv5-lite ;;
    v2-* | v3-* | v4-*) echo tpu-ubuntu2204-base ;;
    *) return 1 ;;
  esac
}

# The jax version pinned in requirements.txt (jax[tpu] must match it).
pinned_jax_version() {
  local version
  version=$(sed -n 's/^jax==\([0-9][0-9.]*\).*/\1/p' "$REPO/requirements.txt")
  [[ -n $version ]] || { echo "$SCRIPT_NAME: no 'jax==X' line in requirements.txt" >&2; exit 1; }
  printf '%s' "$version"
}

# Joins a worker's commands into the one line gcloud's --command takes.
join_steps() {
  local joined
  printf -v joined '%s; ' "$@"
  printf '%s' "${joined%; }"
}

# A shell test, for a worker, that process $1 is alive: it exists and is not a zombie (an
# exited process whose parent has not collected it still answers kill -0).
remote_alive() {
  printf "grep -qs '^State:[[:space:]]*[^Z]' /proc/%s/status" "$1"
}

# A shell test, for a worker, that its run is still going.
remote_run_is_going() {
  remote_alive "\$(cat $REMOTE_PID 2>/dev/null)"
}

# The command every worker runs for `setup`.
setup_script() {
  local jax_version=$1
  local uv='$HOME/.local/bin/uv'
  local steps=(
    'set -euo pipefail'
    # Replacing the code under a running process would break its lazy imports.
    "if $(remote_run_is_going); then echo \"\$(hostname): a run is going; launch/tpu.sh stop first\" >&2; exit 1; fi"
    "rm -rf $REMOTE_REPO"
    "mkdir -p $REMOTE_REPO"
    "tar -xzf $REMOTE_ARCHIVE -C $REMOTE_REPO"
    'python3 -m pip install --user --quiet --upgrade uv'
    # uv downloads a standalone CPython 3.11 when the image has none.
    "test -x $REMOTE_VENV/bin/python || $uv venv --python 3.11 $REMOTE_VENV"
    "$uv pip install --python $REMOTE_VENV/bin/python -r $REMOTE_REPO/requirements.txt $(quote_word "jax[tpu]==$jax_version") -f $LIBTPU_INDEX"
    "$REMOTE_VENV/bin/python -c 'import jax, socket; print(socket.gethostname(), \"local devices:\", jax.local_device_count(), \"global:\", jax.device_count())'"
  )
  join_steps "${steps[@]}"
}

# The command every worker runs for `run`; the first argument is LIBTPU_INIT_ARGS (empty:
# libtpu's defaults), the others are ssl_jax.main's.
run_script() {
  local libtpu_init_args=$1 main_command logged
  shift
  main_command="$REMOTE_VENV/bin/python -m ssl_jax.main $(quote_words "$@")"
  logged=$(quote_words "$@")
  # The workers' ssh sessions do not carry the caller's environment: set it in the command,
  # and in the log's header line, which says what each run ran under.
  if [[ -n $libtpu_init_args ]]; then
    main_command="env LIBTPU_INIT_ARGS=$(quote_word "$libtpu_init_args") $main_command"
    logged="$(quote_word "LIBTPU_INIT_ARGS=$libtpu_init_args") $logged"
  fi
  local steps=(
    'set -euo pipefail'
    "mkdir -p $REMOTE_LOGS"
    "if $(remote_run_is_going); then echo \"\$(hostname): a run is going (pid \$(cat $REMOTE_PID)); launch/tpu.sh stop first\" >&2; exit 1; fi"
    "test -x $REMOTE_VENV/bin/python || { echo \"\$(hostname): no $REMOTE_VENV; run launch/tpu.sh setup first\" >&2; exit 1; }"
    "cd $REMOTE_REPO"
    "echo \"=== \$(date -u +%FT%TZ) \$(hostname):\" $logged >> $REMOTE_LOG"
    # setsid + nohup: the run leaves the ssh session, so a dropped connection does not stop it.
    "setsid nohup $main_command >> $REMOTE_LOG 2>&1 < /dev/null & echo \$! > $REMOTE_PID"
    "echo \"\$(hostname): started pid \$(cat $REMOTE_PID), log $REMOTE_LOG\""
  )
  join_steps "${steps[@]}"
}

# The command every worker runs for `logs`.
logs_script() {
  local lines=$1 follow=$2
  local missing="test -f $REMOTE_LOG || { echo \"\$(hostname): no $REMOTE_LOG yet; launch/tpu.sh run first\"; exit 1; }"
  if [[ $follow == 1 ]]; then
    printf '%s; tail -n %s -F %s' "$missing" "$lines" "$REMOTE_LOG"
  else
    printf '%s; tail -n %s %s | sed "s/^/$(hostname): /"' "$missing" "$lines" "$REMOTE_LOG"
  fi
}

# The command every worker runs for `stop`: SIGTERM, then wait for the checkpoint and exit.
stop_script() {
  local wait_seconds=$1
  local steps=(
    "if ! { $(remote_run_is_going); }; then echo \"\$(hostname): no run going\"; exit 0; fi"
    "pid=\$(cat $REMOTE_PID)"
    'kill -TERM "$pid"'
    "for i in \$(seq $wait_seconds); do $(remote_alive '$pid') || { echo \"\$(hostname): run \$pid stopped\"; exit 0; }; sleep 1; done"
    "echo \"\$(hostname): run \$pid still going after $wait_seconds s\" >&2"
    'exit 1'
  )
  join_steps "${steps[@]}"
}

# Polls the queued resource's state until ACTIVE (0) or a state it cannot leave (1).
wait_until_active() {
  local state
  while true; do
    state=$(gcloud compute tpus queued-resources describe "$TPU" "${GCLOUD_FLAGS[@]}" \
      --format='value(state.state)')
    echo "$(date -u +%FT%TZ) $TPU: $state"
    case $state in
      ACTIVE) return 0 ;;
      FAILED | SUSPENDING | SUSPENDED) return 1 ;;
    esac
    sleep 30
  done
}

# --- Arguments. ---
[[ $# -gt 0 ]] || { usage >&2; exit 2; }
case $1 in
  -h | --help) usage; exit 0 ;;
  create | status | setup | run | logs | stop | delete) COMMAND=$1; shift ;;
  *) usage_error "unknown command '$1': one of create, status, setup, run, logs, stop, delete" ;;
esac

TPU='' ZONE='' PROJECT='' ACCELERATOR_TYPE='' RUNTIME_VERSION='' SPOT=0 WAIT=0
CONFIG='' WORKDIR='' DATA_DIR='' LIBTPU_INIT_ARGS_VALUE='' WORKER=all LINES=50 FOLLOW=0 WAIT_SECONDS=300
MAIN_FLAGS=() GIVEN=()
while [[ $# -gt 0 ]]; do
  arg=$1
  shift
  case $arg in
    -h | --help) usage; exit 0 ;;
    --) MAIN_FLAGS=("$@"); GIVEN+=(--); break ;;
    --tpu=* | --tpu) TPU=$(flag_value "$arg") ;;
    --zone=* | --zone) ZONE=$(flag_value "$arg") ;;
    --project=* | --project) PROJECT=$(flag_value "$arg") ;;
    --accelerator_type=* | --accelerator_type) ACCELERATOR_TYPE=$(flag_value "$arg") ;;
    --runtime_version=* | --runtime_version) RUNTIME_VERSION=$(flag_value "$arg") ;;
    --spot) SPOT=1 ;;
    --wait) WAIT=1 ;;
    --config=* | --config) CONFIG=$(flag_value "$arg") ;;
    --workdir=* | --workdir) WORKDIR=$(flag_value "$arg") ;;
    --data_dir=* | --data_dir) DATA_DIR=$(flag_value "$arg") ;;
    --libtpu_init_args=* | --libtpu_init_args) LIBTPU_INIT_ARGS_VALUE=$(flag_value "$arg") ;;
    --worker=* | --worker) WORKER=$(flag_value "$arg") ;;
    --lines=* | --lines) LINES=$(flag_value "$arg") ;;
    --follow) FOLLOW=1 ;;
    --wait_seconds=* | --wait_seconds) WAIT_SECONDS=$(flag_value "$arg") ;;
    --dry_run) DRY_RUN=1 ;;
    *) usage_error "unknown flag '$arg' for $COMMAND" ;;
  esac
  [[ $arg == --dry_run ]] || GIVEN+=("${arg%%=*}")
done
check_dry_run

# Each command's own flags; the common ones are allowed everywhere.
case $COMMAND in
  create) ALLOWED='--accelerator_type --runtime_version --spot' ;;
  status) ALLOWED='--wait' ;;
  run) ALLOWED='--config --workdir --data_dir --libtpu_init_args --' ;;
  logs) ALLOWED='--worker --lines --follow' ;;
  stop) ALLOWED='--wait_seconds' ;;
  setup | delete) ALLOWED='' ;;
esac
for flag in "${GIVEN[@]}"; do
  case " --tpu --zone --project $ALLOWED " in
    *" $flag "*) ;;
    *) usage_error "$flag is not a flag of '$COMMAND' (its flags: --tpu --zone --project $ALLOWED)" ;;
  esac
done
[[ -n $TPU ]] || usage_error "$COMMAND needs --tpu=NAME (the name of the queued resource and its TPU)"
[[ -n $ZONE ]] || usage_error "$COMMAND needs --zone=ZONE (for example us-central2-b)"
GCLOUD_FLAGS=(--zone="$ZONE")
[[ -z $PROJECT ]] || GCLOUD_FLAGS+=(--project="$PROJECT")

# --- Commands. ---
case $COMMAND in
  create)
    [[ -n $ACCELERATOR_TYPE ]] ||
      usage_error "create needs --accelerator_type=TYPE (for example v4-32 or v5litepod-16)"
    if [[ -z $RUNTIME_VERSION ]]; then
      RUNTIME_VERSION=$(default_runtime_version "$ACCELERATOR_TYPE") ||
        usage_error "no default runtime version for '$ACCELERATOR_TYPE': give --runtime_version (https://cloud.google.com/tpu/docs/runtimes)"
    fi
    create=(gcloud compute tpus queued-resources create "$TPU" --node-id="$TPU"
      --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" "${GCLOUD_FLAGS[@]}")
    [[ $SPOT == 0 ]] || create+=(--spot)
    run "${create[@]}"
    [[ $DRY_RUN == 1 ]] || echo "Queued. launch/tpu.sh status --tpu=$TPU --zone=$ZONE --wait waits until it is ACTIVE."
    ;;
  status)
    describe=(gcloud compute tpus queued-resources describe "$TPU" "${GCLOUD_FLAGS[@]}"
      --format='value(state.state)')
    if [[ $DRY_RUN == 1 && $WAIT == 1 ]]; then
      run "${describe[@]}"
      echo '# repeated every 30 s until the state is ACTIVE (exit 0) or FAILED/SUSPENDED (exit 1)'
    elif [[ $WAIT == 1 ]]; then
      wait_until_active
    else
      run "${describe[@]}"
    fi
    ;;
  setup)
    archive="${TMPDIR:-/tmp}/ssl_jax_code.$$.tgz"
    [[ $DRY_RUN == 1 ]] || trap 'rm -f "$archive"' EXIT
    run tar -czf "$archive" -C "$REPO" --exclude=__pycache__ ssl_jax configs requirements.txt
    run gcloud compute tpus tpu-vm scp "$archive" "$TPU:ssl_jax_code.tgz" --worker=all "${GCLOUD_FLAGS[@]}"
    run gcloud compute tpus tpu-vm ssh "$TPU" --worker=all "${GCLOUD_FLAGS[@]}" \
      --command="$(setup_script "$(pinned_jax_version)")"
    ;;
  run)
    [[ -n $CONFIG ]] || usage_error "run needs --config=CONFIG (for example configs/rotation_revnet50.py)"
    [[ -n $WORKDIR ]] || usage_error "run needs --workdir=gs://BUCKET/DIR"
    [[ $WORKDIR == gs://?* ]] ||
      usage_error "--workdir=$WORKDIR is not on GCS: every host must write the same workdir and it must outlive the TPU; use --workdir=gs://BUCKET/DIR"
    [[ -z $DATA_DIR || $DATA_DIR == gs://?* ]] ||
      usage_error "--data_dir=$DATA_DIR is not on GCS: every host reads it; use --data_dir=gs://BUCKET/tensorflow_datasets"
    main_flags=(--config="$CONFIG" --workdir="$WORKDIR")
    [[ -z $DATA_DIR ]] || main_flags+=(--config.dataset.data_dir="$DATA_DIR")
    main_flags+=("${MAIN_FLAGS[@]}")
    run gcloud compute tpus tpu-vm ssh "$TPU" --worker=all "${GCLOUD_FLAGS[@]}" \
      --command="$(run_script "$LIBTPU_INIT_ARGS_VALUE" "${main_flags[@]}")"
    ;;
  logs)
    [[ $WORKER == all || $WORKER =~ ^[0-9]+$ ]] || usage_error "--worker=$WORKER: give all or a worker number (0, 1, ...)"
    require_positive_int --lines "$LINES"
    [[ $FOLLOW == 0 || $WORKER != all ]] || usage_error "--follow follows one host's log: add --worker=0 (or another worker)"
    run gcloud compute tpus tpu-vm ssh "$TPU" --worker="$WORKER" "${GCLOUD_FLAGS[@]}" \
      --command="$(logs_script "$LINES" "$FOLLOW")"
    ;;
  stop)
    require_positive_int --wait_seconds "$WAIT_SECONDS"
    run gcloud compute tpus tpu-vm ssh "$TPU" --worker=all "${GCLOUD_FLAGS[@]}" \
      --command="$(stop_script "$WAIT_SECONDS")"
    ;;
  delete)
    run gcloud compute tpus queued-resources delete "$TPU" "${GCLOUD_FLAGS[@]}" --force --quiet
    ;;
esac
