# Shell shared by benches/run.sh (`make bench`), benches/wal.sh and
# benches/durability.sh: the knobs they all take, logging, the release build,
# CPU pinning, free loopback ports, waiting for a target to be ready and
# stopping it. Source it after setting ROOT and LOG_PREFIX.

# The knobs every script takes (environment): BENCH_TARGET_CPU=1
# BENCH_GEN_CPU=0 BENCH_OUT_DIR=benches/results STRATA_BIN STRATA_BENCH_BIN.
TARGET_CPU=${BENCH_TARGET_CPU:-1}
GEN_CPU=${BENCH_GEN_CPU:-0}
OUT_DIR=${BENCH_OUT_DIR:-$ROOT/benches/results}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STRATA_BIN=${STRATA_BIN:-$TARGET_DIR/release/strata}
STRATA_BENCH_BIN=${STRATA_BENCH_BIN:-$TARGET_DIR/release/strata-bench}
STRATA_CONFIG=$ROOT/benches/strata-bench.yaml

log() { echo "$LOG_PREFIX: $*" >&2; }
die() { log "$*"; exit 1; }

# Builds strata and strata-bench (release) unless BENCH_NO_BUILD is set, and
# checks both binaries are there.
build_binaries() {
  if [[ -z ${BENCH_NO_BUILD:-} ]]; then
    log "building strata and strata-bench (release) into $TARGET_DIR"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -p strata -p strata-bench >&2)
  fi
  [[ -x $STRATA_BIN ]] || die "no strata binary at $STRATA_BIN"
  [[ -x $STRATA_BENCH_BIN ]] || die "no strata-bench binary at $STRATA_BENCH_BIN"
}

# What every script does before its first target: checks curl is there,
# builds the binaries (build_binaries) and sets the CPU pinning (set_pinning).
prepare_binaries_and_cpus() {
  command -v curl >/dev/null || die "curl not found: apt-get install curl"
  build_binaries
  set_pinning
}

# Sets PIN_TARGET and PIN_GEN: the taskset prefixes that keep the target and
# the generator on their own CPUs (empty, with a warning, where that is not possible).
set_pinning() {
  PIN_TARGET=() PIN_GEN=()
  if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
    PIN_TARGET=(taskset -c "$TARGET_CPU") PIN_GEN=(taskset -c "$GEN_CPU")
  else
    log "WARNING: taskset missing or fewer than 2 CPUs: target and generator are not pinned"
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if port_free "$p"; then echo "$p"; return; fi
  done
  die "no free port found"
}

# wait_ready NAME URL: waits up to 60 s until URL answers 2xx while the target
# ($PID, logging to $DIR/log) runs; dies with the log's tail if it exits or
# is not ready by then.
wait_ready() {
  local name=$1 url=$2
  for _ in $(seq 1 1200); do
    if curl -sf -o /dev/null "$url"; then return; fi
    kill -0 "$PID" 2>/dev/null || { tail -n 30 "$DIR/log" >&2; die "$name exited while starting"; }
    sleep 0.05
  done
  tail -n 30 "$DIR/log" >&2
  die "$name not ready after 60 s"
}

# stop_pid PID [SIGNAL]: sends SIGNAL (TERM), waits up to 30 s, then SIGKILL.
stop_pid() {
  local pid=$1 sig=${2:-TERM}
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}
