#!/usr/bin/env bash
# A local rdfs cluster: one namenode and three datanodes (two data dirs each)
# as background processes on 127.0.0.1.
#
#   deploy/local-cluster.sh start    build if needed, format on first start, start, wait for datanodes
#   deploy/local-cluster.sh stop     stop every daemon (SIGTERM, then SIGKILL after 10 s)
#   deploy/local-cluster.sh status   show what runs and where its log is
#
# State, logs and pid files live under $RDFS_HOME (default: rdfs-home/ in the
# checkout, git-ignored). The namenode listens on 127.0.0.1:8020, the default
# `rdfs dfs` talks to, so no configuration is needed. RDFS_DATANODES sets the
# number of datanodes, RDFS_NN_PORT the namenode port, and RDFS_OPTS adds
# generic options (-D key=value ...) to every daemon.
#
# RDFS_HA=1 starts an HA nameservice instead: three journalnodes
# (127.0.0.1:8485-8487, or from RDFS_JN_PORT), two namenodes nn1 and nn2 (127.0.0.1:8020 and
# :8021) and three datanodes, with automatic failover. Its configuration is
# written to $RDFS_HOME/ha.toml; point clients at it with RDFS_CONF:
#   RDFS_CONF=$RDFS_HOME/ha.toml rdfs dfs -ls /
#   RDFS_CONF=$RDFS_HOME/ha.toml rdfs haadmin -getAllServiceState
#
# RDFS_SECURE=1 runs the (non-HA) cluster over mutual TLS with block access
# tokens: a CA and certificates are made under $RDFS_HOME/ca on first start
# (the namenode's, one the datanodes share, and a client certificate for
# the current user), and the clients' configuration is written to
# $RDFS_HOME/secure.toml:
#   RDFS_CONF=$RDFS_HOME/secure.toml rdfs dfs -ls /
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RDFS_HOME=${RDFS_HOME:-$here/rdfs-home}
NN_PORT=${RDFS_NN_PORT:-8020}
DATANODES=${RDFS_DATANODES:-3}
HA=${RDFS_HA:-0}
SECURE=${RDFS_SECURE:-0}
JN_PORT=${RDFS_JN_PORT:-8485}
PROFILE=${RDFS_PROFILE:-release}
logs=$RDFS_HOME/logs
pids=$RDFS_HOME/pids

rdfs_bin() {
  if [ -n "${RDFS_BIN:-}" ]; then echo "$RDFS_BIN"; return; fi
  echo "$here/target/$PROFILE/rdfs"
}

build() {
  if [ -n "${RDFS_BIN:-}" ]; then return; fi
  local flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  echo "building rdfs ($PROFILE)..."
  (cd "$here" && cargo build -q "${flag[@]}" -p rdfs-cli)
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_daemon() { # name, then the rdfs arguments
  local name=$1; shift
  if alive "$pids/$name.pid"; then echo "$name already running (pid $(cat "$pids/$name.pid"))"; return; fi
  nohup "$(rdfs_bin)" "$@" >>"$logs/$name.log" 2>&1 &
  echo $! >"$pids/$name.pid"
}

write_ha_conf() {
  cat >"$RDFS_HOME/ha.toml" <<EOT
# Written by deploy/local-cluster.sh (RDFS_HA=1).
[fs]
default_fs = "hdfs://rdfs"

[namenode]
safemode_extension_ms = 2000

[ha]
nameservice = "rdfs"
namenodes = ["nn1=127.0.0.1:$NN_PORT", "nn2=127.0.0.1:$((NN_PORT + 1))"]
shared_edits_dir = "qjournal://127.0.0.1:$JN_PORT;127.0.0.1:$((JN_PORT + 1));127.0.0.1:$((JN_PORT + 2))/rdfs"
EOT
}

wait_listening() { # port, name
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$2 did not start listening on port $1; see $logs/$2.log" >&2
  exit 1
}

start_ha() {
  build
  mkdir -p "$logs" "$pids"
  write_ha_conf
  export RDFS_CONF=$RDFS_HOME/ha.toml
  local extra=()
  read -r -a extra <<<"${RDFS_OPTS:-}"
  for i in 1 2 3; do
    local port=$((JN_PORT + i - 1))
    start_daemon "journalnode$i" journalnode "${extra[@]}" -D "journalnode.rpc_address=127.0.0.1:$port" \
      -D "journalnode.edits_dir=$RDFS_HOME/journalnode$i"
    wait_listening "$port" "journalnode$i"
  done
  nn_args() { # id, port
    echo -D "namenode.name_dirs=$RDFS_HOME/$1" -D "namenode.rpc_address=127.0.0.1:$2" -D "ha.namenode_id=$1"
  }
  local nn1_port=$NN_PORT nn2_port=$((NN_PORT + 1))
  if [ ! -f "$RDFS_HOME/nn1/current/VERSION" ]; then
    # shellcheck disable=SC2046
    if ! "$(rdfs_bin)" namenode -format "${extra[@]}" $(nn_args nn1 "$nn1_port") >>"$logs/nn1.log" 2>&1; then
      echo "formatting nn1 failed:" >&2; tail -n 5 "$logs/nn1.log" >&2; exit 1
    fi
    echo "formatted a new namespace in $RDFS_HOME/nn1 and the journal"
  fi
  # shellcheck disable=SC2046
  start_daemon nn1 namenode "${extra[@]}" $(nn_args nn1 "$nn1_port")
  wait_listening "$nn1_port" nn1
  if [ ! -f "$RDFS_HOME/nn2/current/VERSION" ]; then
    local ok=0
    for _ in $(seq 1 50); do
      # shellcheck disable=SC2046
      if "$(rdfs_bin)" namenode -bootstrapStandby "${extra[@]}" $(nn_args nn2 "$nn2_port") >>"$logs/nn2.log" 2>&1; then ok=1; break; fi
      sleep 0.2
    done
    [ "$ok" = 1 ] || { echo "bootstrapping nn2 failed; see $logs/nn2.log" >&2; exit 1; }
  fi
  # shellcheck disable=SC2046
  start_daemon nn2 namenode "${extra[@]}" $(nn_args nn2 "$nn2_port")
  for i in $(seq 1 "$DATANODES"); do
    local d=$RDFS_HOME/datanode$i
    start_daemon "datanode$i" datanode "${extra[@]}" -D "datanode.data_dirs=$d/data1,$d/data2" \
      -D "datanode.xfer_address=127.0.0.1:0"
  done
  wait_datanodes
  cat <<EOT
rdfs HA is up: nameservice hdfs://rdfs (nn1 127.0.0.1:$nn1_port, nn2 127.0.0.1:$nn2_port),
3 journalnodes, $DATANODES datanodes; logs in $logs/
Try:
  export RDFS_CONF=$RDFS_HOME/ha.toml
  $(rdfs_bin) haadmin -getAllServiceState
  $(rdfs_bin) dfs -put README.md /readme.md
  kill -9 \$(cat $pids/nn1.pid)    # the other namenode takes over within seconds
Stop with: RDFS_HA=1 deploy/local-cluster.sh stop
EOT
}

wait_datanodes() {
  printf 'waiting for %s datanodes to register' "$DATANODES"
  local live=0
  for _ in $(seq 1 150); do
    live=$("$(rdfs_bin)" dfsadmin "$@" -report -live 2>/dev/null | sed -n 's/^Live datanodes (\([0-9]*\)):$/\1/p' || true)
    if [ "${live:-0}" -ge "$DATANODES" ]; then break; fi
    printf '.'; sleep 0.2
  done
  echo
  if [ "${live:-0}" -lt "$DATANODES" ]; then
    echo "only ${live:-0} of $DATANODES datanodes registered; see $logs/" >&2
    status >&2
    exit 1
  fi
  if ! timeout 60 "$(rdfs_bin)" dfsadmin "$@" -safemode wait >/dev/null 2>&1; then
    echo "the namenode is still in safe mode; see $logs/" >&2
  fi
}

# Makes the CA and certificates (once) and the clients' configuration.
setup_secure() {
  local ca=$RDFS_HOME/ca user
  user=$(id -un)
  if [ ! -f "$ca/ca.pem" ]; then
    "$(rdfs_bin)" ca init -dir "$ca" >/dev/null
    "$(rdfs_bin)" ca issue -dir "$ca" -role namenode -name namenode >/dev/null
    "$(rdfs_bin)" ca issue -dir "$ca" -role datanode -name datanode >/dev/null
    "$(rdfs_bin)" ca issue -dir "$ca" -role client -name "$user" >/dev/null
    echo "made a CA and certificates in $ca"
  fi
  cat >"$RDFS_HOME/secure.toml" <<EOT
# Written by deploy/local-cluster.sh (RDFS_SECURE=1): a client of the local
# cluster over mutual TLS, as $user.
[fs]
default_fs = "hdfs://127.0.0.1:$NN_PORT"

[security]
tls_enabled = true
tls_ca_file = "$ca/ca.pem"
tls_cert_file = "$ca/$user.pem"
tls_key_file = "$ca/$user-key.pem"
block_access_token_enable = true
EOT
  export RDFS_CONF=$RDFS_HOME/secure.toml
}

# -D settings for a daemon to present its own certificate.
cert_args() {
  [ "$SECURE" = 1 ] || return 0
  echo -D "security.tls_cert_file=$RDFS_HOME/ca/$1.pem" -D "security.tls_key_file=$RDFS_HOME/ca/$1-key.pem"
}

start() {
  if [ "$HA" = 1 ]; then
    if [ "$SECURE" = 1 ]; then echo "RDFS_SECURE=1 is not yet offered with RDFS_HA=1" >&2; exit 2; fi
    start_ha; return
  fi
  build
  mkdir -p "$logs" "$pids"
  if [ "$SECURE" = 1 ]; then setup_secure; fi
  # A short safe-mode extension: a restarted local cluster is writable
  # within seconds of its datanodes reporting (HDFS's default is 30 s).
  local common=(-D "fs.default_fs=hdfs://127.0.0.1:$NN_PORT" -D "namenode.safemode_extension_ms=2000")
  # Extra generic options for every daemon, e.g. RDFS_OPTS="-D dfs.block_size=64m".
  local extra=()
  read -r -a extra <<<"${RDFS_OPTS:-}"
  common+=("${extra[@]}")
  if [ ! -f "$RDFS_HOME/namenode/current/VERSION" ]; then
    if ! "$(rdfs_bin)" namenode -format "${common[@]}" $(cert_args namenode) -D "namenode.name_dirs=$RDFS_HOME/namenode" >>"$logs/namenode.log" 2>&1; then
      echo "formatting the namenode failed:" >&2
      tail -n 5 "$logs/namenode.log" >&2
      exit 1
    fi
    echo "formatted a new namespace in $RDFS_HOME/namenode"
  fi
  start_daemon namenode namenode "${common[@]}" $(cert_args namenode) -D "namenode.name_dirs=$RDFS_HOME/namenode"
  for i in $(seq 1 "$DATANODES"); do
    local d=$RDFS_HOME/datanode$i
    start_daemon "datanode$i" datanode "${common[@]}" $(cert_args datanode) -D "datanode.data_dirs=$d/data1,$d/data2" \
      -D "datanode.xfer_address=127.0.0.1:0"
  done
  wait_datanodes "${common[@]}"
  if [ "$SECURE" = 1 ]; then
    cat <<EOT
rdfs is up over mutual TLS: namenode hdfs://127.0.0.1:$NN_PORT, $DATANODES datanodes; logs in $logs/
Clients need the certificate configuration:
  export RDFS_CONF=$RDFS_HOME/secure.toml
  $(rdfs_bin) dfs -put README.md /readme.md
  $(rdfs_bin) dfs -ls /
Stop with: deploy/local-cluster.sh stop
EOT
    return
  fi
  cat <<EOT
rdfs is up: namenode hdfs://127.0.0.1:$NN_PORT, $DATANODES datanodes; logs in $logs/
Try:
  $(rdfs_bin) dfs -put README.md /readme.md
  $(rdfs_bin) dfs -ls /
  $(rdfs_bin) fsck / -files -blocks -locations
  $(rdfs_bin) dfsadmin -report
Stop with: deploy/local-cluster.sh stop
EOT
}

stop() {
  [ -d "$pids" ] || { echo "nothing running"; return; }
  for f in "$pids"/*.pid; do
    [ -e "$f" ] || continue
    if alive "$f"; then kill -TERM "$(cat "$f")" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 100); do
    local any=0
    for f in "$pids"/*.pid; do [ -e "$f" ] && alive "$f" && any=1; done
    [ "$any" = 0 ] && break
    sleep 0.1
  done
  for f in "$pids"/*.pid; do
    [ -e "$f" ] || continue
    if alive "$f"; then echo "$(basename "$f" .pid) did not stop in time; killing"; kill -KILL "$(cat "$f")" 2>/dev/null || true; fi
    rm -f "$f"
  done
  echo "stopped"
}

status() {
  local names=(namenode)
  [ "$HA" = 1 ] && names=(journalnode1 journalnode2 journalnode3 nn1 nn2)
  for name in "${names[@]}" $(seq -f 'datanode%g' 1 "$DATANODES"); do
    if alive "$pids/$name.pid"; then
      echo "$name: running (pid $(cat "$pids/$name.pid")), log $logs/$name.log"
    else
      echo "$name: stopped"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
