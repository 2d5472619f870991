#!/usr/bin/env bash
# Trains on a Cloud TPU VM slice: creates the slice (or reuses it), copies this repository to every worker, installs
# requirements.txt + jax[tpu] there, and starts `python -m trainers.train` on all workers at once (a multi-host slice
# needs every host to run the same command; the trainer calls jax.distributed.initialize() itself on TPU VMs).
#
#   tools/launch_tpu.sh NAME CONFIG WORKDIR [trainer flags...]
#
#   ZONE=us-west4-a ACCELERATOR=v5litepod-16 tools/launch_tpu.sh pg-vqav2 configs/transfer/vqav2.py:res=224 \
#       gs://my-bucket/runs/vqav2 --config.total_epochs=3
#
# WORKDIR must be a gs:// path that every worker can write (checkpoints, metrics.jsonl, TensorBoard events).
# Checkpoints, data and model_init files must also be reachable from every worker (gs:// paths or the same local path).
# Rerunning the script with the same NAME and WORKDIR resumes from the latest checkpoint (a preempted spot slice is
# recreated first). Logs: gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=0 --command 'tail -f ~/train.log'
#
# Environment (defaults in brackets):
#   ZONE [gcloud's compute/zone]   PROJECT [gcloud's project]   ACCELERATOR [v5litepod-8]
#   RUNTIME [v2-alpha-tpuv5-lite]  SPOT [0] (1: a spot slice)    REMOTE_DIR [paligemma] (folder in $HOME on workers)
#   Passed on to the trainer when set: PALIGEMMA_CKPT_DIR, TFDS_DATA_DIR.
set -euo pipefail

if [[ $# -lt 3 ]]; then
  sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
NAME=$1 CONFIG=$2 WORKDIR=$3
shift 3
if [[ $WORKDIR != gs://* ]]; then
  echo "WORKDIR must be a gs:// path shared by all workers, got '$WORKDIR'." >&2
  exit 2
fi

ZONE=${ZONE:-$(gcloud config get-value compute/zone 2>/dev/null)}
if [[ -z $ZONE ]]; then
  echo "Set ZONE (e.g. ZONE=us-west4-a) or gcloud config set compute/zone." >&2
  exit 2
fi
ACCELERATOR=${ACCELERATOR:-v5litepod-8}
RUNTIME=${RUNTIME:-v2-alpha-tpuv5-lite}
REMOTE_DIR=${REMOTE_DIR:-paligemma}
GCLOUD=(gcloud compute tpus tpu-vm)
WHERE=(--zone "$ZONE")
if [[ -n ${PROJECT:-} ]]; then WHERE+=(--project "$PROJECT"); fi
REPO=$(cd "$(dirname "$0")/.." && pwd)
JAX_VERSION=$(sed -n 's/^jax==//p' "$REPO/requirements.txt")

# 1. The slice: reuse it when it is READY, recreate it when it was preempted, create it when missing.
state=$("${GCLOUD[@]}" describe "$NAME" "${WHERE[@]}" --format='value(state)' 2>/dev/null || true)
if [[ $state == PREEMPTED || $state == TERMINATED ]]; then
  echo "Slice $NAME is $state: deleting it to create it again."
  "${GCLOUD[@]}" delete "$NAME" "${WHERE[@]}" --quiet
  state=""
fi
if [[ -z $state ]]; then
  create=(create "$NAME" "${WHERE[@]}" --accelerator-type "$ACCELERATOR" --version "$RUNTIME")
  if [[ ${SPOT:-0} == 1 ]]; then create+=(--spot); fi
  "${GCLOUD[@]}" "${create[@]}"
elif [[ $state != READY ]]; then
  echo "Slice $NAME exists but is $state; wait until it is READY (or delete it) and run this again." >&2
  exit 1
fi

# 2. The code: the tracked files of this checkout (no virtualenv, no local outputs), on every worker.
archive=$(mktemp --suffix=.tar.gz)
trap 'rm -f "$archive"' EXIT
git -C "$REPO" ls-files -z | tar -C "$REPO" --null -T - -czf "$archive"
"${GCLOUD[@]}" scp "$archive" "$NAME:paligemma.tar.gz" "${WHERE[@]}" --worker=all
"${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command \
  "mkdir -p ~/$REMOTE_DIR && tar -xzf ~/paligemma.tar.gz -C ~/$REMOTE_DIR && rm ~/paligemma.tar.gz"

# 3. The environment on every worker: the pinned requirements, then the TPU build of the same jax version.
"${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command "set -e; cd ~/$REMOTE_DIR
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q 'jax[tpu]==$JAX_VERSION' -f https://storage.googleapis.com/jax-releases/libtpu_releases.html"

# 4. The run, on all workers together, in the background (it outlives the ssh session). A trainer still running
#    from an earlier launch is stopped first with SIGTERM, which makes it save a checkpoint.
envs=""
for var in PALIGEMMA_CKPT_DIR TFDS_DATA_DIR; do
  if [[ -n ${!var:-} ]]; then envs+="$var=$(printf '%q' "${!var}") "; fi
done
train_cmd=$(printf '%q ' .venv/bin/python -m trainers.train --config "$CONFIG" --workdir "$WORKDIR" "$@")
"${GCLOUD[@]}" ssh "$NAME" "${WHERE[@]}" --worker=all --command "cd ~/$REMOTE_DIR
  if [ -f ~/train.pid ] && kill -0 \$(cat ~/train.pid) 2>/dev/null; then
    kill -TERM \$(cat ~/train.pid); while kill -0 \$(cat ~/train.pid) 2>/dev/null; do sleep 1; done
  fi
  nohup env $envs $train_cmd > ~/train.log 2>&1 < /dev/null &
  echo \$! > ~/train.pid"

echo "Started on all workers of $NAME. Follow worker 0 with:"
echo "  ${GCLOUD[*]} ssh $NAME ${WHERE[*]} --worker=0 --command 'tail -f ~/train.log'"
