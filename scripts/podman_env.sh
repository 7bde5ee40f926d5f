# Sourced by the container scripts: podman as this kind of machine needs it.
#
# crun (Debian's default runtime) fails here on setrlimit and on hybrid cgroups: runc
# with explicit ulimits works.  A containers.conf of ours is used unless the caller
# chose one (CONTAINERS_CONF).
if [ -z "${CONTAINERS_CONF:-}" ]; then
  _qmtl_conf_dir="${XDG_RUNTIME_DIR:-/tmp}/qmtl-podman"
  mkdir -p "$_qmtl_conf_dir"
  cat > "$_qmtl_conf_dir/containers.conf" <<'CONF'
[engine]
runtime = "runc"

[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
CONF
  export CONTAINERS_CONF="$_qmtl_conf_dir/containers.conf"
fi
