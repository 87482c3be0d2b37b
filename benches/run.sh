#!/usr/bin/env bash
# `make bench`: Strata side by side with Prometheus and VictoriaMetrics on this
# machine, in one run. Each system is started fresh on 127.0.0.1 in its own temp
# dir, pinned to one CPU (taskset), and fed by strata-bench pinned to another:
#   W1 (100k series x 60 rounds) BENCH_RUNS times, alternating the systems, each
#      followed by the query set Q over the pushed window;
#   W2 (1M series x 10 rounds) once per system.
# Prints a Markdown table of medians (min-max) and writes it, with the raw JSON
# lines, under BENCH_OUT_DIR. See docs/benchmarks.md for the workloads and knobs.
#
# Knobs (environment):
#   BENCH_SCALE=1          multiplies the series counts (0.1: W1 10k, W2 100k series)
#   BENCH_W1_ROUNDS=60 BENCH_W2_ROUNDS=10 BENCH_RUNS=3
#   BENCH_W1_SERIES / BENCH_W2_SERIES   exact series counts (override the scale)
#   BENCH_SYSTEMS="strata strata-fsync-never prometheus victoria-metrics"  BENCH_WORKLOADS="W1 W2"
#   BENCH_BATCH=2000 BENCH_CONCURRENCY=8 BENCH_CHURN=0 BENCH_TENANTS=1
#   BENCH_HA_REPLICAS=1    2: every series sent by both replicas of an HA pair; Strata
#                          runs its HA tracker (one copy stored, the other answered 202)
#   BENCH_OOO_FRACTION=0   0.1: a tenth of the samples sent one interval late (after a
#                          newer one); Strata and Prometheus then run with an
#   BENCH_OOO_WINDOW=10m   out-of-order window of this (VictoriaMetrics takes any order)
#   BENCH_QUERY_REPEAT=5 BENCH_QUERY_DELAY=3 (s) BENCH_SETTLE=0 (s)
#   BENCH_TARGET_CPU=1 BENCH_GEN_CPU=0   CPUs for taskset
#   BENCH_NO_BUILD=1       use the binaries already built
#   BENCH_OUT_DIR=benches/results  BENCH_KEEP=1 keeps the systems' temp dirs
#   STRATA_BIN, STRATA_BENCH_BIN, PROMETHEUS_BIN, VICTORIA_METRICS_BIN
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=${BENCH_SCALE:-1}
scaled() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s + 0.5); if (v < 100) v = 100; print v }'; }
W1_SERIES=${BENCH_W1_SERIES:-$(scaled 100000)}
W2_SERIES=${BENCH_W2_SERIES:-$(scaled 1000000)}
W1_ROUNDS=${BENCH_W1_ROUNDS:-60}
W2_ROUNDS=${BENCH_W2_ROUNDS:-10}
RUNS=${BENCH_RUNS:-3}
SYSTEMS=${BENCH_SYSTEMS:-strata strata-fsync-never prometheus victoria-metrics}
WORKLOADS=${BENCH_WORKLOADS:-W1 W2}
BATCH=${BENCH_BATCH:-2000}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
CHURN=${BENCH_CHURN:-0}
TENANTS=${BENCH_TENANTS:-1}
HA_REPLICAS=${BENCH_HA_REPLICAS:-1}
HA_FLAGS=()
if (( HA_REPLICAS > 1 )); then
  HA_FLAGS=(-distributor.ha_tracker.enable_ha_tracker=true -limits.accept_ha_samples=true)
fi
OOO_FRACTION=${BENCH_OOO_FRACTION:-0}
OOO_WINDOW=${BENCH_OOO_WINDOW:-10m}
OOO_FLAGS=()
PROMETHEUS_STORAGE=''
if [[ $OOO_FRACTION != 0 ]]; then
  OOO_FLAGS=(-limits.out_of_order_time_window="$OOO_WINDOW")
  PROMETHEUS_STORAGE=$(printf 'storage:\n  tsdb:\n    out_of_order_time_window: %s\n' "$OOO_WINDOW")
fi
QUERY_REPEAT=${BENCH_QUERY_REPEAT:-5}
QUERY_DELAY=${BENCH_QUERY_DELAY:-3}
SETTLE=${BENCH_SETTLE:-0}
PROMETHEUS_BIN=${PROMETHEUS_BIN:-prometheus}
VICTORIA_METRICS_BIN=${VICTORIA_METRICS_BIN:-victoria-metrics}

LOG_PREFIX=bench
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

# --- prerequisites ----------------------------------------------------------
# The peers come from Debian's packages; install what is missing (as `make deps-build` does).
missing=()
for sys in $SYSTEMS; do
  case $sys in
    prometheus) command -v "$PROMETHEUS_BIN" >/dev/null || missing+=(prometheus) ;;
    victoria-metrics) command -v "$VICTORIA_METRICS_BIN" >/dev/null || missing+=(victoria-metrics) ;;
  esac
done
command -v curl >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
if (( ${#missing[@]} )); then
  log "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) = 0 ]]; then SUDO=(); else SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "could not install ${missing[*]}; install them yourself and retry"
  # Debian starts the packaged services; the benchmark runs its own instances.
  for svc in prometheus victoria-metrics; do
    if command -v systemctl >/dev/null; then systemctl stop "$svc" 2>/dev/null || true; fi
  done
fi
for sys in $SYSTEMS; do
  case $sys in
    strata|strata-fsync-never) ;;
    prometheus) command -v "$PROMETHEUS_BIN" >/dev/null || die "prometheus not found: apt-get install prometheus" ;;
    victoria-metrics) command -v "$VICTORIA_METRICS_BIN" >/dev/null || die "victoria-metrics not found: apt-get install victoria-metrics" ;;
    *) die "unknown system $sys (strata, strata-fsync-never, prometheus, victoria-metrics)" ;;
  esac
done
prepare_binaries_and_cpus

mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
JSONL=$OUT_DIR/bench-$STAMP.jsonl
OUT=$OUT_DIR/bench-$STAMP.md
: >"$JSONL"
# Each system's answers to Q, per run, for strata-bench compare.
ANSWERS=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-answers.XXXXXX")
DIFFERED=''

# --- one system at a time -----------------------------------------------------
PID='' DIR=''
stop_target() {
  stop_pid "$PID" TERM
  PID=''
  if [[ -n $DIR && -z ${BENCH_KEEP:-} ]]; then rm -rf "$DIR"; fi
  DIR=''
}
cleanup() {
  stop_target
  if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$ANSWERS"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts $1 fresh; sets PID, DIR, PUSH_URL, QUERY_URL. Another process may
# take a port between free_port and the bind (the machine is shared): a start
# that fails is retried on new ports, twice.
start_target() {
  local attempt
  for attempt in 1 2 3; do
    if try_start "$1"; then return; fi
    tail -n 30 "$DIR/log" >&2
    stop_target
    log "$1 did not start (attempt $attempt)"
  done
  die "$1 did not start"
}

# try_start SYSTEM: one start of start_target; fails if the system exits or is
# not ready within 60 s.
try_start() {
  local sys=$1 http grpc ready
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-$sys.XXXXXX")
  http=$(free_port)
  case $sys in
    strata|strata-fsync-never)
      # strata-fsync-never: the WAL is written before a push is acknowledged
      # but not fsynced (survives kill -9, not a machine crash), like Prometheus.
      local fsync=always
      [[ $sys = strata-fsync-never ]] && fsync=never
      grpc=$(free_port)
      (cd "$DIR" && exec "${PIN_TARGET[@]}" "$STRATA_BIN" -target=all -config.file="$STRATA_CONFIG" \
        -server.http_listen_port="$http" -server.grpc_listen_port="$grpc" \
        -blocks_storage.tsdb.wal_fsync="$fsync" "${HA_FLAGS[@]}" "${OOO_FLAGS[@]}" >"$DIR/log" 2>&1) &
      PUSH_URL=http://127.0.0.1:$http/api/v1/push
      QUERY_URL=http://127.0.0.1:$http/prometheus
      ready=http://127.0.0.1:$http/ready
      ;;
    prometheus)
      printf 'global:\n  scrape_interval: 15s\n%s\n' "$PROMETHEUS_STORAGE" >"$DIR/prometheus.yml"
      (cd "$DIR" && exec "${PIN_TARGET[@]}" "$PROMETHEUS_BIN" --config.file="$DIR/prometheus.yml" \
        --storage.tsdb.path="$DIR/data" --web.listen-address="127.0.0.1:$http" \
        --web.enable-remote-write-receiver >"$DIR/log" 2>&1) &
      PUSH_URL=http://127.0.0.1:$http/api/v1/write
      QUERY_URL=http://127.0.0.1:$http
      ready=http://127.0.0.1:$http/-/ready
      ;;
    victoria-metrics)
      # No result cache (the query times measure evaluation, as for the others)
      # and no latency offset (the newest samples are queryable at once).
      (cd "$DIR" && exec "${PIN_TARGET[@]}" "$VICTORIA_METRICS_BIN" -storageDataPath="$DIR/data" \
        -httpListenAddr="127.0.0.1:$http" -search.disableCache -search.latencyOffset=0s \
        >"$DIR/log" 2>&1) &
      PUSH_URL=http://127.0.0.1:$http/api/v1/write
      QUERY_URL=http://127.0.0.1:$http
      ready=http://127.0.0.1:$http/health
      ;;
  esac
  PID=$!
  for _ in $(seq 1 600); do
    if curl -sf -o /dev/null "$ready"; then return 0; fi
    kill -0 "$PID" 2>/dev/null || { log "$sys exited while starting"; return 1; }
    sleep 0.1
  done
  log "$sys not ready after 60 s"
  return 1
}

# push SYSTEM WORKLOAD RUN SERIES ROUNDS
push() {
  local sys=$1 w=$2 run=$3 series=$4 rounds=$5 report
  report=$DIR/push.json
  log "$w run $run: $sys, $series series x $rounds rounds"
  if ! "${PIN_GEN[@]}" "$STRATA_BENCH_BIN" push --url "$PUSH_URL" --pid "$PID" \
      --series "$series" --rounds "$rounds" --batch "$BATCH" --concurrency "$CONCURRENCY" \
      --churn "$CHURN" --tenants "$TENANTS" --settle "$SETTLE" --ha-replicas "$HA_REPLICAS" \
      --out-of-order-fraction "$OOO_FRACTION" \
      --system "$sys" --workload "$w" --run "$run" --name "$sys $w run $run" >"$report"; then
    tail -n 30 "$DIR/log" >&2
    die "push to $sys failed"
  fi
  cat "$report" >>"$JSONL"
  grep -q '"first_error"' "$report" && log "  $sys rejected samples: $(grep -o '"first_error":"[^"]*' "$report" | head -c 300)"
  return 0
}

# queries SYSTEM RUN: the set Q over the window just pushed.
queries() {
  local sys=$1 run=$2
  sleep "$QUERY_DELAY"
  log "Q run $run: $sys"
  "${PIN_GEN[@]}" "$STRATA_BENCH_BIN" query --url "$QUERY_URL" --tenant bench-0 \
    --window-from "$DIR/push.json" --step 15 --repeat "$QUERY_REPEAT" \
    --answers-out "$ANSWERS/$sys-$run.json" \
    --system "$sys" --workload Q --run "$run" --name "$sys Q run $run" >>"$JSONL" \
    || die "queries against $sys failed"
}

# compare_answers RUN: every system's answers of run RUN against Prometheus's
# of the same run. A Strata answer that differs marks the run as failed;
# VictoriaMetrics' differences (MetricsQL is not PromQL) are only reported.
compare_answers() {
  local run=$1 sys strict
  local ref=$ANSWERS/prometheus-$run.json
  if [[ ! -f $ref ]]; then
    log "WARNING: no Prometheus answers for run $run: Q's values are not checked"
    return
  fi
  for sys in $SYSTEMS; do
    [[ $sys = prometheus || ! -f $ANSWERS/$sys-$run.json ]] && continue
    strict=()
    [[ $sys = strata* ]] && strict=(--strict)
    if ! "$STRATA_BENCH_BIN" compare --reference "$ref" --answers "$ANSWERS/$sys-$run.json" \
        "${strict[@]}" --system "$sys" --workload Q --run "$run" --name "$sys Q run $run vs prometheus" \
        >>"$JSONL"; then
      log "RUN FAILED: $sys's answers to Q (run $run) differ from Prometheus's (above)"
      DIFFERED=1
    fi
  done
}

for w in $WORKLOADS; do
  case $w in
    W1)
      for run in $(seq 1 "$RUNS"); do
        for sys in $SYSTEMS; do
          start_target "$sys"
          push "$sys" W1 "$run" "$W1_SERIES" "$W1_ROUNDS"
          queries "$sys" "$run"
          stop_target
        done
        compare_answers "$run"
      done
      ;;
    W2)
      for sys in $SYSTEMS; do
        start_target "$sys"
        push "$sys" W2 1 "$W2_SERIES" "$W2_ROUNDS"
        stop_target
      done
      ;;
    *) die "unknown workload $w (W1, W2)" ;;
  esac
done

# --- the table ----------------------------------------------------------------
version_of() {
  case $1 in
    strata|strata-fsync-never)
      local rev
      rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
      [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -1) ]] && rev="$rev+local changes"
      echo "strata $rev" ;;
    # Debian's victoria-metrics build prints an empty -version: ask dpkg first.
    prometheus) echo "prometheus $(dpkg-query -W -f='${Version}' prometheus 2>/dev/null \
      || "$PROMETHEUS_BIN" --version 2>&1 | head -1)" ;;
    victoria-metrics) echo "victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null \
      || "$VICTORIA_METRICS_BIN" -version 2>&1 | head -1)" ;;
  esac
}
{
  echo "### strata-bench results, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  cmd=""
  for v in $(env | grep -o '^BENCH_[A-Z0-9_]*' | sort); do cmd="$cmd$v=${!v} "; done
  cmd="${cmd}make bench"
  echo "- command: \`$cmd\`"
  echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r); target on CPU ${PIN_TARGET[2]:-any}, generator on CPU ${PIN_GEN[2]:-any}"
  echo "- versions: $(for s in $SYSTEMS; do version_of "$s"; done | sort -u | paste -sd ';' | sed 's/;/; /g')"
  echo "- W1: $W1_SERIES series x $W1_ROUNDS rounds, $RUNS run(s); W2: $W2_SERIES series x $W2_ROUNDS rounds, 1 run; Q: each query $QUERY_REPEAT times per W1 run (the cell is the median over runs of each run's median)"
  echo "- batch $BATCH samples/request, $CONCURRENCY in flight, churn $CHURN per round, $TENANTS tenant(s); raw results: $(basename "$JSONL").gz (\`strata-bench report\` renders these tables from it)"
  echo
  "$STRATA_BENCH_BIN" report "$JSONL"
} | tee "$OUT"
gzip -9 -f "$JSONL"
log "results: $OUT, raw: $JSONL.gz"
if [[ -n $DIFFERED ]]; then
  log "RUN FAILED: Strata answered some queries of Q differently from Prometheus (see the answers table)"
  exit 1
fi
