#!/usr/bin/env bash
# Run the services chart in real containers (podman kube play) with a host Prometheus
# and Alertmanager loading the shipped alerts; stop the DAG Manager and see its alerts
# fire.  Builds localhost/qmtl:<version> first when missing or stale
# (scripts/build_image.sh).  Details: scripts/kube_smoke.py.
#
#   bash scripts/kube_smoke.sh                # removes everything it made, images too
#   bash scripts/kube_smoke.sh --keep-image   # keeps the images it built, for the next run
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
case "${1:-}" in
  --keep-image) keep=1 ;;
  "") ;;
  *) echo "kube_smoke: unknown option $1; use --keep-image" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || { echo "kube_smoke: run scripts/setup.sh first (no .venv)" >&2; exit 2; }
command -v podman >/dev/null || { echo "kube_smoke: podman is missing; run scripts/setup.sh" >&2; exit 2; }
source scripts/podman_env.sh

images() { podman images --quiet --no-trunc --filter 'reference=localhost/qmtl*' | sort -u; }
before=$(images)
remove_new_images() {
  [ "$keep" = 1 ] && return 0
  for id in $(comm -13 <(echo "$before") <(images)); do
    podman rmi -f "$id" >/dev/null 2>&1 || true
  done
}
trap remove_new_images EXIT

image=$(bash scripts/build_image.sh | tail -1)
.venv/bin/python scripts/kube_smoke.py --image "$image"
