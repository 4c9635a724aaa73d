"""The package layout's rules, checked on the source: imports run qa <- feedback <- serve and
qa <- feedback <- train, with no cycle.

Every import counts, including those inside functions (lazy imports are still dependencies).
"""

from __future__ import annotations

import graphlib
from pathlib import Path

import pytest

from tools import source_imports

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("qa", "feedback", "serve", "train")
# Who may import whom: the inference core stands alone; the feedback store (users' verdicts, the data
# that flows back) builds on it; serving and training build on both, never on each other.
ALLOWED = {"qa": {"qa"}, "feedback": {"qa", "feedback"}, "serve": {"qa", "feedback", "serve"},
           "train": {"qa", "feedback", "train"}}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_imports(path: Path) -> set[str]:
    """Modules of PACKAGES that `path` imports, anywhere in the file."""
    return source_imports.first_party_imports(path, PACKAGES)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for package in PACKAGES for p in (root / package).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in first_party_imports(path) if m in modules and m != name}
    return graph


def test_the_layout_has_the_four_packages():
    graph = import_graph()
    assert {name.split(".")[0] for name in graph} == set(PACKAGES)
    assert {"qa.windowing", "qa.decoding", "qa.engine", "qa.backends", "qa.model_dir", "qa.params"} <= set(graph)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_run_one_way(package):
    graph = import_graph()
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] not in ALLOWED[package]
    )
    assert not wrong, wrong


def test_no_import_cycle():
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_checker_sees_a_cycle_and_a_wrong_way_import(tmp_path):
    """The rules above can fail: a planted cycle and a lazy qa -> serve import are both seen."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "qa" / "a.py").write_text("from qa import b\n")
    (tmp_path / "qa" / "b.py").write_text("def f():\n    import qa.a\n    from serve.app import x\n")
    (tmp_path / "serve" / "app.py").write_text("x = 1\n")
    graph = import_graph(tmp_path)
    assert graph["qa.b"] == {"qa.a", "serve.app"}
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(graph).static_order())


def test_the_image_stages_copy_what_their_code_imports():
    """The exporter stage copies qa/ and train/{__init__,cli,export}.py; the runtime stage qa/, feedback/ and serve/.
    Whatever those import (transitively) must be among what is copied, or the image build breaks."""
    graph = import_graph()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(graph.get(module, ()))
        return seen

    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    core = ("__init__", "backends", "errors", "files", "model_dir", "params")
    assert f"COPY {' '.join(f'qa/{m}.py' for m in core)} qa/" in dockerfile
    assert "COPY train/__init__.py train/cli.py train/export.py train/" in dockerfile
    exporter = {"qa", *(f"qa.{m}" for m in core[1:]), "train", "train.cli", "train.export"}
    assert reach("train.export") <= exporter
    assert reach("qa.backends") | reach("qa.model_dir") <= exporter  # docker/prune_model.py imports these
    assert all(f"COPY {p}/ /app/{p}/" in dockerfile for p in ("qa", "feedback", "serve"))
    assert all(m.split(".")[0] in ("qa", "feedback", "serve") for m in reach("serve.wsgi"))


def test_every_copied_path_is_in_the_docker_build_context():
    """.dockerignore lets in only what it names: a COPY of anything else fails the image build."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    allowed = [line[1:].strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")]
    missing = []
    for line in dockerfile.splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(w.startswith("--from") for w in words):
            continue
        sources = [w for w in words[1:-1] if not w.startswith("--")]
        for source in sources:
            if "$" in source:  # the model directory: docker/build.sh stages it under an allowed path
                continue
            path = source.rstrip("/")
            if not any(path == a or path.startswith(a + "/") for a in allowed):
                missing.append(path)
    assert missing == [], f"COPY'd but excluded by .dockerignore: {missing}"
