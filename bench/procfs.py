"""Process facts from Linux /proc: the gunicorn master's workers, their memory and CPU time.

Shared by the benchmark, the load test and the test suite's gunicorn harness.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def _parent_pids() -> dict[int, list[int]]:
    """Parent pid -> child pids for every live process."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited while we listed
            continue
        # The command name (field 2) may hold spaces and parentheses; the fields after the last ')' do not.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def children(pid: int) -> list[int]:
    """Direct child pids of `pid`, sorted."""
    return sorted(_parent_pids().get(pid, []))


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    by_parent = _parent_pids()
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(by_parent.get(pid, []))
    return tree


def rss_bytes(pids: Sequence[int]) -> int:
    """Summed resident memory; processes that exit meanwhile count as 0."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            pass
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time of the processes (including their reaped children)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / ticks
