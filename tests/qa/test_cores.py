"""The cores a server process may use decide its threads and lanes."""

import os
import shutil
import subprocess
import sys

import pytest

from qa.backends import usable_cores

PRINT_CORES = "from qa.backends import usable_cores; print(usable_cores())"


def test_usable_cores_follow_the_affinity_mask():
    assert usable_cores() == len(os.sched_getaffinity(0))


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs util-linux taskset")
def test_a_process_pinned_to_one_core_sees_one():
    result = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", PRINT_CORES],
                            capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "1"
