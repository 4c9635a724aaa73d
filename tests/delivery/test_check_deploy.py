"""docker/check_deploy.py on deploy/ and on broken copies of it."""

import shutil

import pytest

from .test_prune_model import ROOT, load_script

check_deploy = load_script("check_deploy")


def test_the_shipped_manifests_are_consistent():
    assert check_deploy.problems(check_deploy.load(ROOT / "deploy")) == []


@pytest.mark.parametrize(
    ("file", "old", "new", "problem"),
    [
        ("service.yaml", "component: api\n  ports:", "component: web\n  ports:", "Service selector"),
        ("pdb.yaml", "matchLabels:\n      app.kubernetes.io/name: squad-qa",
         "matchLabels:\n      app.kubernetes.io/name: other", "PodDisruptionBudget selector"),
        ("hpa.yaml", "kind: Deployment\n    name: squad-qa", "kind: Deployment\n    name: other", "targets"),
        ("deployment.yaml", "path: /readyz\n              port: http\n            periodSeconds: 5",
         "path: /healthz\n              port: http\n            periodSeconds: 5",
         "readinessProbe must GET /readyz"),
        ("deployment.yaml", "memory: 512Mi", "memory: 3Gi", "memory request 3Gi exceeds the limit 1Gi"),
        ("deployment.yaml", "runAsUser: 10001", "runAsUser: 0", "not the image's APP_UID"),
        ("service.yaml", "targetPort: http", "targetPort: metrics", "is not a container port"),
        ("ingress.yaml", "name: squad-qa\n                port:", "name: other\n                port:",
         "Ingress routes to Service 'other'"),
        ("ingress.yaml", "proxy-read-timeout: \"55\"", "proxy-read-timeout: \"600\"",
         "below gunicorn's worker timeout"),
        ("ingress.yaml", "  tls:\n    - hosts:\n        - qa.example.com\n      secretName: squad-qa-tls\n", "",
         "no tls section"),
        ("networkpolicy.yaml", "app.kubernetes.io/component: api\n  policyTypes",
         "app.kubernetes.io/component: web\n  policyTypes", "NetworkPolicy podSelector"),
        ("deployment.yaml", "mountPath: /etc/squad-qa/api-keys", "mountPath: /etc/elsewhere",
         "not in a mounted Secret"),
    ],
)
def test_a_broken_manifest_is_reported(tmp_path, file, old, new, problem):
    folder = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", folder)
    text = (folder / file).read_text()
    assert old in text, "the test's edit no longer applies to the manifest"
    (folder / file).write_text(text.replace(old, new, 1))
    found = check_deploy.problems(check_deploy.load(folder))
    assert any(problem in line for line in found), found


def test_quantities_compare_across_units():
    assert check_deploy.quantity("1Gi") == 1024 * check_deploy.quantity("1Mi")
    assert check_deploy.quantity("500m") == 0.5
    with pytest.raises(ValueError):
        check_deploy.quantity("1 GB")
