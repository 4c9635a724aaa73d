"""Has the traffic drifted from what the model was tested on? Live /metrics against the model's
reference profile (written over dev when it was packaged: train/profile.py).

    python -m serve.drift --url http://127.0.0.1:8000 [--model DIR] [--interval SECONDS] [--version V] [--json]
    make drift URL=http://127.0.0.1:8000 [MODEL=dir]
    python -m serve.drift --write-rules deploy/monitoring/drift-rules.yml [--model DIR]

For each signal of qa/monitoring.py (answer score, question and context tokens, windows read,
answer words, abstention and low-confidence rates) it prints the population stability index
between the live distribution and the reference, and a verdict: stable (PSI <= 0.1), watch
(0.1 to 0.25), drift (above 0.25), or "too few observations" under 100. Without --interval it
judges everything the server has counted since it started; with it, only what arrived between two
scrapes that many seconds apart. Exit 0: no signal drifted; 1: at least one did; 2: an error.
--write-rules writes the same PSI as Prometheus recording rules (qa:psi_<signal>:1h) with an alert,
so Prometheus watches drift continuously; regenerate them whenever the model's profile changes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from qa.model_dir import REFERENCE_PROFILE_FILE, SHIPPED_MODEL_DIR
from qa.monitoring import (
    ABSTENTION_ALLOWED,
    ABSTENTIONS,
    ANSWER_SCORE,
    LOW_CONFIDENCE,
    MIN_LIVE_QUESTIONS,
    PSI_DRIFT,
    PSI_WATCH,
    SHARE_FLOOR,
    SIGNALS,
    Profile,
    compare,
)


class DriftError(RuntimeError):
    pass


def scrape(url: str, api_key: str | None = None, timeout: float = 30) -> str:
    request = urllib.request.Request(url.rstrip("/") + "/metrics",
                                     headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - an operator's URL
            return response.read().decode("utf-8")
    except (urllib.error.URLError, OSError) as exc:
        raise DriftError(f"cannot read {url.rstrip('/')}/metrics: {exc}") from None


def live_profile(exposition: str, version: str | None = None) -> tuple[Profile, list[str]]:
    """The counts in a /metrics text (summed over the label sets of `version`, or of every version),
    and the model versions it names."""
    cumulative: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[str, float] = defaultdict(float)
    versions: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if "version" not in sample.labels:
                continue
            versions.add(sample.labels["version"])
            if version is not None and sample.labels["version"] != version:
                continue
            if sample.name.endswith("_bucket"):
                cumulative[sample.name.removesuffix("_bucket")][float(sample.labels["le"])] += sample.value
            else:
                totals[sample.name] += sample.value
    histograms = {}
    for signal in SIGNALS:
        by_bound = cumulative.get(signal.name, {})
        if not by_bound:
            histograms[signal.name] = [0] * (len(signal.buckets) + 1)
            continue
        bounds = sorted(by_bound)
        if bounds[:-1] != [float(b) for b in signal.buckets]:
            raise DriftError(f"{signal.name}: the server's buckets {bounds[:-1]} are not the reference's "
                             f"{list(signal.buckets)} (a different version of the service)")
        running = [by_bound[b] for b in bounds]
        histograms[signal.name] = [int(round(running[0]))] + [int(round(b - a)) for a, b in zip(running, running[1:])]
    rates = {"abstention": [int(totals[ABSTENTIONS + "_total"]), int(totals[ABSTENTION_ALLOWED + "_total"])],
             "low_confidence": [int(totals[LOW_CONFIDENCE + "_total"]), int(totals[ANSWER_SCORE.name + "_count"])]}
    return Profile(histograms, rates, {"version": version}), sorted(versions)


def difference(later: Profile, earlier: Profile) -> Profile:
    """What was counted between two scrapes."""
    histograms = {name: [b - a for a, b in zip(earlier.histograms[name], counts)]
                  for name, counts in later.histograms.items()}
    rates = {name: [b - a for a, b in zip(earlier.rates[name], pair)] for name, pair in later.rates.items()}
    return Profile(histograms, rates, later.source)


def check(url: str, model_dir: Path, interval: float | None = None, version: str | None = None,
          api_key: str | None = None) -> dict:
    reference = Profile.read(Path(model_dir) / REFERENCE_PROFILE_FILE)
    live, versions = live_profile(scrape(url, api_key), version)
    if interval:
        time.sleep(interval)  # the window the operator asked to judge
        later, versions = live_profile(scrape(url, api_key), version)
        live = difference(later, live)
    if version is None and len(versions) > 1:
        raise DriftError(f"the server reports several model versions {versions}: pick one with --version")
    return {"url": url, "reference": str(Path(model_dir) / REFERENCE_PROFILE_FILE),
            "reference_source": reference.source, "versions": versions, "interval_s": interval,
            "signals": compare(reference, live)}


def _share(selector: str, bound: str, previous: str | None, total: str, window: str) -> str:
    here = f'sum(increase({selector}_bucket{{le="{bound}"}}[{window}]))'
    if previous is not None:
        here = f'({here} - sum(increase({selector}_bucket{{le="{previous}"}}[{window}])))'
    return f"clamp_min({here} / {total}, {SHARE_FLOOR})"


def psi_expression(signal, reference_counts: Sequence[int], window: str) -> str:
    """PromQL for the PSI of `signal` over the last `window` against reference counts (qa/monitoring.psi),
    defined only once MIN_LIVE_QUESTIONS were observed in the window."""
    from prometheus_client.utils import floatToGoString

    total_ref = sum(reference_counts)
    bounds = [floatToGoString(b) for b in signal.buckets] + ["+Inf"]
    total = f"sum(increase({signal.name}_count[{window}]))"
    terms = []
    for i, bound in enumerate(bounds):
        ref = max(reference_counts[i] / total_ref, SHARE_FLOOR)
        share = _share(signal.name, bound, bounds[i - 1] if i else None, total, window)
        terms.append(f"({share} - {ref:.6g}) * ln({share} / {ref:.6g})")
    return "(\n  " + "\n+ ".join(terms) + f"\n)\nand on() {total} >= {MIN_LIVE_QUESTIONS}"


def prometheus_rules(reference: Profile, window: str = "1h") -> dict:
    """Recording rules qa:psi_<signal>:{window} and one alert, from a model's reference profile."""
    rules = [{"record": f"qa:psi_{signal.name.removeprefix('qa_')}:{window}",
              "expr": psi_expression(signal, reference.histograms[signal.name], window),
              "labels": {"signal": signal.name}}
             for signal in SIGNALS if sum(reference.histograms[signal.name])]
    rules.append({
        "alert": "QAModelInputDrift",
        "expr": f'{{__name__=~"qa:psi_.*:{window}"}} > {PSI_DRIFT}',
        "for": "30m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "{{ $labels.signal }}: live traffic no longer looks like dev",
            "description": f"PSI above {PSI_DRIFT} over the last {window} against the reference profile "
                           f"({reference.source.get('data_file', 'dev')}). Run make drift URL=... for every signal.",
        },
    })
    return {"groups": [{"name": "squad-qa-drift", "interval": "1m", "rules": rules}]}


def render(report: dict) -> str:
    lines = [f"drift of {report['url']} against {report['reference']} (model versions: "
             f"{', '.join(report['versions']) or 'none yet'}; PSI: stable <= {PSI_WATCH}, watch <= {PSI_DRIFT}, "
             "drift above)"]
    for name, entry in report["signals"].items():
        psi_text = f"PSI {entry['psi']:7.4f}" if "psi" in entry else " " * 11
        rates = ""
        if "reference_rate" in entry:
            live = entry["live_rate"]
            rates = f"  rate {live if live is not None else '-'} (reference {entry['reference_rate']})"
        lines.append(f"  {name:28} {psi_text}  {entry['verdict']:20} n={entry['observed']}{rates}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="the service's base URL")
    parser.add_argument("--write-rules", type=Path, help="write Prometheus drift rules from the profile instead")
    parser.add_argument("--model", type=Path, default=Path(SHIPPED_MODEL_DIR), help="the model directory served")
    parser.add_argument("--interval", type=float, default=None, help="judge only what arrives in this many seconds")
    parser.add_argument("--version", help="the model version to judge (as /readyz reports it)")
    parser.add_argument("--api-key", help="when /metrics needs a key (QA_METRICS_REQUIRE_KEY)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.write_rules:
        import yaml

        try:
            reference = Profile.read(args.model / REFERENCE_PROFILE_FILE)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        header = (f"# Generated by python -m serve.drift --write-rules from {args.model / REFERENCE_PROFILE_FILE}\n"
                  "# (the model's behaviour over dev); regenerate whenever that profile changes.\n")
        args.write_rules.write_text(header + yaml.safe_dump(prometheus_rules(reference), sort_keys=False, width=200))
        print(f"written to {args.write_rules}")
        return 0
    if not args.url:
        parser.error("--url is required (or --write-rules)")
    try:
        report = check(args.url, args.model, args.interval, args.version, args.api_key)
    except (DriftError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 1 if any(entry["verdict"] == "drift" for entry in report["signals"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
