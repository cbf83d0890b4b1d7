#!/usr/bin/env bash
# Runs a config on the GPUs of this machine (one process, all local GPUs in the mesh).
#
#   launch/gpu.sh /data/workdir configs/rotation_resnet50.py:dataset=imagenet2012 [--config.X=Y]
#
# Needs the CUDA build of JAX: pip install -r requirements.txt 'jax[cuda13]==0.10.2'.
set -euo pipefail
workdir=$1 config=$2
shift 2
XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9} \
  python -m ssl_jax.main --config="$config" --workdir="$workdir" "$@"
