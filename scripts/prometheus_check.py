"""The dashboards and alert rules, checked by a real Prometheus during the chaos run (issue 16).

scripts/chaos.py calls this module: when a `prometheus` binary is available (Debian's package,
unpacked into $RELANCE_CACHE_DIR/tools/deploy/prometheus by scripts/check-deploy.sh, or
/usr/bin/prometheus), it starts Prometheus on loopback once the services are ready, with a
generated configuration that scrapes every instance's ops port every second and loads
deploy/monitoring/prometheus/relance-rules.yaml as its rule file. Near the end of the run (after
the load and the recovery, before the services stop) it evaluates through the HTTP API:

- **every target of every panel of deploy/monitoring/grafana/*.json**, as Grafana would send
  it: Grafana's variables replaced ($__rate_interval, $__interval, $__range and their _s/_ms
  forms; the dashboards' own variables by their "All" value, `.*`, which is what a dashboard
  opened with its defaults shows), an `instant` target with /api/v1/query at the end of the run,
  any other with /api/v1/query_range over the span Prometheus scraped. It fails when the query
  errors or returns no series: an empty panel in a run where everything happened is a wrong
  metric name, a wrong label, a `sum() - sum()` of which one side has no series, or a counter
  the service only creates when its event first happens;
- **every template variable query** (`label_values(metric{...}, label)`, through
  /api/v1/label/<label>/values): an error fails; no values is reported, not failed (a label
  that is always empty, such as `variant` without an A/B test, has no values and the variable
  then offers only "All", which works);
- **every rule of the rules file, as Prometheus loaded it** (/api/v1/rules): the number of rules
  loaded must equal the number of `alert:`/`record:` entries in the file, every rule's health
  must be `ok` (Prometheus evaluates them every second), and:
  - a recording rule's expression must return series;
  - an alert's expression must not error, but it is normally empty when all is well, so
    instead **every series selector it contains must have at least one series now**. The
    selectors are found by a small PromQL tokenizer (`selectors()`): string literals,
    `{...}` matchers and `[...]` ranges are read whole, a name followed by `(` is a function
    or aggregation, the label lists after by/without/on/ignoring/group_left/group_right are
    skipped, keywords and numbers are not selectors; what is left is `name{matchers}`.
    Evaluating each selector alone (rather than the expression with its comparison removed)
    holds for every shape of alert, `a > x and b > y`, `a unless b`, `x or y`, and names the
    metric at fault. Presence *now* is what matters: `increase(x[10m]) > 0` cannot see the
    first event unless the series existed, at zero, before it — which is why relance
    pre-registers its counters (docs/metrics.md) — and the selector's own label matchers (a
    `cause="config"`, an `outcome="dead_lettered"`) must match a pre-registered series too.

The prometheus binary used is Debian 12's 2.42. The targets carry the labels Kubernetes would
give them through deploy/monitoring/servicemonitors.yaml and the Helm chart:
`job="relance-<service>"` (the Service's name), `namespace="relance"`, and `pod` with the
instance's name; `instance` stays host:port. (The operator also sets a `service` target label,
which would rename the metrics' own `service` label of `relance_build_info` to
`exported_service`; it is not added here, so `relance_build_info{service}` is the service's own.)

Queries that may legitimately stay empty in a run are listed in ALLOWED_EMPTY with the reason;
it is empty: a missing series is fixed in the service (pre-register the counter at zero), never
by weakening the check.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
DASHBOARDS = sorted((ROOT / "deploy" / "monitoring" / "grafana").glob("*.json"))
RULES = ROOT / "deploy" / "monitoring" / "prometheus" / "relance-rules.yaml"
SCRAPE_SECONDS = 1
NAMESPACE = "relance"
CHECK_NAME = "Dashboard queries and alert rules on a real Prometheus: queries that errored or returned no series"

# (dashboard file name, panel title, refId) or ("rule", rule name, selector) -> why it may be
# empty in a chaos run. Empty on purpose: see the module's docstring.
ALLOWED_EMPTY: dict[tuple[str, str, str], str] = {}


# ==============================================================================================
# Finding the binary


def find_binary(cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """scripts/check-deploy.sh's unpacked Debian package first, then an installed one."""
    if cache_dir is None:
        cache_dir = os.environ.get("RELANCE_CACHE_DIR") or (
            Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "relance")
    for candidate in (Path(cache_dir) / "tools" / "deploy" / "prometheus" / "usr" / "bin" / "prometheus",
                      Path("/usr/bin/prometheus")):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def searched_paths(cache_dir: str | os.PathLike[str] | None = None) -> str:
    if cache_dir is None:
        cache_dir = os.environ.get("RELANCE_CACHE_DIR") or "~/.cache/relance"
    return f"{cache_dir}/tools/deploy/prometheus/usr/bin/prometheus, /usr/bin/prometheus"


# ==============================================================================================
# The configuration


@dataclass(frozen=True)
class Target:
    instance: str  # the harness's name: sender-1
    service: str  # the binary: sender
    port: int


def render_config(targets: Iterable[Target], rule_file: Path, namespace: str = NAMESPACE) -> str:
    """prometheus.yml as JSON (a subset of YAML): one job per service, as the ServiceMonitors
    make them."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        jobs.setdefault(target.service, []).append({
            "targets": [f"127.0.0.1:{target.port}"],
            "labels": {"namespace": namespace, "pod": target.instance},
        })
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s",
                   "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        "rule_files": [str(rule_file)],
        "scrape_configs": [{"job_name": f"relance-{service}", "metrics_path": "/metrics",
                            "static_configs": static} for service, static in sorted(jobs.items())],
    }
    return json.dumps(config, indent=1) + "\n"


def rule_names(text: str) -> list[tuple[str, str]]:
    """(`alert` or `record`, name) of every rule of a rules file, read without a YAML parser
    (the harness's environment has none): enough to tell whether Prometheus loaded them all."""
    return [(m.group(1), m.group(2).strip("\"'")) for m in
            re.finditer(r"^\s*-?\s*(alert|record):\s*(\S+)\s*$", text, re.MULTILINE)]


# ==============================================================================================
# Dashboards


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str
    instant: bool


@dataclass(frozen=True)
class VariableQuery:
    dashboard: str
    name: str
    definition: str


def _panels(panels: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def panel_queries(dashboard: dict[str, Any], name: str) -> list[PanelQuery]:
    out = []
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("hide") or not target.get("expr"):
                continue
            instant = bool(target.get("instant")) and not target.get("range", False)
            out.append(PanelQuery(name, str(panel.get("title", "")), str(target.get("refId", "")),
                                  target["expr"], instant))
    return out


def variable_values(dashboard: dict[str, Any]) -> dict[str, str]:
    """The value each dashboard variable takes when the dashboard opens with its defaults: a
    multi-value variable on "All" gives its allValue (`.*` when none is set)."""
    values: dict[str, str] = {}
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        name = variable.get("name")
        if not name:
            continue
        kind = variable.get("type")
        current = (variable.get("current") or {}).get("value")
        if kind == "datasource":
            values[name] = "prometheus"
            continue
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else ("$__all" if not current else "(" + "|".join(current) + ")")
        if kind in ("query", "custom") and variable.get("includeAll") and current in (None, "", "$__all"):
            values[name] = variable.get("allValue") or ".*"
        elif current not in (None, ""):
            values[name] = str(current)
        elif kind in ("constant", "textbox", "custom"):
            values[name] = str(variable.get("query") or "")
        else:
            values[name] = ".*"
    return values


def variable_queries(dashboard: dict[str, Any], name: str) -> list[VariableQuery]:
    out = []
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        definition = query.get("query") if isinstance(query, dict) else query
        if definition:
            out.append(VariableQuery(name, variable["name"], str(definition)))
    return out


def grafana_builtins(range_seconds: int, interval_seconds: int, scrape_seconds: int = SCRAPE_SECONDS) -> dict[str, str]:
    """Grafana's global variables for a time range of range_seconds shown at interval_seconds.
    $__rate_interval is max($__interval + scrape interval, 4 × scrape interval)."""
    rate = max(interval_seconds + scrape_seconds, 4 * scrape_seconds)
    return {
        "__rate_interval": f"{rate}s", "__rate_interval_ms": str(rate * 1000),
        "__interval": f"{interval_seconds}s", "__interval_ms": str(interval_seconds * 1000),
        "__range": f"{range_seconds}s", "__range_s": str(range_seconds), "__range_ms": str(range_seconds * 1000),
    }


_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces $name, ${name}, ${name:format} and [[name]]; an unknown variable is left as it
    is, and unresolved() finds it."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        return values.get(name, match.group(0))
    return _VARIABLE.sub(replace, expr)


def unresolved(expr: str) -> list[str]:
    """The variables substitute() could not replace."""
    return [m.group(0) for m in _VARIABLE.finditer(expr)]


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*$", re.DOTALL)


def label_values_call(definition: str) -> tuple[str | None, str] | None:
    """`label_values(metric{...}, label)` -> (selector or None, label); None for another form."""
    match = _LABEL_VALUES.match(definition)
    if not match:
        return None
    return match.group(1), match.group(2)


# ==============================================================================================
# PromQL selectors


_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "atan2", "inf", "nan", "start", "end"}
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                 "topk", "quantile"}


def _tokens(expr: str) -> list[tuple[str, str]]:
    """(kind, text): ident, braces (a whole {...}), brackets (a whole [...]), string, number,
    punct. Strings inside braces stay inside the braces token."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and expr[i] != "\n":
                i += 1
        elif c in "\"'`":
            j = _string_end(expr, i)
            out.append(("string", expr[i:j]))
            i = j
        elif c in "{[":
            close = "}" if c == "{" else "]"
            j = i + 1
            while j < n and expr[j] != close:
                j = _string_end(expr, j) if expr[j] in "\"'`" else j + 1
            out.append(("braces" if c == "{" else "brackets", expr[i:j + 1]))
            i = j + 1
        elif c.isalpha() or c in "_:":
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "_:"):
                j += 1
            out.append(("ident", expr[i:j]))
            i = j
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "._+-") and not (
                    expr[j] in "+-" and expr[j - 1].lower() != "e"):
                j += 1
            out.append(("number", expr[i:j]))
            i = j
        else:
            out.append(("punct", c))
            i += 1
    return out


def _string_end(expr: str, i: int) -> int:
    quote, j = expr[i], i + 1
    while j < len(expr) and expr[j] != quote:
        j += 2 if expr[j] == "\\" and quote != "`" else 1
    return j + 1


def selectors(expr: str) -> list[str]:
    """Every series selector of a PromQL expression, `name{matchers}` or `{matchers}`, in order,
    without duplicates and without their ranges or offsets."""
    tokens = _tokens(expr)
    found: list[str] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if kind == "ident" and text.lower() in _GROUPING and following == ("punct", "("):
            depth, i = 0, i + 1
            while i < len(tokens):  # skip the label list
                if tokens[i] == ("punct", "("):
                    depth += 1
                elif tokens[i] == ("punct", ")"):
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
        elif kind == "ident":
            if following == ("punct", "(") or text.lower() in _KEYWORDS or (
                    text in _AGGREGATIONS and following[0] == "ident" and following[1].lower() in ("by", "without")):
                pass
            else:
                selector = text + (following[1] if following[0] == "braces" else "")
                if selector not in found:
                    found.append(selector)
                if following[0] == "braces":
                    i += 1
        elif kind == "braces":
            if text not in found:
                found.append(text)
        i += 1
    return found


# ==============================================================================================
# Evaluation


@dataclass
class Outcome:
    kind: str  # panel, variable, rule, alert-selector, recording
    source: str  # dashboard file or "relance-rules.yaml"
    name: str  # panel title/refId, variable name, rule name
    query: str
    series: int = 0
    error: str | None = None
    allowed: str | None = None  # the reason an empty result is accepted
    required: bool = True  # False: counted, never failed (a variable's values)

    @property
    def failed(self) -> bool:
        if self.error:
            return True
        return self.required and self.series == 0 and not self.allowed

    def describe(self) -> str:
        problem = f"error: {self.error}" if self.error else "no series"
        return f"{self.source} {self.kind} {self.name!r}: {problem} — {self.query}"


@dataclass
class Summary:
    version: str = "?"
    targets_up: int = 0
    targets: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # setup problems: rules not loaded...
    not_run: str | None = None

    @property
    def failures(self) -> list[str]:
        return self.problems + [o.describe() for o in self.outcomes if o.failed]


def check_rows(summary: Summary, required: bool) -> list[tuple[str, str, str, bool | None, str]]:
    """(name, value, expected, passed, detail) rows for chaos.py's table (its Check)."""
    if summary.not_run is not None:
        return [(CHECK_NAME, f"not run: {summary.not_run}", "0",
                 False if required else None, summary.not_run)]
    outcomes = summary.outcomes
    failures = summary.failures
    count = Counter(o.kind for o in outcomes)
    empty_variables = [o.name for o in outcomes if o.kind == "variable" and not o.series and not o.error]
    allowed = [o for o in outcomes if o.allowed and not o.series]
    rows: list[tuple[str, str, str, bool | None, str]] = [
        (CHECK_NAME, f"{len(failures)} of {len(outcomes)}", "0", not failures, "; ".join(failures[:40])),
        (f"Prometheus {summary.version}: targets up at evaluation; queries run", (
            f"{summary.targets_up} of {summary.targets} targets up; {len(outcomes)} queries: "
            f"{count['panel']} dashboard targets, {count['variable']} variable queries"
            + (f" (no values: {', '.join(empty_variables)})" if empty_variables else "")
            + f", {count['rule']} rule expressions, {count['alert-selector']} alert selectors; "
            f"{len(failures)} failed" + (f", {len(allowed)} empty but allowed" if allowed else "")),
         "information", None, ""),
    ]
    return rows


# ==============================================================================================
# The server


def _free_port() -> int:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Prometheus:
    """A Prometheus server of the run's own, on loopback, started through the harness's spawn
    (so it is stopped by its process id with everything else, and dies with the harness)."""

    def __init__(self, binary: Path, root: Path, targets: list[Target],
                 spawn: Callable[[list[str], Path], subprocess.Popen[bytes]], rule_file: Path = RULES) -> None:
        self.binary = binary
        self.root = root / "prometheus"
        self.root.mkdir(parents=True, exist_ok=True)
        self.targets = targets
        self.rule_file = rule_file
        self.port = _free_port()
        self.config = self.root / "prometheus.yml"
        self.config.write_text(render_config(targets, rule_file), encoding="utf-8")
        argv = [str(binary), f"--config.file={self.config}", f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1d",
                f"--web.console.templates={self.root}", f"--web.console.libraries={self.root}",
                "--log.level=warn"]
        self.process = spawn(argv, root / "prometheus.log")
        self.started = time.time()
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with status {self.process.returncode} "
                                   f"(see {root / 'prometheus.log'})")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus was not ready within 30 s")
            time.sleep(0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None,
            timeout: float = 30.0) -> tuple[Any, str | None]:
        """(data, error) of an API call."""
        query = urllib.parse.urlencode(params or {}, doseq=True)
        request = urllib.request.Request(f"{self.url}{path}" + (f"?{query}" if query else ""))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as error:
            try:
                payload = json.loads(error.read())
            except ValueError:
                return None, f"HTTP {error.code}"
        except (urllib.error.URLError, OSError, ValueError) as error:
            return None, str(error)
        if payload.get("status") != "success":
            return None, f"{payload.get('errorType')}: {payload.get('error')}"
        return payload.get("data"), None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    # -- evaluation ------------------------------------------------------------------------------

    def evaluate(self, dashboards: Iterable[Path] = DASHBOARDS) -> Summary:
        summary = Summary()
        data, _ = self.api("/api/v1/status/buildinfo")
        if data:
            summary.version = str(data.get("version", "?"))
        data, error = self.api("/api/v1/targets", {"state": "active"})
        if error:
            summary.problems.append(f"/api/v1/targets: {error}")
        else:
            active = data.get("activeTargets", [])
            summary.targets = len(active)
            summary.targets_up = sum(1 for t in active if t.get("health") == "up")
            if summary.targets != len(self.targets):
                summary.problems.append(f"{summary.targets} targets active, {len(self.targets)} configured")
        end = time.time()
        # The span scraped, from the first scrape; the step and Grafana's intervals from it, as
        # for a panel some 300 points wide.
        start = self.started + SCRAPE_SECONDS
        span = max(int(end - start), 10)
        step = max(SCRAPE_SECONDS, math.ceil(span / 300))
        builtins = grafana_builtins(span, step)
        for path in dashboards:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
            values = {**variable_values(dashboard), **builtins}
            for variable in variable_queries(dashboard, path.name):
                summary.outcomes.append(self._variable(variable, values))
            for query in panel_queries(dashboard, path.name):
                summary.outcomes.append(self._panel(query, values, start, end, step))
        self._rules(summary, end)
        return summary

    def _panel(self, query: PanelQuery, values: dict[str, str], start: float, end: float, step: int) -> Outcome:
        expr = substitute(query.expr, values)
        outcome = Outcome("panel", query.dashboard, f"{query.panel} [{query.ref_id}]", expr,
                          allowed=ALLOWED_EMPTY.get((query.dashboard, query.panel, query.ref_id)))
        left = unresolved(expr)
        if left:
            outcome.error = f"unresolved variables {left}"
            return outcome
        if query.instant:
            data, error = self.api("/api/v1/query", {"query": expr, "time": f"{end:.3f}"})
        else:
            data, error = self.api("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}",
                                                           "end": f"{end:.3f}", "step": f"{step}s"})
        outcome.error = error
        if data is not None:
            outcome.series = _series(data)
        return outcome

    def _variable(self, variable: VariableQuery, values: dict[str, str]) -> Outcome:
        definition = substitute(variable.definition, values)
        outcome = Outcome("variable", variable.dashboard, variable.name, definition, required=False)
        call = label_values_call(definition)
        if call is None:
            outcome.error = "not a label_values(...) query: cannot be evaluated here"
            return outcome
        selector, label = call
        params: list[tuple[str, Any]] = [("start", f"{self.started:.3f}"), ("end", f"{time.time():.3f}")]
        if selector:
            params.append(("match[]", selector))
        data, error = self.api(f"/api/v1/label/{label}/values", params)
        outcome.error = error
        outcome.series = len(data or [])
        return outcome

    def _rules(self, summary: Summary, end: float) -> None:
        expected = rule_names(self.rule_file.read_text(encoding="utf-8"))
        data, error = self.api("/api/v1/rules")
        if error:
            summary.problems.append(f"/api/v1/rules: {error}")
            return
        rules = [rule for group in data.get("groups", []) for rule in group.get("rules", [])]
        if len(rules) != len(expected):
            summary.problems.append(f"Prometheus loaded {len(rules)} rules of the {len(expected)} in "
                                    f"{self.rule_file.name} (see prometheus.log)")
        source = self.rule_file.name
        for rule in rules:
            name, expr = rule.get("name", "?"), rule.get("query", "")
            recording = rule.get("type") == "recording"
            outcome = Outcome("rule", source, name, expr, required=recording)
            if rule.get("health") not in ("ok", None) or rule.get("lastError"):
                outcome.error = f"rule health {rule.get('health')}: {rule.get('lastError')}"
            data_, error = self.api("/api/v1/query", {"query": expr, "time": f"{end:.3f}"})
            outcome.error = outcome.error or error
            outcome.series = _series(data_) if data_ is not None else 0
            summary.outcomes.append(outcome)
            if recording:
                continue
            for selector in selectors(expr):
                check = Outcome("alert-selector", source, f"{name} {selector}", selector,
                                allowed=ALLOWED_EMPTY.get(("rule", name, selector)))
                data_, error = self.api("/api/v1/query", {"query": selector, "time": f"{end:.3f}"})
                check.error = error
                check.series = _series(data_) if data_ is not None else 0
                summary.outcomes.append(check)


def _series(data: dict[str, Any]) -> int:
    result = data.get("result")
    if data.get("resultType") in ("scalar", "string"):
        return 1 if result is not None else 0
    return len(result or [])


# ==============================================================================================
# What chaos.py calls


def start(binary: Path | None, root: Path, targets: list[Target],
          spawn: Callable[[list[str], Path], subprocess.Popen[bytes]],
          log: Callable[[str], None]) -> tuple[Prometheus | None, str | None]:
    """(server, None), or (None, why it was not started)."""
    if binary is None:
        why = f"no prometheus binary ({searched_paths()}); scripts/check-deploy.sh installs one"
        log(f"PROMETHEUS CHECK NOT RUN: {why}")
        return None, why
    try:
        server = Prometheus(binary, root, targets, spawn)
    except (RuntimeError, OSError) as error:
        log(f"Prometheus could not be started: {error}")
        return None, f"prometheus did not start: {error}"
    log(f"Prometheus ({binary}) on {server.url}, scraping {len(targets)} instances every {SCRAPE_SECONDS}s")
    return server, None


def finish(server: Prometheus | None, why_not: str | None, required: bool,
           log: Callable[[str], None]) -> tuple[list[tuple[str, str, str, bool | None, str]], dict[str, Any]]:
    """Evaluates everything, stops the server; the rows of the table and the details."""
    if server is None:
        summary = Summary(not_run=why_not or "not started")
    else:
        try:
            summary = server.evaluate()
        except Exception as error:  # noqa: BLE001 (a bug here must not lose the run's other checks)
            summary = Summary(problems=[f"the evaluation failed: {error!r}"])
        finally:
            server.stop()
        log(f"Prometheus {summary.version}: {summary.targets_up}/{summary.targets} targets up, "
            f"{len(summary.outcomes)} queries, {len(summary.failures)} failed")
        for failure in summary.failures:
            log(f"  prometheus check: {failure}")
    details = {
        "version": summary.version, "targets_up": summary.targets_up, "targets": summary.targets,
        "not_run": summary.not_run, "failures": summary.failures,
        "queries": [{"kind": o.kind, "source": o.source, "name": o.name, "query": o.query, "series": o.series,
                     "error": o.error, "allowed": o.allowed} for o in summary.outcomes],
    }
    return check_rows(summary, required), details
