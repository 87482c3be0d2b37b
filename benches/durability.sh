#!/usr/bin/env bash
# What a process crash right after the last acknowledged push loses, for each
# system of `make bench`: start it fresh, push BENCH_SERIES series x
# BENCH_ROUNDS rounds with strata-bench (every request acknowledged), kill it
# with SIGKILL at once, start it again on the same data directory and count
# the samples it answers for (the raw samples of `{__name__=~".+"}[1h]` at the
# push's window end, on the whole minute just after the last sample). Then the same with BENCH_WAIT seconds (10) between the
# last acknowledgement and the kill: what background flushing saves, and a
# check that the count query works on every system. A machine crash (the OS losing its page cache) is
# not something this can show: it tells apart "on disk or in the OS" from
# "only in the process's memory". Prints a Markdown table.
#
# Knobs (environment): BENCH_SERIES=10000 BENCH_ROUNDS=10 BENCH_WAIT=10
#   BENCH_SYSTEMS="strata strata-fsync-never prometheus victoria-metrics"
#   BENCH_TARGET_CPU=1 BENCH_GEN_CPU=0 BENCH_NO_BUILD=1 STRATA_BIN STRATA_BENCH_BIN
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERIES=${BENCH_SERIES:-10000}
ROUNDS=${BENCH_ROUNDS:-10}
WAIT=${BENCH_WAIT:-10}
SYSTEMS=${BENCH_SYSTEMS:-strata strata-fsync-never prometheus victoria-metrics}

LOG_PREFIX=durability
# shellcheck source=benches/lib.sh
source "$ROOT/benches/lib.sh"

prepare_binaries_and_cpus

PID='' DIR=''
cleanup() { stop_pid "$PID" KILL; if [[ -n $DIR && -z ${BENCH_KEEP:-} ]]; then rm -rf "$DIR"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# start SYSTEM: starts it on $DIR (created by the caller); sets PID, PUSH_URL, QUERY_URL, HEADER.
start() {
  local sys=$1 http grpc ready fsync=always
  http=$(free_port)
  HEADER=()
  case $sys in
    strata|strata-fsync-never)
      [[ $sys = strata-fsync-never ]] && fsync=never
      grpc=$(free_port)
      (cd "$DIR" && exec "${PIN_TARGET[@]}" "$STRATA_BIN" -target=all -config.file="$STRATA_CONFIG" \
        -server.http_listen_port="$http" -server.grpc_listen_port="$grpc" \
        -blocks_storage.tsdb.wal_fsync="$fsync" >>"$DIR/log" 2>&1) &
      PUSH_URL=http://127.0.0.1:$http/api/v1/push
      QUERY_URL=http://127.0.0.1:$http/prometheus/api/v1/query
      HEADER=(-H "X-Scope-OrgID: bench-0")
      ready=http://127.0.0.1:$http/ready
      ;;
    prometheus)
      printf 'global:\n  scrape_interval: 15s\n' >"$DIR/prometheus.yml"
      (cd "$DIR" && exec "${PIN_TARGET[@]}" prometheus --config.file="$DIR/prometheus.yml" \
        --storage.tsdb.path="$DIR/data" --web.listen-address="127.0.0.1:$http" \
        --web.enable-remote-write-receiver >>"$DIR/log" 2>&1) &
      PUSH_URL=http://127.0.0.1:$http/api/v1/write
      QUERY_URL=http://127.0.0.1:$http/api/v1/query
      ready=http://127.0.0.1:$http/-/ready
      ;;
    victoria-metrics)
      (cd "$DIR" && exec "${PIN_TARGET[@]}" victoria-metrics -storageDataPath="$DIR/data" \
        -httpListenAddr="127.0.0.1:$http" -search.disableCache -search.latencyOffset=0s \
        >>"$DIR/log" 2>&1) &
      PUSH_URL=http://127.0.0.1:$http/api/v1/write
      QUERY_URL=http://127.0.0.1:$http/api/v1/query
      ready=http://127.0.0.1:$http/health
      ;;
    *) die "unknown system $sys" ;;
  esac
  PID=$!
  wait_ready "$sys" "$ready"
}

# samples_at END_SECONDS: the samples the running system holds in the hour up
# to then (an instant query of a range selector answers with the raw samples).
samples_at() {
  curl -sf "${HEADER[@]}" "$QUERY_URL" --data-urlencode 'query={__name__=~".+"}[1h]' \
    --data-urlencode "time=$1" \
    | python3 -c 'import json, sys; print(sum(len(s["values"]) for s in json.load(sys.stdin)["data"]["result"]))'
}

echo "| system | samples acknowledged | after SIGKILL at once, and restart | after SIGKILL ${WAIT} s later, and restart |"
echo "|---|---|---|---|"
for sys in $SYSTEMS; do
  row="| $sys"
  for wait in 0 "$WAIT"; do
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-durability-$sys.XXXXXX")
    start "$sys"
    report=$DIR/push.json
    "${PIN_GEN[@]}" "$STRATA_BENCH_BIN" push --url "$PUSH_URL" --series "$SERIES" --rounds "$ROUNDS" \
      --system "$sys" >"$report"
    sleep "$wait"
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
    accepted=$(grep -o '"samples_accepted":[0-9]*' "$report" | cut -d: -f2)
    end=$(grep -o '"window_end_ms":[0-9]*' "$report" | cut -d: -f2)
    log "$sys: $accepted samples acknowledged, killed after ${wait} s; restarting"
    start "$sys"
    after=$(samples_at "$((end / 1000))")
    [[ $wait = 0 ]] && row="$row | $accepted"
    row="$row | $after"
    stop_pid "$PID" TERM
    PID=''
    if [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$DIR"; fi
    DIR=''
  done
  echo "$row |"
done
