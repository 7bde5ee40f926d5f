#!/usr/bin/env bash
# Build the QMTL container image, localhost/qmtl:<version>, with no container registry:
#
#   1. a Debian bookworm root file system from the Debian mirrors (mmdebstrap, minbase,
#      python3 and ca-certificates), imported with `podman import` as the base image;
#   2. the project's wheels built on this host (`pip wheel`), shared objects stripped;
#   3. `podman build --network none`: a venv, `pip install --no-index` from those wheels,
#      a non-root user.
#
# One image runs every service (`qmtl service gateway server`, ...) and strategies (the
# SDK, `python -m ...`).  Kept small: merged /usr without the usrmerge package (no
# perl), no documentation, man pages or locales, no pip in the image, compiled
# sources and test suites of the wheels removed, debug symbols stripped.  The user
# is written into /etc/passwd directly: minbase has no useradd.
#
#   bash scripts/build_image.sh            # builds if missing or built from other sources
#   bash scripts/build_image.sh --rebuild  # builds again
#   bash scripts/build_image.sh --remove   # removes the image and its base
#
# Everything it creates besides the two images lives in a temporary directory that is
# removed on exit; a failed build leaves no image behind.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'build_image: %s\n' "$*" >&2; }

PY=.venv/bin/python
[ -x "$PY" ] || { say "run scripts/setup.sh first (no .venv)"; exit 2; }
for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { say "$tool is missing; run scripts/setup.sh"; exit 2; }
done
source scripts/podman_env.sh

VERSION=$("$PY" -c 'import qmtl; print(qmtl.__version__)')
IMAGE="localhost/qmtl:${VERSION}"
# The base's recipe is in its tag: a changed recipe builds a new base.
BASE_RECIPE="minbase python3 ca-certificates merged-usr nodoc v1"
BASE="localhost/qmtl-base:bookworm-$(printf '%s' "$BASE_RECIPE" | sha256sum | cut -c1-12)"

# What goes into the wheel: a changed file builds a new image under the same tag.
DIGEST=$(find -L qmtl pyproject.toml -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
built_digest() { podman image inspect "$IMAGE" --format '{{ index .Labels "qmtl.source-digest" }}' 2>/dev/null || true; }

case "${1:-}" in
  --remove)
    podman rmi -f "$IMAGE" "$BASE" >/dev/null 2>&1 || true
    say "removed $IMAGE and $BASE"
    exit 0 ;;
  --rebuild) podman rmi -f "$IMAGE" >/dev/null 2>&1 || true ;;
  "") if [ "$(built_digest)" = "$DIGEST" ]; then echo "$IMAGE"; exit 0; fi ;;
  *) say "unknown option $1; use --rebuild or --remove"; exit 2 ;;
esac

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if ! podman image exists "$BASE"; then
  say "building the base image from the Debian mirrors ($BASE)"
  mmdebstrap --quiet --variant=minbase --include=python3,ca-certificates \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
    bookworm "$WORK/rootfs.tar"
  podman import --quiet --change 'CMD ["/bin/sh"]' "$WORK/rootfs.tar" "$BASE" >/dev/null
  rm -f "$WORK/rootfs.tar"
fi

say "building wheels"
mkdir -p "$WORK/context/wheels"
"$PY" -m pip wheel --quiet --wheel-dir "$WORK/context/wheels" . 2>&1 | grep -v '^WARNING: Location' || true
"$PY" -m pip download --quiet --no-deps --dest "$WORK/context/wheels" "pip==$("$PY" -m pip --version | cut -d' ' -f2)" 2>&1 \
  | grep -v '^WARNING: Location' || true
ls "$WORK"/context/wheels/qmtl-*.whl >/dev/null
# Debug symbols: questdb's client alone carries 33 MB of them.
"$PY" scripts/strip_wheels.py "$WORK/context/wheels"

cat > "$WORK/context/Containerfile" <<'EOF'
FROM BASE_IMAGE
ENV PATH=/opt/qmtl/bin:/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,source=wheels,target=/wheels \
    python3 -m venv --without-pip /opt/qmtl \
 && set -- /wheels/pip-*.whl \
 && python3 "$1/pip" --python /opt/qmtl/bin/python install --quiet \
      --no-index --no-cache-dir --find-links /wheels qmtl \
 && site=/opt/qmtl/lib/python3.11/site-packages \
 && find "$site" -depth \( -name '*.c' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \
      -o -name '*.html' -o -name '*.h' \) -type f -delete \
 && rm -rf "$site"/numpy/f2py "$site"/numpy/distutils "$site"/numpy/_pyinstaller \
 && find "$site" -depth -type d \( -name tests -o -name testing \) -path '*/numpy/*' -exec rm -rf {} + \
 && echo 'qmtl:x:10001:10001:QMTL:/var/lib/qmtl:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'qmtl:x:10001:' >> /etc/group \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/qmtl
WORKDIR /var/lib/qmtl
USER 10001:10001
ENTRYPOINT ["qmtl"]
CMD ["--help"]
EOF
sed -i "s|BASE_IMAGE|$BASE|" "$WORK/context/Containerfile"

# The image this build replaces, removed once the new one works (no dangling copies).
previous=$(podman image inspect "$IMAGE" --format '{{.Id}}' 2>/dev/null || true)
say "building $IMAGE (no network)"
podman build --quiet --network none --layers=false \
  --label "org.opencontainers.image.title=qmtl" \
  --label "org.opencontainers.image.version=$VERSION" --label "qmtl.source-digest=$DIGEST" \
  -t "$IMAGE" -f "$WORK/context/Containerfile" "$WORK/context" >/dev/null
podman run --rm --network none "$IMAGE" --version >/dev/null \
  || { say "the new image does not run 'qmtl --version'; removing it"; podman rmi -f "$IMAGE" >/dev/null; exit 1; }
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect "$IMAGE" --format '{{.Id}}')" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
say "built $IMAGE: $((size / 1000 / 1000)) MB"
echo "$IMAGE"
