#!/usr/bin/env bash
# Failover time: over N rounds, SIGKILL the active namenode of an HA local
# cluster (3 journalnodes, 2 namenodes, 3 datanodes, default HA timings) and
# time from the kill to the first create (`rdfs dfs -touchz`, which fails
# over by itself) that succeeds. Prints every sample, then p50/p90/p99/max.
#
#   benches/ha_failover.sh [ROUNDS]      (default 20)
#
# RDFS_OPTS adds -D options to every daemon (e.g. -D ha.lease_timeout_ms=2000).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rounds=${1:-20}
work=$(mktemp -d "${TMPDIR:-/tmp}/rdfs-ha-bench.XXXXXX")
export RDFS_HOME=$work RDFS_HA=1 RDFS_NN_PORT=${RDFS_NN_PORT:-28020} RDFS_JN_PORT=${RDFS_JN_PORT:-28485}
cleanup() {
  "$here/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true
  [ -n "${KEEP_LOGS:-}" ] && { echo "logs kept in $work/logs"; return; }
  rm -rf "$work"
}
trap cleanup EXIT
(cd "$here" && cargo build -q --release -p rdfs-cli)
rdfs=$here/target/release/rdfs
"$here/deploy/local-cluster.sh" start >/dev/null
export RDFS_CONF=$work/ha.toml

state() { "$rdfs" haadmin -getServiceState "$1" 2>/dev/null || echo down; }
active() {
  for _ in $(seq 1 300); do
    for nn in nn1 nn2; do [ "$(state $nn)" = active ] && { echo $nn; return; }; done
    sleep 0.1
  done
  echo "no active namenode" >&2; exit 1
}

"$rdfs" dfs -mkdir -p /bench >/dev/null
samples=()
for i in $(seq 1 "$rounds"); do
  nn=$(active)
  other=nn2; [ "$nn" = nn2 ] && other=nn1
  # The standby must be caught up and ready, as in a healthy cluster.
  for _ in $(seq 1 300); do [ "$(state $other)" = standby ] && break; sleep 0.1; done
  sleep 1
  pid=$(cat "$work/pids/$nn.pid")
  t0=$(date +%s%N)
  kill -9 "$pid"
  if ! "$rdfs" dfs -touchz "/bench/after-kill-$i" 2>"$work/touchz.err"; then
    echo "round $i: the create after the kill failed: $(head -n 3 "$work/touchz.err")" >&2
    exit 1
  fi
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  samples+=("$ms")
  echo "round $i: killed $nn (pid $pid); first create succeeded after ${ms} ms"
  # Bring the killed namenode back as the new standby.
  "$here/deploy/local-cluster.sh" start >/dev/null
done

sorted=$(printf '%s\n' "${samples[@]}" | sort -n)
pct() { # percentile (nearest rank)
  local n; n=$(echo "$sorted" | wc -l)
  local rank=$(( ($1 * n + 99) / 100 )); [ "$rank" -lt 1 ] && rank=1
  echo "$sorted" | sed -n "${rank}p"
}
echo "failover (SIGKILL of the active -> first successful create), $rounds rounds:"
echo "  p50 $(pct 50) ms   p90 $(pct 90) ms   p99 $(pct 99) ms   max $(echo "$sorted" | tail -n 1) ms"
