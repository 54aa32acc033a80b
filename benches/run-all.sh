#!/usr/bin/env bash
# Every rdfs benchmark in one run, beside this machine's physical limits
# (../shared/bench/physical_limits.sh, measured in the same run) and, with
# --peer, MooseFS and GlusterFS doing the same workload
# (../shared/bench/peer_moosefs.sh, peer_glusterfs.sh; GlusterFS, like rdfs,
# fsyncs every copy).
# Prints one table: figure, rdfs value, limit or peer value, ratio.
#
#   benches/run-all.sh [--peer] [--quick] [--no-micro] [--data-only] [--out DIR]
#
#   --peer      also run MooseFS and GlusterFS (about 8 minutes each; needs
#               apt and /dev/fuse)
#   --quick     smaller runs (256 MiB file, fewer metadata operations): a
#               smoke test of the instruments, not figures to quote
#   --no-micro  skip the criterion micro-benchmarks
#   --data-only only the data path: put/get, per-block read times, TestDFSIO
#               (no namenode operations, namespace memory, TLS or micro runs)
#   --out DIR   keep every raw output there (default: a temp dir, kept)
#
# RDFS_BIN=path runs a prebuilt binary instead of building one (to measure
# an older build beside this one).
#
# Needs: a Rust toolchain (builds the release binaries), root for
# drop_caches (cold reads are "warm" otherwise, and the table says so).
# Units: MB = 10^6 bytes, as in the shared scripts.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${RDFS_SHARED:-$here/../shared}
peer=0 quick=0 micro=1 data_only=0 out=""
while [ $# -gt 0 ]; do
  case $1 in
    --peer) peer=1 ;;
    --quick) quick=1 ;;
    --no-micro) micro=0 ;;
    --data-only) data_only=1; micro=0 ;;
    --out) out=$2; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -d "$shared/bench" ] || { echo "no $shared/bench: run from a clone with ../shared beside it (or set RDFS_SHARED)" >&2; exit 1; }
out=${out:-$(mktemp -d "${TMPDIR:-/tmp}/rdfs-run-all.XXXXXX")}
mkdir -p "$out"
log() { echo "[$(date +%T)] $*" >&2; }

if [ $quick = 1 ]; then
  FILE_MB=256 REPS=1 META_FILES=4000 NS_FILES=200000 IO_FILES=2 IO_SIZE=64m
else
  FILE_MB=1024 REPS=3 META_FILES=40000 NS_FILES=1000000 IO_FILES=4 IO_SIZE=256m
fi

# ---------------------------------------------------------------- build
if [ -n "${RDFS_BIN:-}" ]; then
  rdfs=$RDFS_BIN
  log "using the prebuilt $rdfs"
else
  log "building release binaries"
  (cd "$here" && cargo build -q --release -p rdfs-cli)
  rdfs=$here/target/release/rdfs
  export RDFS_BIN=$rdfs
fi

# ---------------------------------------------------------------- limits and peer
log "physical limits (../shared/bench/physical_limits.sh)"
bash "$shared/bench/physical_limits.sh" >"$out/limits.txt" 2>"$out/limits.log" \
  || { echo "physical_limits.sh failed; see $out/limits.log" >&2; exit 1; }
if [ $peer = 1 ]; then
  log "MooseFS peer (../shared/bench/peer_moosefs.sh)"
  FILE_MB=$FILE_MB WRITE_REPS=$REPS bash "$shared/bench/peer_moosefs.sh" >"$out/peer.txt" 2>"$out/peer.log" \
    || { echo "peer_moosefs.sh failed; see $out/peer.log" >&2; : >"$out/peer.txt"; }
  log "GlusterFS peer (../shared/bench/peer_glusterfs.sh)"
  FILE_MB=$FILE_MB WRITE_REPS=$REPS bash "$shared/bench/peer_glusterfs.sh" >"$out/peer_gluster.txt" 2>"$out/peer_gluster.log" \
    || { echo "peer_glusterfs.sh failed; see $out/peer_gluster.log" >&2; : >"$out/peer_gluster.txt"; }
else
  : >"$out/peer.txt"
  : >"$out/peer_gluster.txt"
fi

# ---------------------------------------------------------------- cluster
export RDFS_HOME=$out/cluster RDFS_NN_PORT=${RDFS_NN_PORT:-28120}
cleanup() {
  "$here/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true
  rm -rf "$RDFS_HOME/datanode"* "${src:-}"
}
trap cleanup EXIT
log "starting a fresh local cluster (3 datanodes) in $RDFS_HOME"
rm -rf "$RDFS_HOME"
"$here/deploy/local-cluster.sh" start >"$out/cluster.log" 2>&1 \
  || { cat "$out/cluster.log" >&2; exit 1; }
fs=(-fs "hdfs://127.0.0.1:$RDFS_NN_PORT")
: >"$out/rdfs.txt"
fig() { echo "$1 $2 $3" >>"$out/rdfs.txt"; }
now() { date +%s.%N; }
mbps() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN{printf "%.1f", b/(c-a)/1e6}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END{print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
drop_caches() { sync; { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; }
drop_caches && fig drop_caches_allowed 1 bool || fig drop_caches_allowed 0 bool

# ---------------------------------------------------------------- large file put / get
src=$(mktemp /dev/shm/rdfs-run-all.XXXXXX)
bytes=$((FILE_MB * 1024 * 1024))
log "put/get of a ${FILE_MB} MiB file at replication 3 (${REPS}x)"
head -c "$bytes" /dev/urandom >"$src"
sum=$(sha256sum <"$src" | cut -d' ' -f1)
clk=$(getconf CLK_TCK)
# CPU seconds (user + system) a running process has used.
cpu_s() { awk -v clk="$clk" '{printf "%.3f", ($14 + $15) / clk}' "/proc/$1/stat" 2>/dev/null || echo 0; }
per_gib() { awk -v s="$1" -v b="$bytes" 'BEGIN{printf "%.3f", s / (b / 1073741824)}'; }
# put (median of REPS) with each process's CPU seconds per GiB, cold get
# and warm get with a checksum, as figures named with SUFFIX (empty, or
# _tls on the cluster over mutual TLS).
put_get() {
  local suffix=$1 rates=() r t0 t1 got i pid used
  "$rdfs" dfs "${fs[@]}" -mkdir -p /bench
  for i in client 1 2 3; do : >"$out/put_cpu_$i$suffix.txt"; done
  for r in $(seq 1 "$REPS"); do
    "$rdfs" dfs "${fs[@]}" -rm -f -skipTrash "/bench/big$r" >/dev/null 2>&1 || true
    drop_caches || true
    local before=()
    for i in 1 2 3; do before[i]=$(cpu_s "$(cat "$RDFS_HOME/pids/datanode$i.pid")"); done
    t0=$(now)
    { TIMEFORMAT='%U %S'; time "$rdfs" dfs "${fs[@]}" -D dfs.replication=3 -put "$src" "/bench/big$r" 2>&3; } 3>&2 2>"$out/put_time.txt"
    t1=$(now)
    rates+=("$(mbps "$bytes" "$t0" "$t1")")
    per_gib "$(awk '{print $1 + $2}' "$out/put_time.txt")" >>"$out/put_cpu_client$suffix.txt"; echo >>"$out/put_cpu_client$suffix.txt"
    for i in 1 2 3; do
      pid=$(cat "$RDFS_HOME/pids/datanode$i.pid")
      used=$(awk -v a="$(cpu_s "$pid")" -v b="${before[i]}" 'BEGIN{print a - b}')
      per_gib "$used" >>"$out/put_cpu_$i$suffix.txt"; echo >>"$out/put_cpu_$i$suffix.txt"
    done
  done
  fig "put_replication3_median$suffix" "$(median "${rates[@]}")" MB/s
  fig "put_cpu_s_per_GiB_client$suffix" "$(median $(cat "$out/put_cpu_client$suffix.txt"))" s
  for i in 1 2 3; do
    fig "put_cpu_s_per_GiB_datanode$i$suffix" "$(median $(cat "$out/put_cpu_$i$suffix.txt"))" s
  done
  drop_caches || true
  t0=$(now)
  "$rdfs" dfs "${fs[@]}" -cat "/bench/big$REPS" >/dev/null
  t1=$(now)
  fig "get_cold$suffix" "$(mbps "$bytes" "$t0" "$t1")" MB/s
  t0=$(now)
  got=$("$rdfs" dfs "${fs[@]}" -cat "/bench/big$REPS" | sha256sum | cut -d' ' -f1)
  t1=$(now)
  fig "get_warm_with_sha256$suffix" "$(mbps "$bytes" "$t0" "$t1")" MB/s
  [ "$got" = "$sum" ] && fig "get_sha256_match$suffix" 1 bool || fig "get_sha256_match$suffix" 0 bool
  "$rdfs" dfs "${fs[@]}" -rm -r -skipTrash /bench >/dev/null
}
put_get ""

# ---------------------------------------------------------------- block boundaries
# A cold read of a 10-block file, timed per block from the reader's side,
# with the longest pause between two reads near each block boundary: a
# reader that waits on the next block's setup shows it there.
blk_mb=$((FILE_MB / 10))
log "cold get of a 10-block file (${blk_mb} MiB blocks), per-block times"
head -c $((blk_mb * 10 * 1024 * 1024)) "$src" >"$src.ten"
"$rdfs" dfs "${fs[@]}" -D dfs.replication=3 -D "dfs.blocksize=$((blk_mb * 1024 * 1024))" -put "$src.ten" /ten
rm -f "$src.ten"
drop_caches || true
"$rdfs" dfs "${fs[@]}" -cat /ten | python3 -c '
import sys, time
block = int(sys.argv[1]); pipe = sys.stdin.buffer
start = last_read = boundary_start = time.monotonic()
done, boundary, times, gaps, gap = 0, block, [], [], 0.0
while True:
    data = pipe.read1(1 << 20)
    now = time.monotonic()
    if not data:
        break
    near = abs(done - (boundary - block)) <= (1 << 20) and boundary > block
    if near:
        gap = max(gap, now - last_read)
    done += len(data)
    last_read = now
    while done >= boundary:
        times.append(now - boundary_start)
        boundary_start = now
        boundary += block
        if len(times) > 1:
            gaps.append(gap)
        gap = 0.0
print("block_ms", " ".join(f"{t * 1000:.0f}" for t in times))
print("boundary_gap_ms", " ".join(f"{g * 1000:.1f}" for g in gaps))
' $((blk_mb * 1024 * 1024)) >"$out/block_times.txt"
"$rdfs" dfs "${fs[@]}" -rm -skipTrash /ten >/dev/null
python3 - "$out/block_times.txt" >>"$out/rdfs.txt" <<'PYEOF'
import sys, statistics
rows = dict(line.split(None, 1) for line in open(sys.argv[1]) if line.strip())
blocks = [float(x) for x in rows.get("block_ms", "").split()]
gaps = [float(x) for x in rows.get("boundary_gap_ms", "").split()]
if blocks:
    print("get_10_blocks_median_block_ms", statistics.median(blocks), "ms")
    print("get_10_blocks_slowest_block_ms", max(blocks), "ms")
if gaps:
    print("get_10_blocks_longest_boundary_gap_ms", max(gaps), "ms")
PYEOF

# ---------------------------------------------------------------- TestDFSIO
log "rdfs bench io: $IO_FILES files of $IO_SIZE"
"$rdfs" bench io "${fs[@]}" -write -files "$IO_FILES" -size "$IO_SIZE" -replication 3 >"$out/io_write.txt" 2>&1
drop_caches || true
"$rdfs" bench io "${fs[@]}" -read -files "$IO_FILES" -size "$IO_SIZE" >"$out/io_read.txt" 2>&1
"$rdfs" bench io "${fs[@]}" -clean >/dev/null 2>&1 || true
grep -h '^figure ' "$out/io_write.txt" "$out/io_read.txt" | cut -d' ' -f2- >>"$out/rdfs.txt"

if [ $data_only = 0 ]; then
# ---------------------------------------------------------------- namenode operations
nn() { # threads op [extra...]
  local threads=$1 op=$2; shift 2
  log "rdfs bench nn -op $op -threads $threads $*"
  "$rdfs" bench nn "${fs[@]}" -op "$op" -threads "$threads" "$@" >>"$out/nn.txt" 2>>"$out/nn.log"
}
: >"$out/nn.txt"
nn 1 create -files $((META_FILES / 10))
nn 64 create -files "$META_FILES"
nn 64 mkdirs -files "$META_FILES"
nn 64 fileStatus -files "$META_FILES"
nn 64 open -files "$META_FILES"
nn 64 listStatus -files "$META_FILES"
nn 64 rename -files "$META_FILES"
nn 64 delete -files "$META_FILES"
nn 1 create -files $((META_FILES / 10)) -inprocess
nn 64 create -files "$META_FILES" -inprocess
nn 2 fileStatus -files $((META_FILES * 5)) -inprocess
grep -h '^figure ' "$out/nn.txt" | cut -d' ' -f2- >>"$out/rdfs.txt"
# The same in-process runs with permission checks off: their cost.
: >"$out/nn.txt"
nn 64 create -files "$META_FILES" -inprocess -D dfs.permissions.enabled=false
nn 2 fileStatus -files $((META_FILES * 5)) -inprocess -D dfs.permissions.enabled=false
grep -h '^figure ' "$out/nn.txt" | cut -d' ' -f2- | sed 's/^\([^ ]*\)/\1_permissions_off/' >>"$out/rdfs.txt"

log "rdfs bench namespace -files $NS_FILES"
"$rdfs" bench namespace -files "$NS_FILES" >"$out/namespace.txt" 2>&1
grep -h '^figure ' "$out/namespace.txt" | cut -d' ' -f2- >>"$out/rdfs.txt"

"$here/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true

# ---------------------------------------------------------------- over mutual TLS
log "put/get again on a fresh cluster over mutual TLS with block tokens (RDFS_SECURE=1)"
export RDFS_HOME=$out/cluster-tls
rm -rf "$RDFS_HOME"
RDFS_SECURE=1 "$here/deploy/local-cluster.sh" start >"$out/cluster-tls.log" 2>&1 \
  || { cat "$out/cluster-tls.log" >&2; exit 1; }
export RDFS_CONF=$RDFS_HOME/secure.toml
put_get _tls
unset RDFS_CONF
"$here/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true
fi
"$here/deploy/local-cluster.sh" stop >/dev/null 2>&1 || true
rm -f "$src"

# ---------------------------------------------------------------- micro-benchmarks
if [ $micro = 1 ]; then
  log "criterion micro-benchmarks"
  (cd "$here" && cargo bench -q -p rdfs-micro-benches -- --warm-up-time 1 --measurement-time 3 --noplot) \
    >"$out/micro.txt" 2>"$out/micro.log" || echo "micro-benchmarks failed; see $out/micro.log" >&2
  # criterion prints "<id>\n  time: [...]\n  thrpt: [lo mid hi unit]"; keep the middle estimate.
  awk '/^[A-Za-z0-9_]+\/[^ :]+( |$)/ {id=$1; got=0}
       /thrpt:/ && id != "" && !got {gsub(/[\[\]]/, ""); for (i=1;i<=NF;i++) if ($i=="thrpt:") {key=id; gsub(/\//, "_", key); print "micro_" key, $(i+3), $(i+4)}; got=1}' \
    "$out/micro.txt" >>"$out/rdfs.txt"
fi

# ---------------------------------------------------------------- the table
python3 - "$out/rdfs.txt" "$out/limits.txt" "$out/peer.txt" "$FILE_MB" "$out/peer_gluster.txt" <<'PYEOF'
import sys
def load(path):
    figs = {}
    for line in open(path):
        parts = line.split()
        if len(parts) >= 2:
            try:
                figs[parts[0]] = (float(parts[1]), parts[2] if len(parts) > 2 else "")
            except ValueError:
                pass
    return figs
rdfs, limits, peer = (load(p) for p in sys.argv[1:4])
mb = sys.argv[4]
gluster = load(sys.argv[5])

def value(figs, key, scale=1.0):
    v = figs.get(key)
    return None if v is None else v[0] * scale

def unit_scale(figs, key, want):
    """GB/s figures from criterion may come in MiB/s, GiB/s or elem/s."""
    v = figs.get(key)
    if v is None:
        return None
    n, unit = v
    factor = {"GiB/s": 1.073741824, "MiB/s": 1.048576e-3, "GB/s": 1.0, "MB/s": 1e-3,
              "Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9, "elem/s": 1.0}.get(unit)
    if want == "GB/s" and unit in ("GiB/s", "MiB/s", "GB/s", "MB/s"):
        return n * factor
    if want == "ops/s" and unit.endswith("elem/s"):
        return n * factor
    return None

rows = []
def row(name, ours, unit, other, other_label):
    if ours is None:
        return
    ratio = "" if other in (None, 0) else f"{ours / other:.2f}x"
    other_text = "" if other is None else f"{other:,.1f} {other_label}"
    rows.append((name, f"{ours:,.1f} {unit}", other_text, ratio))

put = value(rdfs, "put_replication3_median")
disk_w = value(limits, "disk_seq_write_fdatasync")
row(f"put {mb} MiB, replication 3 (median)", put, "MB/s", disk_w / 3 if disk_w else None, "MB/s: disk fdatasync write / 3")
row(f"put {mb} MiB, replication 3 (median)", put, "MB/s", value(peer, f"write_{mb}MiB_goal3_median"), "MB/s: MooseFS goal 3")
row(f"put {mb} MiB, replication 3 (median)", put, "MB/s", value(gluster, f"write_{mb}MiB_goal3_median"), "MB/s: GlusterFS replica 3")
cold = value(rdfs, "get_cold")
cold_label = "cold" if value(rdfs, "drop_caches_allowed") else "NOT cold (no drop_caches)"
row(f"get {mb} MiB, {cold_label}", cold, "MB/s", value(limits, "disk_seq_read_uncached"), "MB/s: disk uncached read")
row(f"get {mb} MiB, {cold_label}", cold, "MB/s", value(peer, f"read_{mb}MiB_cold"), "MB/s: MooseFS cold read")
row(f"get {mb} MiB, {cold_label}", cold, "MB/s", value(gluster, f"read_{mb}MiB_cold"), "MB/s: GlusterFS cold read")
for key, label in (("put_replication3_median", f"put {mb} MiB, replication 3, over mutual TLS"),
                   ("get_cold", f"get {mb} MiB, {cold_label}, over mutual TLS"),
                   ("get_warm_with_sha256", f"get {mb} MiB warm + sha256, over mutual TLS")):
    row(label, value(rdfs, key + "_tls"), "MB/s", value(rdfs, key), "MB/s: same without TLS")
for who in ["client", "datanode1", "datanode2", "datanode3"]:
    row(f"put {mb} MiB, replication 3: CPU of the {who}", value(rdfs, f"put_cpu_s_per_GiB_{who}"), "s/GiB", None, "")
row("10-block cold get: slowest block", value(rdfs, "get_10_blocks_slowest_block_ms"), "ms", value(rdfs, "get_10_blocks_median_block_ms"), "ms: median block")
row("10-block cold get: longest pause at a block boundary", value(rdfs, "get_10_blocks_longest_boundary_gap_ms"), "ms", None, "")
row("TestDFSIO write (aggregate)", value(rdfs, "io_write_mbps"), "MB/s", disk_w / 3 if disk_w else None, "MB/s: disk fdatasync write / 3")
row("TestDFSIO read (aggregate)", value(rdfs, "io_read_mbps"), "MB/s", value(limits, "disk_seq_read_uncached"), "MB/s: disk uncached read")

fsync = value(limits, "fsync_4k_append_ops")
for threads in (1, 64):
    ops = value(rdfs, f"nn_create_rpc_t{threads}")
    if ops is not None:
        row(f"create+complete over RPC, {threads} thread(s) (2 synced edits)", 2 * ops, "edits/s", fsync, "4 KiB fdatasync appends/s")
        row(f"create+complete over RPC, {threads} thread(s)", ops, "ops/s", value(peer, "meta_create_rate"), "ops/s: MooseFS create, 1 client")
        row(f"create+complete over RPC, {threads} thread(s)", ops, "ops/s", value(gluster, "meta_create_rate"), "ops/s: GlusterFS create, 1 client")
    ops = value(rdfs, f"nn_create_inprocess_t{threads}")
    if ops is not None:
        row(f"create+complete in-process, {threads} thread(s) (2 synced edits)", 2 * ops, "edits/s", fsync, "4 KiB fdatasync appends/s")
row("mkdirs over RPC, 64 threads", value(rdfs, "nn_mkdirs_rpc_t64"), "ops/s", value(peer, "meta_mkdir_siblings_rate"), "ops/s: MooseFS mkdir")
row("mkdirs over RPC, 64 threads", value(rdfs, "nn_mkdirs_rpc_t64"), "ops/s", value(gluster, "meta_mkdir_siblings_rate"), "ops/s: GlusterFS mkdir")
row("mkdirs over RPC, 64 threads", value(rdfs, "nn_mkdirs_rpc_t64"), "ops/s", value(limits, "local_meta_mkdir_siblings_rate"), "ops/s: local fs mkdir")
row("fileStatus over RPC, 64 threads", value(rdfs, "nn_fileStatus_rpc_t64"), "ops/s", value(peer, "meta_stat_rate"), "ops/s: MooseFS stat")
row("fileStatus over RPC, 64 threads", value(rdfs, "nn_fileStatus_rpc_t64"), "ops/s", value(gluster, "meta_stat_rate"), "ops/s: GlusterFS stat")
row("fileStatus over RPC, 64 threads", value(rdfs, "nn_fileStatus_rpc_t64"), "ops/s", value(limits, "tcp_loopback_rtt_64B_ops"), "ops/s: 64 B TCP round trips, 1 stream")
row("fileStatus in-process, 2 threads", value(rdfs, "nn_fileStatus_inprocess_t2"), "ops/s", value(limits, "local_meta_stat_rate"), "ops/s: local fs stat")
for key, label in (("nn_create_inprocess_t64", "create in-process, 64 threads, permission checks on"),
                   ("nn_fileStatus_inprocess_t2", "fileStatus in-process, 2 threads, permission checks on")):
    row(label, value(rdfs, key), "ops/s", value(rdfs, key + "_permissions_off"), "ops/s: checks off")
row("open (getBlockLocations) over RPC, 64 threads", value(rdfs, "nn_open_rpc_t64"), "ops/s", value(peer, "meta_stat_rate"), "ops/s: MooseFS stat")
row("listStatus (4 entries) over RPC, 64 threads", value(rdfs, "nn_listStatus_rpc_t64"), "ops/s", None, "")
row("rename over RPC, 64 threads", value(rdfs, "nn_rename_rpc_t64"), "ops/s", fsync, "4 KiB fdatasync appends/s")
row("delete over RPC, 64 threads", value(rdfs, "nn_delete_rpc_t64"), "ops/s", value(peer, "meta_delete_rate"), "ops/s: MooseFS delete")
row("delete over RPC, 64 threads", value(rdfs, "nn_delete_rpc_t64"), "ops/s", value(gluster, "meta_delete_rate"), "ops/s: GlusterFS delete")
row("namespace memory per file+block", value(rdfs, "namespace_bytes_per_file"), "bytes", value(peer, "master_rss_per_file"), "bytes: MooseFS master RSS per file")

crc_limit = value(limits, "crc32c_512B_chunks_best")
for key, label in (("compute", "CRC32C of a 64 KiB packet in 512 B chunks"), ("verify", "CRC32C check of a 64 KiB packet in 512 B chunks")):
    row(label, unit_scale(rdfs, f"micro_checksum_64KiB_packet_512B_chunks_{key}", "GB/s"), "GB/s", crc_limit, "GB/s: crc32c crate, 512 B chunks")
for key in sorted(k for k in rdfs if k.startswith("micro_write_block_frame")):
    row(key[len("micro_"):].replace("_", " "), unit_scale(rdfs, key, "GB/s"), "GB/s", value(limits, "memcpy_256MiB_best"), "GB/s: memcpy")
for key in sorted(k for k in rdfs if k.startswith("micro_edit_log")):
    row(key[len("micro_"):].replace("_", " "), unit_scale(rdfs, key, "ops/s"), "edits/s", fsync, "4 KiB fdatasync appends/s")
for key in sorted(k for k in rdfs if k.startswith(("micro_lookup", "micro_insert"))):
    row(key[len("micro_"):].replace("_", " "), unit_scale(rdfs, key, "ops/s"), "ops/s", None, "")

# A comparison that was not measured (no peer run) is left out, unless it
# is the figure's only row; duplicates of a figure with no comparison too.
compared = {r[0] for r in rows if r[2]}
seen = set()
kept = []
for r in rows:
    if r[2] or (r[0] not in compared and r[0] not in seen):
        kept.append(r)
    seen.add(r[0])
rows = kept
widths = [max(len(r[i]) for r in rows + [("figure", "rdfs", "limit or peer", "ratio")]) for i in range(4)]
def line(cells):
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |")
line(("figure", "rdfs", "limit or peer", "ratio"))
print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
for r in rows:
    line(r)
PYEOF
echo
echo "limits measured in this run: $(grep -E '^(disk_seq_write_fdatasync|disk_seq_read_uncached|fsync_4k_append_ops|tcp_loopback_1stream_MBps|crc32c_512B_chunks_best|memcpy_256MiB_best) ' "$out/limits.txt" | awk '{printf "%s %s %s; ", $1, $2, $3}')"
echo "raw outputs: $out"
