"""Tests of the pure parts of scripts/prometheus_check.py: the PromQL selector finder, Grafana's
variables, the dashboards' queries and variables, the generated configuration, the rule list
and the rows of the chaos run's table. The check itself runs inside scripts/chaos.py.

Run: $RELANCE_PYTHON -m unittest discover -s scripts/tests -v
"""

from __future__ import annotations

import json
import sys
import tempfile
import unittest
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCRIPTS))

import prometheus_check as pc  # noqa: E402


class Selectors(unittest.TestCase):
    def test_functions_aggregations_keywords_and_label_lists_are_not_selectors(self) -> None:
        expr = """
          sum by (namespace, job, topic) (relance_kafka_consumer_lag) > 1000
          and
          sum by (namespace, job, topic) (deriv(relance_kafka_consumer_lag[15m])) > 0
        """
        self.assertEqual(pc.selectors(expr), ["relance_kafka_consumer_lag"])

    def test_matchers_are_kept_and_ranges_and_offsets_dropped(self) -> None:
        expr = ('sum by (namespace, provider) (rate(relance_provider_attempts_total{class=~"transient|ambiguous|config"}[15m]))'
                ' / sum by (namespace, provider) (rate(relance_provider_attempts_total[15m] offset 5m)) > 0.2')
        self.assertEqual(pc.selectors(expr), ['relance_provider_attempts_total{class=~"transient|ambiguous|config"}',
                                              "relance_provider_attempts_total"])

    def test_on_unless_or_and_grouping_modifiers(self) -> None:
        expr = """
          (
            sum by (namespace) (increase(relance_reminders_scheduled_total{kind="message", status="queued"}[1d])) > 0
            or
            max by (namespace) (relance_deliveries_due) > 0
          )
          unless on (namespace)
          sum by (namespace) (increase(relance_reminders_sent_total[1d])) > 0
          * on (job) group_left (version) relance_build_info
        """
        self.assertEqual(pc.selectors(expr), ['relance_reminders_scheduled_total{kind="message", status="queued"}',
                                              "relance_deliveries_due", "relance_reminders_sent_total",
                                              "relance_build_info"])

    def test_strings_holding_braces_or_names_do_not_confuse_it(self) -> None:
        expr = 'count_values("value", up{job="a}b"}) + label_replace(x_total, "dst", "$1", "src", "(.*)")'
        self.assertEqual(pc.selectors(expr), ['up{job="a}b"}', "x_total"])

    def test_aggregation_with_the_clause_after_and_a_bare_matcher(self) -> None:
        expr = 'sum(rate(a_total[5m])) without (pod) / {__name__="b_total", job="x"} + min without (pod) (c)'
        self.assertEqual(pc.selectors(expr), ["a_total", '{__name__="b_total", job="x"}', "c"])

    def test_numbers_and_durations_are_not_selectors(self) -> None:
        self.assertEqual(pc.selectors("histogram_quantile(0.99, sum by (le) (rate(h_bucket[1m30s]))) > 1e3"),
                         ["h_bucket"])

    def test_every_alert_of_the_rules_file_has_a_selector(self) -> None:
        text = pc.RULES.read_text(encoding="utf-8")
        names = pc.rule_names(text)
        self.assertGreater(len(names), 10)
        blocks = text.split("- alert:")[1:]
        self.assertEqual(len(blocks), sum(1 for kind, _ in names if kind == "alert"))
        for block in blocks:
            expr = block.split("expr: |", 1)[1].split("for:", 1)[0].split("labels:", 1)[0]
            found = pc.selectors(expr)
            self.assertTrue(found, block.splitlines()[0])
            for selector in found:
                self.assertTrue(selector.startswith("relance_"), (block.splitlines()[0], selector))


class Grafana(unittest.TestCase):
    def dashboard(self, **variable: object) -> dict:
        return {"templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}},
            {"name": "namespace", "type": "query", "includeAll": True, "multi": True, "allValue": ".*",
             "current": {"value": ["$__all"]}, "query": {"query": "label_values(relance_build_info, namespace)"}},
            {"name": "job", "type": "query", "includeAll": True, "current": {"value": "$__all"},
             "definition": "label_values(up, job)", "query": "label_values(up, job)"},
            {"name": "tenant", "type": "custom", "current": {"value": "acme"}, "query": "acme,globex"},
            {"name": "picked", "type": "query", "multi": True, "current": {"value": ["a", "b"]}, "query": "x"},
            variable or {"name": "constant", "type": "constant", "query": "7"},
        ]}, "panels": [
            {"title": "Row", "type": "row", "panels": [
                {"title": "Inside", "targets": [{"refId": "A", "expr": "up{job=~\"$job\"}", "instant": True,
                                                 "range": False}]}]},
            {"title": "Rate", "targets": [{"refId": "A", "expr": "rate(x[$__rate_interval])"},
                                          {"refId": "B", "expr": "y", "hide": True},
                                          {"refId": "C", "datasource": "-- Dashboard --"}]},
        ]}

    def test_variable_values(self) -> None:
        self.assertEqual(pc.variable_values(self.dashboard()), {
            "datasource": "prometheus", "namespace": ".*", "job": ".*", "tenant": "acme", "picked": "(a|b)",
            "constant": "7"})

    def test_builtins_follow_grafana(self) -> None:
        b = pc.grafana_builtins(600, 2)
        self.assertEqual((b["__range"], b["__range_s"], b["__interval"], b["__rate_interval"]),
                         ("600s", "600", "2s", "4s"))
        self.assertEqual(pc.grafana_builtins(600, 15, scrape_seconds=1)["__rate_interval"], "16s")

    def test_substitution_of_every_syntax_and_what_is_left(self) -> None:
        values = {"job": ".*", "__rate_interval": "4s", "__range": "90s"}
        expr = 'rate(x{job=~"$job",a=~"${job}",b=~"${job:regex}",c=~"[[job]]"}[$__rate_interval]) + y[$__range]'
        out = pc.substitute(expr, values)
        self.assertEqual(out, 'rate(x{job=~".*",a=~".*",b=~".*",c=~".*"}[4s]) + y[90s]')
        self.assertEqual(pc.unresolved(out), [])
        self.assertEqual(pc.unresolved(pc.substitute('x{t="$tenant"}[$__interval]', values)), ["$tenant", "$__interval"])

    def test_panel_queries_walk_rows_and_skip_hidden_targets(self) -> None:
        queries = pc.panel_queries(self.dashboard(), "d.json")
        self.assertEqual([(q.panel, q.ref_id, q.instant) for q in queries],
                         [("Inside", "A", True), ("Rate", "A", False)])

    def test_variable_queries_and_label_values(self) -> None:
        queries = pc.variable_queries(self.dashboard(), "d.json")
        self.assertEqual([(q.name, q.definition) for q in queries], [
            ("namespace", "label_values(relance_build_info, namespace)"), ("job", "label_values(up, job)"),
            ("picked", "x")])
        self.assertEqual(pc.label_values_call('label_values(m{a=~".*", b="x,y"}, segment)'),
                         ('m{a=~".*", b="x,y"}', "segment"))
        self.assertEqual(pc.label_values_call("label_values(job)"), (None, "job"))
        self.assertIsNone(pc.label_values_call("query_result(up)"))

    def test_the_real_dashboards_resolve_completely(self) -> None:
        self.assertTrue(pc.DASHBOARDS)
        for path in pc.DASHBOARDS:
            dashboard = json.loads(path.read_text(encoding="utf-8"))
            values = {**pc.variable_values(dashboard), **pc.grafana_builtins(300, 1)}
            queries = pc.panel_queries(dashboard, path.name)
            self.assertTrue(queries, path.name)
            for query in queries:
                expr = pc.substitute(query.expr, values)
                self.assertEqual(pc.unresolved(expr), [], (path.name, query.panel, expr))
                self.assertTrue(pc.selectors(expr), (path.name, query.panel))
            for variable in pc.variable_queries(dashboard, path.name):
                self.assertIsNotNone(pc.label_values_call(pc.substitute(variable.definition, values)),
                                     (path.name, variable.name))


class Configuration(unittest.TestCase):
    def test_one_job_per_service_with_the_labels_the_dashboards_use(self) -> None:
        targets = [pc.Target("sender-1", "sender", 1001), pc.Target("sender-2", "sender", 1002),
                   pc.Target("ingestor", "ingestor", 1003)]
        config = json.loads(pc.render_config(targets, Path("/r/rules.yaml")))
        self.assertEqual(config["global"]["scrape_interval"], "1s")
        self.assertEqual(config["rule_files"], ["/r/rules.yaml"])
        jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
        self.assertEqual(sorted(jobs), ["relance-ingestor", "relance-sender"])
        self.assertEqual(jobs["relance-sender"][1],
                         {"targets": ["127.0.0.1:1002"], "labels": {"namespace": "relance", "pod": "sender-2"}})

    def test_rule_names(self) -> None:
        text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: x > 0\n      - record: job:x:rate5m\n" \
               "        expr: rate(x[5m])\n      -   alert: 'B'\n        expr: y\n"
        self.assertEqual(pc.rule_names(text), [("alert", "A"), ("record", "job:x:rate5m"), ("alert", "B")])

    def test_find_binary_prefers_the_tools_cache(self) -> None:
        with tempfile.TemporaryDirectory() as cache:
            binary = Path(cache) / "tools" / "deploy" / "prometheus" / "usr" / "bin" / "prometheus"
            binary.parent.mkdir(parents=True)
            binary.write_text("#!/bin/sh\n")
            binary.chmod(0o755)
            self.assertEqual(pc.find_binary(cache), binary)
            binary.chmod(0o644)
            self.assertNotEqual(pc.find_binary(cache), binary)


class Rows(unittest.TestCase):
    def test_not_run_is_information_unless_required(self) -> None:
        summary = pc.Summary(not_run="no prometheus binary")
        (row,) = pc.check_rows(summary, required=False)
        self.assertIsNone(row[3])
        self.assertIn("not run", row[1])
        (row,) = pc.check_rows(summary, required=True)
        self.assertIs(row[3], False)

    def test_errors_and_empty_results_fail_variables_and_alert_expressions_do_not(self) -> None:
        summary = pc.Summary(version="2.42.0", targets_up=6, targets=6, outcomes=[
            pc.Outcome("panel", "d.json", "ok [A]", "x", series=2),
            pc.Outcome("panel", "d.json", "empty [A]", "y"),
            pc.Outcome("panel", "d.json", "allowed [A]", "z", allowed="never happens here"),
            pc.Outcome("variable", "d.json", "variant", "label_values(v)", required=False),
            pc.Outcome("rule", "rules.yaml", "Quiet", "a > 1", required=False),
            pc.Outcome("alert-selector", "rules.yaml", "Quiet a", "a", series=1),
            pc.Outcome("alert-selector", "rules.yaml", "Quiet b", "b", error="bad_data: parse error"),
        ])
        main, info = pc.check_rows(summary, required=True)
        self.assertEqual(main[1:4], ("2 of 7", "0", False))
        self.assertIn("'empty [A]': no series", main[4])
        self.assertIn("error: bad_data", main[4])
        self.assertNotIn("allowed", main[4])
        self.assertIsNone(info[3])
        self.assertIn("6 of 6 targets up", info[1])
        self.assertIn("no values: variant", info[1])
        self.assertIn("1 empty but allowed", info[1])
        self.assertIn("2.42.0", info[0])

    def test_setup_problems_fail(self) -> None:
        summary = pc.Summary(problems=["Prometheus loaded 0 rules of the 16"])
        main, _ = pc.check_rows(summary, required=False)
        self.assertIs(main[3], False)
        self.assertEqual(main[1], "1 of 0")

    def test_finish_without_a_server_says_why(self) -> None:
        lines: list[str] = []
        rows, details = pc.finish(None, "no prometheus binary (here)", False, lines.append)
        self.assertEqual([row[3] for row in rows], [None])
        self.assertEqual(rows[0][1], "not run: no prometheus binary (here)")
        self.assertEqual(details["not_run"], "no prometheus binary (here)")
        rows, _ = pc.finish(None, "no prometheus binary (here)", True, lines.append)
        self.assertIs(rows[0][3], False)

    def test_every_allowed_empty_query_has_a_reason(self) -> None:
        for key, reason in pc.ALLOWED_EMPTY.items():
            self.assertGreater(len(reason), 20, key)


if __name__ == "__main__":
    unittest.main()
