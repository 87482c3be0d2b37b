#!/usr/bin/env bash
# The WAL's cost: Strata (-target=all, benches/strata-bench.yaml) ingesting the
# same workload with the WAL on (each mode in BENCH_WAL_MODES) and off
# (-blocks_storage.tsdb.wal_enabled=false), BENCH_RUNS times each, alternating,
# each run on a fresh data directory. strata-bench pushes BENCH_SERIES series x
# BENCH_ROUNDS rounds and reports the target's CPU per sample; WAL bytes per
# sample come from the ingester's own counters (strata_ingester_wal_written_bytes_total
# over strata_ingester_ingested_samples_total). After every WAL-on run the
# process is killed with SIGKILL and restarted on its directory: the replay's
# peak RSS (VmHWM of the new process once ready) is set against the steady
# state (VmRSS after the push). Prints a Markdown table of medians (min-max).
#
# Knobs (environment): BENCH_SERIES=100000 BENCH_ROUNDS=10 BENCH_RUNS=3
#   BENCH_WAL_MODES="always" (wal_fsync values to run with the WAL on)
#   BENCH_BATCH=2000 BENCH_CONCURRENCY=8 BENCH_TARGET_CPU=1 BENCH_GEN_CPU=0
#   BENCH_NO_BUILD=1 BENCH_OUT_DIR=benches/results STRATA_BIN STRATA_BENCH_BIN
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERIES=${BENCH_SERIES:-100000}
ROUNDS=${BENCH_ROUNDS:-10}
RUNS=${BENCH_RUNS:-3}
WAL_MODES=${BENCH_WAL_MODES:-always}
BATCH=${BENCH_BATCH:-2000}
CONCURRENCY=${BENCH_CONCURRENCY:-8}

LOG_PREFIX=wal-bench
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

prepare_binaries_and_cpus

mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
TSV=$OUT_DIR/wal-$STAMP.tsv
OUT=$OUT_DIR/wal-$STAMP.md
printf 'mode\trun\tsamples\tcpu_us_per_sample\tsamples_per_second\twal_bytes_per_sample\tsteady_rss_mib\treplay_peak_rss_mib\trss_after_replay_mib\treplay_seconds\n' >"$TSV"

PID='' DIR='' HTTP=''
kill_target() {
  stop_pid "$PID" "${1:-TERM}"
  PID=''
}
cleanup() { kill_target TERM; if [[ -n $DIR && -z ${BENCH_KEEP:-} ]]; then rm -rf "$DIR"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM


# start_strata WAL_FLAGS...: starts strata on $DIR; sets PID, HTTP.
start_strata() {
  local grpc
  HTTP=$(free_port) grpc=$(free_port)
  (cd "$DIR" && exec "${PIN_TARGET[@]}" "$STRATA_BIN" -target=all -config.file="$STRATA_CONFIG" \
    -server.http_listen_port="$HTTP" -server.grpc_listen_port="$grpc" \
    -blocks_storage.tsdb.dir="$DIR/tsdb" -blocks_storage.filesystem.dir="$DIR/blocks" \
    "$@" >>"$DIR/log" 2>&1) &
  PID=$!
  wait_ready strata "http://127.0.0.1:$HTTP/ready"
}

status_mib() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
metric() { curl -sf "http://127.0.0.1:$HTTP/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%.0f", s }'; }
json_field() { grep -o "\"$2\":[0-9.e+-]*" "$1" | head -1 | cut -d: -f2; }

# run MODE RUN: MODE is "off" or a wal_fsync value.
run() {
  local mode=$1 run=$2 report flags=() cpu sps samples wal_bytes wal_per steady peak after t0 t1
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-wal-bench.XXXXXX")
  if [[ $mode = off ]]; then flags=(-blocks_storage.tsdb.wal_enabled=false)
  else flags=(-blocks_storage.tsdb.wal_enabled=true -blocks_storage.tsdb.wal_fsync="$mode"); fi
  start_strata "${flags[@]}"
  report=$DIR/push.json
  log "run $run, WAL $mode: $SERIES series x $ROUNDS rounds"
  "${PIN_GEN[@]}" "$STRATA_BENCH_BIN" push --url "http://127.0.0.1:$HTTP/api/v1/push" --pid "$PID" \
    --series "$SERIES" --rounds "$ROUNDS" --batch "$BATCH" --concurrency "$CONCURRENCY" \
    --system strata --workload "wal-$mode" --run "$run" --name "strata WAL $mode run $run" >"$report" \
    || { tail -n 30 "$DIR/log" >&2; die "push failed"; }
  grep -q '"first_error"' "$report" && die "strata rejected samples: $(grep -o '"first_error":"[^"]*' "$report" | head -c 300)"
  cpu=$(json_field "$report" cpu_us_per_sample)
  sps=$(json_field "$report" samples_per_second)
  samples=$(metric strata_ingester_ingested_samples_total)
  wal_bytes=$(metric strata_ingester_wal_written_bytes_total)
  wal_per=$(awk -v b="$wal_bytes" -v s="$samples" 'BEGIN { printf "%.2f", (s > 0 ? b / s : 0) }')
  steady=$(status_mib "$PID" VmRSS)
  peak='-' after='-' replay='-'
  if [[ $mode != off ]]; then
    kill_target KILL
    t0=$(date +%s.%N)
    start_strata "${flags[@]}"
    t1=$(date +%s.%N)
    peak=$(status_mib "$PID" VmHWM)
    after=$(status_mib "$PID" VmRSS)
    replay=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$run" "$samples" "$cpu" "$sps" "$wal_per" \
    "$steady" "$peak" "$after" "$replay" >>"$TSV"
  log "  cpu ${cpu} us/sample, ${wal_per} WAL B/sample, steady RSS ${steady} MiB, replay peak ${peak} MiB"
  kill_target TERM
  [[ -z ${BENCH_KEEP:-} ]] && rm -rf "$DIR"
  DIR=''
}

for r in $(seq 1 "$RUNS"); do
  for mode in off $WAL_MODES; do run "$mode" "$r"; done
done

# Medians (min-max) per mode and column.
summary() {
  awk -F'\t' 'NR > 1 { print }' "$TSV" | awk -F'\t' '
    function cell(mode, col,   n, i, j, t, a) {
      n = 0
      for (i = 1; i <= rows[mode]; i++) { v = val[mode, i, col]; if (v != "-") a[++n] = v + 0 }
      if (n == 0) return "-"
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return sprintf("%g (%g-%g)", (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2), a[1], a[n])
    }
    { m = $1; rows[m]++; for (c = 3; c <= NF; c++) val[m, rows[m], c] = $c; if (!(m in seen)) { seen[m] = 1; order[++k] = m } }
    END {
      print "| WAL | CPU µs/sample | samples/s | WAL bytes/sample | steady RSS MiB | replay peak RSS MiB | RSS after replay MiB | restart to ready s |"
      print "|---|---|---|---|---|---|---|---|"
      for (i = 1; i <= k; i++) { m = order[i]
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", (m == "off" ? "off" : "on, fsync " m),
          cell(m, 4), cell(m, 5), cell(m, 6), cell(m, 7), cell(m, 8), cell(m, 9), cell(m, 10) }
    }'
}
{
  echo "### WAL on vs off, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  cmd=""
  for v in $(env | grep -o '^BENCH_[A-Z0-9_]*' | sort); do cmd="$cmd$v=${!v} "; done
  echo "- command: \`${cmd}benches/wal.sh\`"
  echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs; target on CPU ${PIN_TARGET[2]:-any}, generator on CPU ${PIN_GEN[2]:-any}"
  echo "- $SERIES series x $ROUNDS rounds, batch $BATCH, $CONCURRENCY in flight, $RUNS run(s) per mode; raw: $(basename "$TSV")"
  echo
  summary
} | tee "$OUT"
log "results: $OUT"
