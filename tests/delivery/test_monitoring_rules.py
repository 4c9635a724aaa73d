"""deploy/monitoring: the alert rules (promtool unit tests), the generated drift rules, the Grafana
dashboard (every panel's PromQL parses and names a metric the service exports) and its provisioning."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from qa.model_dir import REFERENCE_PROFILE_FILE, SHIPPED_MODEL_DIR
from qa.monitoring import CONTEXT_TOKENS, Profile
from serve.drift import prometheus_rules

from .test_prune_model import ROOT

MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "squad-qa.json"
PROMTOOL = shutil.which("promtool")


def promtool(*args: str, cwd=MONITORING) -> subprocess.CompletedProcess:
    if PROMTOOL is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_alert_rules_pass_their_unit_tests():
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_drift_rules_are_generated_from_the_shipped_profile():
    profile = Profile.read(ROOT / SHIPPED_MODEL_DIR / REFERENCE_PROFILE_FILE)
    committed = yaml.safe_load((MONITORING / "drift-rules.yml").read_text())
    assert committed == prometheus_rules(profile), (
        "regenerate: python -m serve.drift --write-rules deploy/monitoring/drift-rules.yml")
    result = promtool("check", "rules", "drift-rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def cumulative_series(shares_by_phase: list[tuple[list[float], int]], per_minute: int) -> list[str]:
    """promtool input values for each bucket (le order, +Inf last) of a histogram whose observations
    follow each phase's shares for that phase's minutes."""
    cumulative_shares = [[sum(shares[: i + 1]) for i in range(len(shares))] for shares, _ in shares_by_phase]
    series = []
    for bucket in range(len(shares_by_phase[0][0])):
        values, total = [], 0.0
        for (_, minutes), cumulative in zip(shares_by_phase, cumulative_shares):
            for _ in range(minutes):
                total += per_minute * cumulative[bucket]
                values.append(f"{total:.3f}")
        series.append(" ".join(values))
    return series


def test_the_drift_alert_fires_on_other_contexts_and_not_on_dev_like_ones(tmp_path):
    from prometheus_client.utils import floatToGoString

    profile = Profile.read(ROOT / SHIPPED_MODEL_DIR / REFERENCE_PROFILE_FILE)
    reference = profile.histograms[CONTEXT_TOKENS.name]
    dev_like = [n / sum(reference) for n in reference]
    long_texts = [0.0] * (len(reference) - 3) + [0.2, 0.3, 0.5]  # every context past 4,096 tokens
    bounds = [floatToGoString(b) for b in CONTEXT_TOKENS.buckets] + ["+Inf"]
    phases = [(dev_like, 180), (long_texts, 120)]
    buckets = cumulative_series(phases, per_minute=20)
    counts = " ".join(f"{20 * (m + 1)}" for m in range(300))
    labels = 'version="sha256:x",backend="onnx-int8"'
    series = [{"series": f'{CONTEXT_TOKENS.name}_bucket{{{labels},le="{le}"}}', "values": values}
              for le, values in zip(bounds, buckets)]
    series.append({"series": f"{CONTEXT_TOKENS.name}_count{{{labels}}}", "values": counts})
    shutil.copy(MONITORING / "drift-rules.yml", tmp_path / "drift-rules.yml")
    alert = {"alertname": "QAModelInputDrift"}
    fired = {"exp_labels": {"severity": "warning", "signal": CONTEXT_TOKENS.name},
             "exp_annotations": prometheus_rules(profile)["groups"][0]["rules"][-1]["annotations"] | {
                 "summary": f"{CONTEXT_TOKENS.name}: live traffic no longer looks like dev"}}
    tests = {"rule_files": ["drift-rules.yml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "alert_rule_test": [{"eval_time": "170m", **alert, "exp_alerts": []},
                            {"eval_time": "290m", **alert, "exp_alerts": [fired]}]}]}
    (tmp_path / "drift.test.yml").write_text(yaml.safe_dump(tests, sort_keys=False, width=10_000))
    result = promtool("test", "rules", "drift.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def exported_names(model_dir) -> set[str]:
    """Every sample name the service's /metrics gives once it has answered, plus the recording rules."""
    from qa.engine import QAEngine
    from serve.app import create_app
    from serve.settings import Settings

    engine = QAEngine.from_model_dir(model_dir, backend="torch", threads=1)
    client = create_app(engine, Settings(model_dir=model_dir, backend="torch")).test_client()
    body = {"question": "Who built it?", "context": "Miriam Holt built the lighthouse in 1874. " * 80}
    client.post("/v1/answer", json={**body, "handle_impossible_answer": True})
    names = {s.name for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
             for s in family.samples}
    for rules_file in ("alerts.yml", "drift-rules.yml"):
        for group in yaml.safe_load((MONITORING / rules_file).read_text())["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_panel_query_parses(tmp_path):
    rules = {"groups": [{"name": "panels", "rules": [{"record": f"panel:query_{i}", "expr": expr}
                                                      for i, (_, expr) in enumerate(panel_queries())]}]}
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules, width=10_000))
    result = promtool("check", "rules", "panels.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_query_is_caught_by_the_parse_check(tmp_path):
    rules = {"groups": [{"name": "panels", "rules": [{"record": "panel:broken", "expr": "sum(rate(qa_x[5m])"}]}]}
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules))
    assert promtool("check", "rules", "panels.yml", cwd=tmp_path).returncode != 0


METRIC_NAME = re.compile(r"(?<![\w\"=~])(qa[_:][A-Za-z0-9_:]*)")
NAME_REGEX = re.compile(r'__name__=~"([^"]+)"')


def test_every_panel_names_metrics_the_service_exports(tiny_bert_dir):
    names = exported_names(tiny_bert_dir)
    missing = []
    for title, expr in panel_queries():
        used = set(METRIC_NAME.findall(expr))
        patterns = NAME_REGEX.findall(expr)
        assert used or patterns, f"panel {title!r} names no metric: {expr}"
        missing += [f"{title}: {name}" for name in used if name not in names]
        missing += [f"{title}: {p}" for p in patterns if not any(re.fullmatch(p, n) for n in names)]
    assert missing == []


def test_every_rule_names_metrics_the_service_exports(tiny_bert_dir):
    names = exported_names(tiny_bert_dir)
    missing = []
    for rules_file in ("alerts.yml", "drift-rules.yml"):
        for group in yaml.safe_load((MONITORING / rules_file).read_text())["groups"]:
            for rule in group["rules"]:
                expr = rule["expr"]
                missing += [f"{rules_file}: {n}" for n in METRIC_NAME.findall(expr) if n not in names]
                missing += [f"{rules_file}: {p}" for p in NAME_REGEX.findall(expr)
                            if not any(re.fullmatch(p, n) for n in names)]
    assert missing == []


def test_grafana_provisioning_points_at_the_dashboard_folder():
    provider = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards" / "squad-qa.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].endswith("/squad-qa")
    provisioning = MONITORING / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]}
    dashboard = json.loads(DASHBOARD.read_text())
    used = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert used <= uids and dashboard["uid"] == "squad-qa"
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert set(config["rule_files"]) == {"alerts.yml", "drift-rules.yml"}
    assert all((MONITORING / f).is_file() for f in config["rule_files"])
