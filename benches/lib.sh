# Shell shared by benches/run.sh (`make bench`) and benches/wal.sh: logging, the
# release build, CPU pinning, free loopback ports and stopping a target process.
# Source it after setting ROOT, TARGET_DIR, STRATA_BIN, STRATA_BENCH_BIN,
# TARGET_CPU, GEN_CPU and LOG_PREFIX.

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
