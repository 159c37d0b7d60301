#!/usr/bin/env bash
# Validate the Prometheus rules, their unit tests, the example config and the Grafana dashboard
# with promtool (Debian: apt-get install -y --no-install-recommends prometheus) and python3.
# Exits non-zero on the first failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
dashboard="$here/../grafana/coordmetrics-dashboard.json"

if ! command -v promtool >/dev/null 2>&1; then
    echo "check.sh: promtool not found (apt-get install -y --no-install-recommends prometheus)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$here"
promtool check rules alerts.yml
# The unit tests feed classic series only: promtool 2.42's test series notation has no native
# histograms (`{{schema:...}}` arrived in a later release). The native branches of the rules are
# evaluated by a real Prometheus on native histograms in exporter/tests/prometheus_e2e.rs.
promtool test rules alerts_test.yml
promtool check config prometheus.yml

# The dashboard must parse, declare its datasource input and give every panel a query. Its
# queries, with Grafana's variables replaced the way an "All" selection expands them, become
# recording rules so that promtool parses each one as PromQL.
python3 - "$dashboard" "$tmp/dashboard_rules.yml" <<'PY'
import json, sys

path, out = sys.argv[1], sys.argv[2]
with open(path) as f:
    dash = json.load(f)

errors = []
if not any(i.get("name") == "DS_PROMETHEUS" and i.get("pluginId") == "prometheus" for i in dash.get("__inputs", [])):
    errors.append("no DS_PROMETHEUS datasource input in __inputs")
variables = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
for name in ("coordinator", "instance"):
    if name not in variables:
        errors.append(f"no templating variable {name!r}")

substitutions = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
                 "$coordinator": ".*", "$instance": ".*"}
rules, ids = [], set()
panels = dash.get("panels", [])
if not panels:
    errors.append("no panels")
for panel in panels:
    title = panel.get("title", "?")
    if panel.get("id") in ids:
        errors.append(f"panel {title!r}: duplicate id {panel.get('id')}")
    ids.add(panel.get("id"))
    exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
    if not exprs or not all(exprs):
        errors.append(f"panel {title!r}: every panel needs targets with a non-empty expr")
    for n, expr in enumerate(exprs):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        if "$" in expr:
            errors.append(f"panel {title!r}: unknown variable in {expr!r}")
        rules.append({"record": f"dashboard:panel{panel.get('id')}:query{n}", "expr": expr})

if errors:
    sys.exit("\n".join(f"{path}: {e}" for e in errors))
with open(out, "w") as f:
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
print(f"{path}: {len(panels)} panels, {len(rules)} queries")
PY
promtool check rules "$tmp/dashboard_rules.yml"

echo "check.sh: all checks passed"
