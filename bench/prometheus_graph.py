"""A screenshot of Prometheus's own graph page while it scrapes a live server under load.

    python -m bench.prometheus_graph [--model DIR] [--seconds 150] [--out docs/img/prometheus-graph.png]

Starts the service as `make serve` does (gunicorn, serve/gunicorn.conf.py), a Prometheus (Debian's
package) scraping it every 5 s with deploy/monitoring's alert and drift rules, a bounded wrk load
(bench/loadtest.lua's questions and paragraphs) for --seconds, then opens
/graph in headless Chromium (Selenium, /usr/bin/chromium) on the answers per second and the p95
latency in milliseconds, and saves the page. Everything listens on loopback and stops by itself.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from bench.loadtest import LUA_SCRIPT, Server, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
MONITORING = REPO_ROOT / "deploy" / "monitoring"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
QUERIES = [
    'sum by (route) (rate(qa_http_requests_total{route=~"/v1/.*"}[1m]))',
    '1000 * histogram_quantile(0.95, sum by (le) (rate(qa_http_request_duration_seconds_bucket{route=~"/v1/.*"}[1m])))',
]


def wait_for(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)  # polling a starting process
    raise SystemExit(f"{url} never answered")


def screenshot(url: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="qa-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage",
                 "--window-size=1400,1700", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        time.sleep(5)  # the page draws its graphs from the API after load
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "minilm-l6-squad")
    parser.add_argument("--seconds", type=int, default=150)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "img" / "prometheus-graph.png")
    args = parser.parse_args(argv)
    for tool in ("prometheus", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y prometheus wrk)")
    server = Server(args.model, "auto", workers=2, threads=4)
    server.wait_ready()
    work = Path(tempfile.mkdtemp(prefix="qa-prometheus-"))
    prometheus_port = free_port()
    for rules in ("alerts.yml", "drift-rules.yml"):
        shutil.copy(MONITORING / rules, work / rules)
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 5s, evaluation_interval: 15s}\n"
        "rule_files: [alerts.yml, drift-rules.yml]\n"
        "scrape_configs:\n"
        f"  - job_name: squad-qa\n    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n")
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "w"))  # noqa: SIM115 - closed with the process
    try:
        wait_for(f"http://127.0.0.1:{prometheus_port}/-/ready")
        subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--timeout", "30s",
                        "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{server.port}/v1/answer"],
                       check=True, capture_output=True, timeout=args.seconds + 60)
        query = {"g0.range_input": f"{max(2, args.seconds // 60 + 1)}m", "g0.tab": "0", "g0.expr": QUERIES[0],
                 "g1.range_input": f"{max(2, args.seconds // 60 + 1)}m", "g1.tab": "0", "g1.expr": QUERIES[1]}
        url = f"http://127.0.0.1:{prometheus_port}/graph?" + urllib.parse.urlencode(query)
        screenshot(url, args.out)
        print(f"written to {args.out} (Prometheus at {url})")
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
