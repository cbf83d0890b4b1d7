#!/usr/bin/env bash
# Runs a config on every host of a Cloud TPU VM pod slice. Each host runs the same
# command; JAX finds the other hosts itself, and each host reads its own slice of the data.
#
#   launch/tpu_pod.sh TPU_NAME ZONE gs://BUCKET/workdir configs/rotation_resnet50.py:k=16
#
# Preemptible TPUs: SIGTERM saves a checkpoint; running the same command resumes.
set -euo pipefail
tpu=$1 zone=$2 workdir=$3 config=$4
shift 4
repo=$(cd "$(dirname "$0")/.." && pwd)
gcloud compute tpus tpu-vm scp --recurse --zone "$zone" --worker=all \
  "$repo/ssl_jax" "$repo/configs" "$repo/requirements.txt" "$tpu":~/ssl_jax/
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "
  set -e
  cd ~/ssl_jax && pip install -q -r requirements.txt 'jax[tpu]==0.10.2'
  python -m ssl_jax.main --config=$config --workdir=$workdir $*"
