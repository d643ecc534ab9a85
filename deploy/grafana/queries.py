#!/usr/bin/env python3
"""Print every PromQL expression of the deploy kit, one per line, deduplicated, in file order:
the targets of every panel in deploy/grafana/handoff.json and the `expr` of every rule in
deploy/prometheus/alerts.yml. Multi-line expressions are joined into one line.

Grafana variables are replaced so that a plain Prometheus can run the queries: $instance (and
${instance}) by `.*`, $__rate_interval / $__interval by --rate-interval (default 1m), $__range by
--range (default 1h). --raw prints them untouched.

    python3 deploy/grafana/queries.py                        # both files, from any directory
    python3 deploy/grafana/queries.py --rate-interval 30s path/to/dashboard.json path/to/rules.yml
"""

import argparse
import json
import re
import sys
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent
DEFAULT_FILES = [DEPLOY / "grafana" / "handoff.json", DEPLOY / "prometheus" / "alerts.yml"]


def one_line(expr: str) -> str:
    return " ".join(expr.split())


def dashboard_exprs(path: Path):
    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr", "").strip():
                    yield target["expr"]
            yield from walk(panel.get("panels", []))  # panels inside collapsed rows

    yield from walk(json.loads(path.read_text(encoding="utf-8")).get("panels", []))


def rule_exprs(path: Path):
    text = path.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:  # no PyYAML: read the `expr:` keys of the rule file by hand
        yield from _rule_exprs_without_yaml(text)
        return
    for group in (yaml.safe_load(text) or {}).get("groups", []):
        for rule in group.get("rules", []):
            if "expr" in rule:
                yield str(rule["expr"])


def _rule_exprs_without_yaml(text: str):
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", lines[i])
        i += 1
        if not m:
            continue
        indent, value = len(m.group(1)), m.group(2).strip()
        if value and value[0] not in "|>":
            if value[0] in "'\"" and value[-1] == value[0]:
                value = value[1:-1]
            yield value
            continue
        block = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i])
            i += 1
        yield "\n".join(block)


def substitute(expr: str, rate_interval: str, range_: str) -> str:
    expr = re.sub(r"\$\{?instance\}?", ".*", expr)
    expr = re.sub(r"\$\{?__rate_interval\}?|\$\{?__interval\}?", rate_interval, expr)
    return re.sub(r"\$\{?__range\}?", range_, expr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="dashboards (.json) and rule files (.yml/.yaml)")
    ap.add_argument("--rate-interval", default="1m", help="replaces $__rate_interval and $__interval")
    ap.add_argument("--range", default="1h", help="replaces $__range")
    ap.add_argument("--raw", action="store_true", help="keep Grafana variables as they are")
    args = ap.parse_args()

    seen, out = set(), []
    for path in args.files or DEFAULT_FILES:
        exprs = dashboard_exprs(path) if path.suffix == ".json" else rule_exprs(path)
        for expr in exprs:
            expr = one_line(expr)
            if not args.raw:
                expr = substitute(expr, args.rate_interval, args.range)
            if expr not in seen:
                seen.add(expr)
                out.append(expr)
    if not out:
        print("no PromQL expressions found", file=sys.stderr)
        return 1
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
