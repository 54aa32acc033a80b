#!/usr/bin/env bash
# What a datanode failure costs a writer: a fresh local cluster of 4
# datanodes (release build), a $SIZE_MB MiB put at replication 3 in 64 MiB
# blocks from stdin, timed three times: with nothing failing, with one
# datanode of the pipeline SIGKILLed mid-block, and with another SIGSTOPped
# mid-block (resumed after the put). Prints each put's time and the delay
# the failure added. A kill is seen at once (the connection breaks); a stall
# only when a deadline passes: the socket timeout plus a share per hop
# (SOCKET_TIMEOUT_MS, 60000 in HDFS and in rdfs's defaults; 10000 here
# unless set).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
size_mb=${SIZE_MB:-512}
timeout_ms=${SOCKET_TIMEOUT_MS:-10000}
export RDFS_HOME=${RDFS_HOME:-$(mktemp -d "${TMPDIR:-/tmp}/rdfs-pipeline.XXXXXX")}
export RDFS_NN_PORT=${RDFS_NN_PORT:-18030} RDFS_DATANODES=4
export RDFS_OPTS="-D dfs.block_size=64m -D client.socket_timeout_ms=$timeout_ms -D datanode.socket_timeout_ms=$timeout_ms -D datanode.sync_on_close=false"
rdfs=$here/target/release/rdfs
fs=(-fs "hdfs://127.0.0.1:$RDFS_NN_PORT" -D "client.socket_timeout_ms=$timeout_ms")
cleanup() {
  [[ -n ${KEEP_LOGS:-} ]] && cp -r "$RDFS_HOME/logs" "$KEEP_LOGS" 2>/dev/null
  for pid in "$RDFS_HOME"/pids/*.pid; do kill -CONT "$(cat "$pid")" 2>/dev/null || true; done
  "$here/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true
  rm -rf "$RDFS_HOME"
}
trap cleanup EXIT

"$here/deploy/local-cluster.sh" start >/dev/null
head -c "${size_mb}M" /dev/urandom >"$RDFS_HOME/input"
cat "$RDFS_HOME/input" >/dev/null

now() { date +%s.%N; }

# The datanode (1-based, as local-cluster.sh numbers them) holding the
# replica being written once it has passed 16 MiB, excluding $1.
pipeline_node() {
  local skip=$1
  while true; do
    for dn in $(seq 1 "$RDFS_DATANODES"); do
      [[ $dn == "$skip" ]] && continue
      if find "$RDFS_HOME/datanode$dn" -path '*/rbw/blk_*' ! -name '*.meta' -size +16M 2>/dev/null | grep -q .; then
        echo "$dn"
        return
      fi
    done
    sleep 0.02
  done
}

timed_put() { # name [failure skip]
  local name=$1 failure=${2:-} skip=${3:-0} start end victim=""
  start=$(now)
  "$rdfs" dfs "${fs[@]}" -put - "/$name" <"$RDFS_HOME/input" &
  local put=$!
  if [[ -n $failure ]]; then
    victim=$(pipeline_node "$skip")
    kill "-$failure" "$(cat "$RDFS_HOME/pids/datanode$victim.pid")"
  fi
  wait "$put"
  end=$(now)
  [[ $failure == STOP ]] && kill -CONT "$(cat "$RDFS_HOME/pids/datanode$victim.pid")"
  cmp <("$rdfs" dfs "${fs[@]}" -cat "/$name") "$RDFS_HOME/input"
  awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }'
  echo " $victim"
}

read -r base _ < <(timed_put base)
read -r killed victim < <(timed_put killed KILL)
read -r stalled _ < <(timed_put stalled STOP "$victim")
awk -v b="$base" -v k="$killed" -v s="$stalled" -v mb="$size_mb" -v t="$timeout_ms" 'BEGIN {
  printf "put of %d MiB at replication 3: %.2f s with no failure (%.0f MB/s)\n", mb, b, mb * 1.048576 / b
  printf "  datanode SIGKILLed mid-block: %.2f s, delayed %.2f s\n", k, k - b
  printf "  datanode SIGSTOPped mid-block (socket timeout %d ms): %.2f s, delayed %.2f s\n", t, s, s - b
}'
