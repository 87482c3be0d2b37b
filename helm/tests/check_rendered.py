#!/usr/bin/env python3
"""Asserts on the manifests `helm template` rendered for one test case.

Usage: check_rendered.py CASE RENDERED.yaml OUT_DIR

Checks what holds in every case (probes on /ready, -config.expand-env with
POD_NAME/POD_IP set, a PDB per workload, selectors matching their pods, the
StatefulSets' headless Services, resource requests, the ingesting pods' WAL
volume, grace period, anti-affinity and zone spread) and what each case
promises (see EXPECT below). Writes OUT_DIR/strata.yaml (the ConfigMap's
strata config) and OUT_DIR/flags (each workload's strata flags but the
config file's, one workload per line, for `strata -config.verify`, which then
checks the config as that pod runs it: its -target, its zone). Exits non-zero naming every failed check.
"""

import os
import sys

import yaml

CASE, RENDERED, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
FAILURES = []
CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        FAILURES.append(what)
    return cond


with open(RENDERED, encoding="utf-8") as f:
    docs = [d for d in yaml.safe_load_all(f) if d]

by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)


def component(obj):
    return obj["metadata"]["labels"].get("app.kubernetes.io/component")


def strata_workloads():
    out = []
    for kind in ("StatefulSet", "Deployment"):
        for w in by_kind.get(kind, []):
            if component(w) != "etcd":
                out.append(w)
    return out


def container(w, name="strata"):
    cs = [c for c in w["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return cs[0] if cs else None


def arg(c, flag):
    for a in c.get("args", []) + c.get("command", []):
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def subset(small, big):
    return all(big.get(k) == v for k, v in small.items())


# ---- the ConfigMap and the strata config in it ----
cms = [c for c in by_kind.get("ConfigMap", []) if "strata.yaml" in c.get("data", {})]
check(len(cms) == 1, "exactly one ConfigMap holds strata.yaml")
config_text = cms[0]["data"]["strata.yaml"] if cms else ""
config = yaml.safe_load(config_text) or {}
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "strata.yaml"), "w", encoding="utf-8") as f:
    f.write(config_text)
ring = config.get("ingester", {}).get("ring", {})
check(ring.get("kvstore", {}).get("store") == "etcd", "config: ring store is etcd")
endpoints = ring.get("kvstore", {}).get("etcd", {}).get("endpoints") or []
check(len(endpoints) >= 1, "config: at least one etcd endpoint")
check(ring.get("instance_addr") == "${POD_IP}:9095", "config: instance_addr is ${POD_IP}:9095")
check(ring.get("instance_id") == "${POD_NAME}", "config: instance_id is ${POD_NAME}")
check(config.get("server", {}).get("http_listen_address") == "0.0.0.0", "config: HTTP listens on all addresses")
check(config.get("server", {}).get("grpc_listen_address") == "0.0.0.0", "config: gRPC listens on all addresses")
check("target" not in config, "config: no target in the file (each workload passes -target)")

# ---- every strata workload ----
workloads = strata_workloads()
targets = set()
pod_flags = set()
check(len(workloads) > 0, "some strata workload is rendered")
services = by_kind.get("Service", [])
pdbs = by_kind.get("PodDisruptionBudget", [])
for w in workloads:
    name = f"{w['kind']}/{w['metadata']['name']}"
    spec = w["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(subset(spec["selector"]["matchLabels"], labels), f"{name}: selector matches its pod labels")
    check("checksum/config" in spec["template"]["metadata"].get("annotations", {}), f"{name}: config checksum annotation")
    c = container(w)
    if not check(c is not None, f"{name}: has a strata container"):
        continue
    target = arg(c, "-target")
    targets.add(target)
    pod_flags.add(" ".join(a for a in c.get("args", [])
                           if a.startswith("-") and not a.startswith(("-config.file=", "-config.expand-env"))))
    check(arg(c, "-config.file") == "/etc/strata/strata.yaml", f"{name}: -config.file=/etc/strata/strata.yaml")
    check("-config.expand-env" in c.get("args", []), f"{name}: -config.expand-env")
    env = {e["name"]: e for e in c.get("env", [])}
    check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
          f"{name}: POD_NAME from metadata.name")
    check(env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP",
          f"{name}: POD_IP from status.podIP")
    probe = c.get("readinessProbe", {}).get("httpGet", {})
    check(probe.get("path") == "/ready" and probe.get("port") in ("http", 9009), f"{name}: readiness probe on /ready")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports == {"http": 9009, "grpc": 9095}, f"{name}: ports http 9009 and grpc 9095")
    req = c.get("resources", {}).get("requests", {})
    check("cpu" in req and "memory" in req, f"{name}: cpu and memory requests")
    mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
    check(mounts.get("config") == "/etc/strata", f"{name}: config mounted at /etc/strata")
    check(mounts.get("data") == "/data", f"{name}: data volume at /data")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    cm_name = cms[0]["metadata"]["name"] if cms else None
    check(vols.get("config", {}).get("configMap", {}).get("name") == cm_name, f"{name}: mounts the strata ConfigMap")
    check(any(p["spec"]["selector"]["matchLabels"].items() <= labels.items() for p in pdbs),
          f"{name}: a PodDisruptionBudget covers its pods")
    if target in ("all", "ingester"):
        check(w["kind"] == "StatefulSet", f"{name}: ingesting pods run in a StatefulSet")
        check(pod.get("terminationGracePeriodSeconds", 0) >= 600, f"{name}: terminationGracePeriodSeconds >= 600 to flush")
        aff = pod.get("affinity", {}).get("podAntiAffinity", {})
        check(bool(aff), f"{name}: pod anti-affinity")
        spread = [t["topologyKey"] for t in pod.get("topologySpreadConstraints", [])]
        check("topology.kubernetes.io/zone" in spread, f"{name}: topology spread across zones")
        headless = [s for s in services if s["metadata"]["name"] == spec.get("serviceName")]
        check(len(headless) == 1 and headless[0]["spec"].get("clusterIP") == "None",
              f"{name}: serviceName {spec.get('serviceName')} is a headless Service")
        pvcs = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates", [])}
        if "data" in pvcs:
            check("data" not in vols, f"{name}: data comes from the PVC, not a pod volume")
        else:
            check("emptyDir" in vols.get("data", {}), f"{name}: without persistence, data is an emptyDir")
    elif target in ("store-gateway", "compactor"):
        check(w["kind"] == "StatefulSet", f"{name}: {target} runs in a StatefulSet")
        check(any(t["metadata"]["name"] == "data" for t in spec.get("volumeClaimTemplates", [])),
              f"{name}: {target} keeps /data on a PVC")
    else:
        check(w["kind"] == "Deployment", f"{name}: stateless {target} runs in a Deployment")

for s in services:
    sel = s["spec"].get("selector", {})
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in by_kind.get("StatefulSet", []) + by_kind.get("Deployment", [])]
    check(any(sel.items() <= p.items() for p in pods), f"Service/{s['metadata']['name']}: selects some pod")


def by_target(t):
    return [w for w in workloads if arg(container(w), "-target") == t]


def etcd_sts():
    return [w for w in by_kind.get("StatefulSet", []) if component(w) == "etcd"]


def pvc_size(w):
    for t in w["spec"].get("volumeClaimTemplates", []):
        if t["metadata"]["name"] == "data":
            return t["spec"]["resources"]["requests"]["storage"]
    return None


# ---- what each case promises ----
def expect_monolithic(replicas=3, persistent=True):
    sts = by_target("all")
    check(len(sts) == 1, "monolithic: one StatefulSet with -target=all")
    check(not by_kind.get("Deployment"), "monolithic: no Deployments")
    check(targets == {"all"}, "monolithic: every strata pod runs -target=all")
    if sts:
        check(sts[0]["spec"]["replicas"] == replicas, f"monolithic: {replicas} replicas")
        check((pvc_size(sts[0]) is not None) == persistent, f"monolithic: PVC template present={persistent}")


def expect_distributed(ingesters=3, zones=(), storage=False):
    want = {"distributor", "ingester", "querier"} | ({"store-gateway", "compactor"} if storage else set())
    check(targets == want, f"distributed: targets {sorted(want)}")
    if storage:
        check([w["spec"]["replicas"] for w in by_target("compactor")] == [1], "distributed: one compactor")
        check([w["spec"]["replicas"] for w in by_target("store-gateway")] == [2], "distributed: two store-gateways")
    for t in ("distributor", "querier"):
        d = by_target(t)
        check(len(d) == 1 and d[0]["kind"] == "Deployment", f"distributed: one {t} Deployment")
        check(any(s["spec"]["selector"].get("app.kubernetes.io/component") == t and s["spec"].get("clusterIP") != "None"
                  for s in services), f"distributed: a {t} Service")
    sts = by_target("ingester")
    check(len(sts) == max(1, len(zones)), f"distributed: {max(1, len(zones))} ingester StatefulSet(s)")
    check(sum(s["spec"]["replicas"] for s in sts) == ingesters, f"distributed: {ingesters} ingesters in total")
    for s in sts:
        check(pvc_size(s) == "20Gi", f"{s['metadata']['name']}: 20Gi PVC template named data")
    if zones:
        seen = set()
        for s in sts:
            zone = arg(container(s), "-ingester.ring.instance_availability_zone")
            seen.add(zone)
            terms = s["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            check(terms[0]["matchExpressions"][0]["values"] == [zone], f"{s['metadata']['name']}: pinned to zone {zone}")
        check(seen == set(zones), f"zones: one StatefulSet per zone {list(zones)}")
        check(ring.get("zone_awareness_enabled") is True, "zones: zone_awareness_enabled in config")
    else:
        check(ring.get("zone_awareness_enabled") is False, "no zones: zone_awareness_enabled false")


def expect_etcd(members):
    sts = etcd_sts()
    check(len(sts) == 1 and sts[0]["spec"]["replicas"] == members, f"etcd: bundled StatefulSet of {members}")
    if sts:
        cluster = arg(container(sts[0], "etcd"), "--initial-cluster") or ""
        check(len(cluster.split(",")) == members, f"etcd: --initial-cluster lists {members} members")
        check(sts[0]["spec"].get("podManagementPolicy") == "Parallel", "etcd: members start in parallel")
    check(len(endpoints) == members, f"config: {members} etcd endpoint(s)")
    check(all(":2379" in e and "-etcd-" in e for e in endpoints), "config: endpoints are the bundled members")
    has_pdb = any(p["metadata"]["labels"].get("app.kubernetes.io/component") == "etcd" for p in pdbs)
    check(has_pdb == (members > 1), f"etcd: PDB present={members > 1}")


def expect_service_monitor(on):
    sms = by_kind.get("ServiceMonitor", [])
    check(len(sms) == (1 if on else 0), f"ServiceMonitor present={on}")
    if on and sms:
        sm = sms[0]
        check(sm["spec"]["endpoints"][0]["path"] == "/metrics" and sm["spec"]["endpoints"][0]["port"] == "http",
              "ServiceMonitor scrapes port http /metrics")
        # Each strata pod is scraped through exactly one Service.
        scraped = [s for s in services
                   if s["metadata"]["labels"].get("app.kubernetes.io/component") in ("monolithic", "distributor", "ingester", "querier")
                   and s["metadata"]["labels"].get("prometheus.io/service-monitor") != "false"]
        comps = [s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped]
        check(len(comps) == len(set(comps)), f"ServiceMonitor: one scraped Service per component ({comps})")
        check(set(comps) == {component(w) for w in workloads}, "ServiceMonitor: every component scraped")


if CASE == "monolithic":
    expect_monolithic()
    expect_etcd(1)
    expect_service_monitor(False)
elif CASE == "distributed":
    expect_distributed()
    expect_etcd(1)
    expect_service_monitor(False)
elif CASE == "external-etcd":
    expect_distributed()
    check(not etcd_sts(), "external etcd: no bundled etcd")
    check(endpoints == ["etcd-a.infra.svc:2379", "etcd-b.infra.svc:2379", "etcd-c.infra.svc:2379"],
          "external etcd: endpoints from values")
elif CASE == "etcd-3":
    expect_monolithic(replicas=1, persistent=False)
    expect_etcd(3)
    check(ring.get("replication_factor") == 1, "config: replication_factor 1")
elif CASE == "zones":
    expect_distributed(ingesters=6, zones=("zone-a", "zone-b", "zone-c"))
    for s in by_target("ingester"):
        check("requiredDuringSchedulingIgnoredDuringExecution" in s["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"],
              f"{s['metadata']['name']}: hard anti-affinity")
        check(s["spec"]["volumeClaimTemplates"][0]["spec"].get("storageClassName") == "fast-ssd", "zones: storageClass")
    expect_service_monitor(True)
    check(by_kind["ServiceMonitor"][0]["metadata"]["labels"].get("release") == "kube-prometheus-stack",
          "ServiceMonitor: extra labels")
elif CASE == "monolithic-zones-servicemonitor":
    sts = by_target("all")
    check(len(sts) == 3 and all(s["spec"]["replicas"] == 1 for s in sts), "monolithic zones: 3 StatefulSets of 1")
    check(ring.get("zone_awareness_enabled") is True, "zones: zone_awareness_enabled in config")
    expect_service_monitor(True)
elif CASE == "s3":
    expect_distributed(storage=True)
    bs = config.get("blocks_storage", {})
    check(bs.get("backend") == "s3", "config: blocks_storage.backend s3")
    s3 = bs.get("s3", {})
    check(s3.get("endpoint") == "minio.storage.svc:9000" and s3.get("bucket_name") == "strata-blocks"
          and s3.get("insecure") is True and s3.get("region") == "us-east-1", "config: blocks_storage.s3 from values")
    check(s3.get("access_key_id") == "${AWS_ACCESS_KEY_ID}" and s3.get("secret_access_key") == "${AWS_SECRET_ACCESS_KEY}",
          "config: S3 credentials come from the environment")
    for w in workloads:
        env = {e["name"]: e for e in container(w).get("env", [])}
        ref = env.get("AWS_SECRET_ACCESS_KEY", {}).get("valueFrom", {}).get("secretKeyRef", {})
        check(ref == {"name": "strata-s3", "key": "AWS_SECRET_ACCESS_KEY"}, f"{w['metadata']['name']}: S3 secret from strata-s3")
elif CASE == "structured-config":
    expect_monolithic()
    check(config.get("distributor", {}).get("max_recv_msg_size") == 209715200, "structuredConfig: large int kept exact")
    check(config.get("querier", {}).get("timeout") == "1m", "structuredConfig: querier.timeout merged")
    check(config.get("limits", {}).get("max_label_names_per_series") == 40, "structuredConfig: limits merged")
    check(config.get("server", {}).get("http_listen_port") == 9009, "structuredConfig: chart keys kept")
else:
    check(False, f"unknown case {CASE}: add its expectations to check_rendered.py")

bs = config.get("blocks_storage", {})
check(bs.get("tsdb", {}).get("dir") == "/data/tsdb", "config: blocks_storage.tsdb.dir on the /data volume")
if CASE != "s3":
    check(bs.get("backend") == "filesystem" and bs.get("filesystem", {}).get("dir") == "/data/blocks",
          "config: filesystem blocks on /data unless objectStorage.enabled")

with open(os.path.join(OUT, "flags"), "w", encoding="utf-8") as f:
    f.write("\n".join(sorted(p for p in pod_flags if p)) + "\n")

if FAILURES:
    for what in FAILURES:
        print(f"FAIL [{CASE}] {what}")
    print(f"{CASE}: {len(FAILURES)} of {CHECKS} checks failed")
    sys.exit(1)
print(f"{CASE}: {len(docs)} manifests, {CHECKS} checks passed")
