#!/usr/bin/env bash
# Re-replication rate: a fresh local cluster of 4 datanodes (release build),
# a file of $SIZE_MB MiB at replication 3 in 64 MiB blocks, then SIGKILL of
# one datanode. Prints how long the namenode took to declare it dead, how
# long from then until fsck is HEALTHY with 3 live replicas per block, and
# the bytes the dead node held divided by that time: the rate at which the
# cluster restored redundancy, with the monitor's default settings.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
size_mb=${SIZE_MB:-1024}
export RDFS_HOME=${RDFS_HOME:-$(mktemp -d "${TMPDIR:-/tmp}/rdfs-rerepl.XXXXXX")}
export RDFS_NN_PORT=${RDFS_NN_PORT:-18020} RDFS_DATANODES=4
export RDFS_OPTS="-D namenode.dead_interval_ms=10000 -D namenode.stale_interval_ms=5000 -D dfs.block_size=64m"
rdfs=$here/target/release/rdfs
fs=(-fs "hdfs://127.0.0.1:$RDFS_NN_PORT")
cleanup() { "$here/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true; rm -rf "$RDFS_HOME"; }
trap cleanup EXIT

"$here/deploy/local-cluster.sh" start >/dev/null
head -c "${size_mb}M" /dev/urandom >"$RDFS_HOME/input"
"$rdfs" dfs "${fs[@]}" -put "$RDFS_HOME/input" /big
rm -f "$RDFS_HOME/input"
sleep 2 # a heartbeat or two, so the report shows every node's usage

addr=$(sed -n 's/^xfer=//p' "$RDFS_HOME/datanode1/data1/datanode.addresses")
held=$("$rdfs" dfsadmin "${fs[@]}" -report -live | awk -v a="Name: $addr " '
  index($0, a) == 1 { mine = 1 } mine && /^DFS Used:/ { print $3; exit }')
kill -9 "$(cat "$RDFS_HOME/pids/datanode1.pid")"
killed=$(date +%s.%N)
until "$rdfs" dfsadmin "${fs[@]}" -report | grep -q '^Dead datanodes (1):'; do sleep 0.1; done
dead=$(date +%s.%N)
healthy() {
  local out
  out=$("$rdfs" fsck "${fs[@]}" / -files -blocks 2>/dev/null) || return 1
  grep -q 'is HEALTHY' <<<"$out" && grep -q $'Under-replicated blocks:\t0 ' <<<"$out" &&
    ! grep ' len=' <<<"$out" | grep -qv 'Live_repl=3'
}
until healthy; do sleep 0.2; done
done_at=$(date +%s.%N)
awk -v held="$held" -v k="$killed" -v d="$dead" -v h="$done_at" 'BEGIN {
  printf "datanode held %.1f MB; declared dead after %.1f s; 3 live replicas again %.1f s later: %.1f MB/s re-replicated\n",
    held / 1e6, d - k, h - d, held / 1e6 / (h - d) }'
