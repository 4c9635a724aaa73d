"""Dependency audit: pip-audit of this virtualenv against the PyPI vulnerability service.

    python tools/audit.py [--timeout 300] [--allow-incomplete]      (or: make audit)

Prints every known vulnerability (package, version, advisory, fixed versions) and how many
packages could be looked up. Exit status: 0 clean, 1 vulnerabilities found, 3 the audit could not
be completed (service unreachable, timed out, or packages it does not know, e.g. behind an
offline mirror; --allow-incomplete turns the last case into a warning).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

SERVICE = "https://pypi.org/pypi/<name>/<version>/json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timeout", type=int, default=300, help="seconds for the whole audit")
    parser.add_argument(
        "--allow-incomplete", action="store_true", help="do not fail on packages not looked up"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "audit.json"
        command = [
            sys.executable,
            "-m",
            "pip_audit",
            "--skip-editable",
            "--desc",
            "on",
            "--progress-spinner",
            "off",
            "--timeout",
            "20",
            "--format",
            "json",
            "--output",
            str(report_path),
        ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(
                f"error: pip-audit did not finish in {args.timeout} s; is the vulnerability service "
                f"({SERVICE}) reachable from here?",
                file=sys.stderr,
            )
            return 3
        if not report_path.is_file():
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            print(
                f"error: pip-audit failed (exit {result.returncode}): {last}\n"
                f"is the vulnerability service ({SERVICE}) reachable from here?",
                file=sys.stderr,
            )
            return 3
        report = json.loads(report_path.read_text())

    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if d.get("skip_reason")]
    editable = [d for d in skipped if "editable" in d["skip_reason"]]
    unaudited = [d for d in skipped if d not in editable]
    audited = [d for d in dependencies if not d.get("skip_reason")]
    findings = [(d["name"], d["version"], v) for d in audited for v in d.get("vulns", [])]

    for name, version, vuln in findings:
        fixed = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
        aliases = ", ".join(vuln.get("aliases") or [])
        advisory = vuln["id"] + (f" ({aliases})" if aliases else "")
        print(f"VULNERABLE  {name} {version}: {advisory}; fixed in: {fixed}")
        description = " ".join((vuln.get("description") or "").split())
        if description:
            print(f"            {description[:300]}")
    print(
        f"{len(audited)} of {len(dependencies) - len(editable)} installed packages looked up; "
        f"{len(findings)} known vulnerabilities in {len({f[0] for f in findings})} packages"
    )
    if unaudited:
        reasons = Counter(d["skip_reason"].split(":")[0] for d in unaudited)
        names = ", ".join(
            d["name"] + (f"=={d['version']}" if d.get("version") else "") for d in unaudited[:8]
        )
        more = f" and {len(unaudited) - 8} more" if len(unaudited) > 8 else ""
        print(f"NOT AUDITED {len(unaudited)} packages ({'; '.join(reasons)}): {names}{more}")
    if findings:
        return 1
    if unaudited and not args.allow_incomplete:
        print(
            f"error: the audit is incomplete: the vulnerability service ({SERVICE}) did not know "
            f"{len(unaudited)} of the installed versions",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
