#!/usr/bin/env bash
# Query latency with one ingester of three hung (issue 21): etcd, three
# ingesters (RF 3), and a distributor+querier, each its own Strata process on
# 127.0.0.1. strata-bench pushes BENCH_SERIES series x BENCH_ROUNDS rounds,
# then runs the standard query set BENCH_QUERY_REPEAT times with all three
# healthy, then again with one ingester stopped by SIGSTOP (still healthy in
# the ring: what a stuck disk or a long pause looks like), then once more
# after SIGCONT. Prints, per query, the median and the slowest of the repeats
# in each state, and writes the raw JSON lines under BENCH_OUT_DIR.
#
# For reference, Prometheus (one process, no replicas) on the same data and
# queries, healthy: a hung Prometheus answers nothing, so it has no hung row.
#
# Knobs (environment): BENCH_SERIES=10000 BENCH_ROUNDS=60 BENCH_QUERY_REPEAT=20
#   BENCH_TARGET_CPU=1 BENCH_GEN_CPU=0 BENCH_NO_BUILD=1 STRATA_BIN STRATA_BENCH_BIN
#   ETCD_BIN=etcd PROMETHEUS_BIN=prometheus BENCH_OUT_DIR
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERIES=${BENCH_SERIES:-10000}
ROUNDS=${BENCH_ROUNDS:-60}
REPEAT=${BENCH_QUERY_REPEAT:-20}
ETCD_BIN=${ETCD_BIN:-etcd}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-prometheus}

LOG_PREFIX=hung-ingester
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

prepare_binaries_and_cpus
command -v "$ETCD_BIN" >/dev/null || die "no etcd: apt-get install etcd-server"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-hung.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; stop_pid "$p" KILL; done
  [[ -z ${BENCH_KEEP:-} ]] && rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT_DIR"
JSONL=$OUT_DIR/$(date -u +%Y-%m-%d)-hung-ingester-$(git -C "$ROOT" rev-parse --short HEAD).jsonl

ETCD_CLIENT=$(free_port) ETCD_PEER=$(free_port)
DIR=$WORK/etcd
mkdir -p "$DIR"
"$ETCD_BIN" --data-dir "$DIR/data" --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" >"$DIR/log" 2>&1 &
PID=$!
PIDS+=("$PID")
wait_ready etcd "http://127.0.0.1:$ETCD_CLIENT/health"

RING=(-ingester.ring.kvstore.store=etcd "-ingester.ring.kvstore.etcd.endpoints=127.0.0.1:$ETCD_CLIENT"
  -ingester.ring.replication_factor=3 -ingester.ring.heartbeat_period=1s -ingester.ring.num_tokens=64)

# strata NAME TARGET [FLAGS...]: starts a process; sets PID and HTTP.
strata() {
  local name=$1 target=$2
  shift 2
  DIR=$WORK/$name
  mkdir -p "$DIR"
  HTTP=$(free_port)
  "${PIN_TARGET[@]}" "$STRATA_BIN" "-config.file=$STRATA_CONFIG" "-target=$target" "${RING[@]}" \
    "-ingester.ring.instance_id=$name" "-server.http_listen_port=$HTTP" \
    "-server.grpc_listen_port=$(free_port)" "-blocks_storage.tsdb.dir=$DIR/tsdb" \
    "-blocks_storage.filesystem.dir=$WORK/bucket" "-blocks_storage.bucket_store.sync_dir=$DIR/sync" \
    "$@" >"$DIR/log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_ready "$name" "http://127.0.0.1:$HTTP/ready"
}

INGESTERS=()
for i in 0 1 2; do
  strata "ingester-$i" ingester
  INGESTERS+=("$PID")
done
strata front distributor,querier -limits.ingestion_rate=100000000 -limits.ingestion_burst_size=1000000000
FRONT_PID=$PID FRONT=http://127.0.0.1:$HTTP
for _ in $(seq 1 600); do
  curl -sf "$FRONT/ingester/ring" -H 'Accept: application/json' | grep -o '"ACTIVE"' | wc -l | grep -qx 3 && break
  sleep 0.1
done

log "pushing $SERIES series x $ROUNDS rounds"
"${PIN_GEN[@]}" "$STRATA_BENCH_BIN" push --url "$FRONT/api/v1/push" --pid "$FRONT_PID" \
  --series "$SERIES" --rounds "$ROUNDS" --system strata-rf3 --workload W1 --run 1 \
  --name "strata RF 3 push" >"$WORK/push.json" || die "push failed"
cat "$WORK/push.json" >>"$JSONL"

# query STATE: the query set, REPEAT times each, as run STATE.
query() {
  log "queries: $1"
  "${PIN_GEN[@]}" "$STRATA_BENCH_BIN" query --url "$FRONT/prometheus" --tenant bench-0 \
    --window-from "$WORK/push.json" --step 15 --repeat "$REPEAT" \
    --system "strata-rf3-$1" --workload Q --run 1 --name "strata RF 3, $1" >"$WORK/q-$1.json" \
    || die "queries ($1) failed"
  cat "$WORK/q-$1.json" >>"$JSONL"
}
sleep 3
query healthy
kill -STOP "${INGESTERS[2]}"
query one-hung
kill -CONT "${INGESTERS[2]}"
query resumed

# Prometheus on the same samples, for reference (remote-write receiver).
if command -v "$PROMETHEUS_BIN" >/dev/null; then
  DIR=$WORK/prometheus
  mkdir -p "$DIR"
  HTTP=$(free_port)
  printf 'global:\n  scrape_interval: 1h\n' >"$DIR/prometheus.yml"
  "${PIN_TARGET[@]}" "$PROMETHEUS_BIN" --config.file="$DIR/prometheus.yml" \
    --storage.tsdb.path="$DIR/data" --web.listen-address="127.0.0.1:$HTTP" \
    --web.enable-remote-write-receiver >"$DIR/log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_ready prometheus "http://127.0.0.1:$HTTP/-/ready"
  "${PIN_GEN[@]}" "$STRATA_BENCH_BIN" push --url "http://127.0.0.1:$HTTP/api/v1/write" --pid "$PID" \
    --series "$SERIES" --rounds "$ROUNDS" --system prometheus --workload W1 --run 1 \
    --name "prometheus push" >"$WORK/push-prom.json" || die "push to Prometheus failed"
  sleep 3
  "${PIN_GEN[@]}" "$STRATA_BENCH_BIN" query --url "http://127.0.0.1:$HTTP" --tenant bench-0 \
    --window-from "$WORK/push-prom.json" --step 15 --repeat "$REPEAT" \
    --system prometheus --workload Q --run 1 --name "prometheus" >"$WORK/q-prometheus.json" \
    || die "queries against Prometheus failed"
  cat "$WORK/q-prometheus.json" >>"$JSONL"
fi

# The table: per query, median and slowest (ms) in each state.
python3 - "$WORK" <<'EOF'
import json, sys, os
work = sys.argv[1]
states = [s for s in ["healthy", "one-hung", "resumed", "prometheus"] if os.path.exists(f"{work}/q-{s}.json")]
data = {s: json.load(open(f"{work}/q-{s}.json")) for s in states}
print("| query | " + " | ".join(f"{s} p50 / max ms" for s in states) + " |")
print("|---|" + "---|" * len(states))
for i, q in enumerate(data[states[0]]["queries"]):
    cells = []
    for s in states:
        r = data[s]["queries"][i]
        cell = f"{r['median_ms']:.1f} / {r['max_ms']:.1f}"
        if r.get("error"):
            cell += " (error: " + str(r["error"])[:60] + ")"
        cells.append(cell)
    print(f"| `{q['query']}` | " + " | ".join(cells) + " |")
EOF
log "raw results: $JSONL"
