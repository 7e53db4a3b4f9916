"""The Helm chart, linted and rendered by Helm's own engine (the Go SDK embedded in
``helm-python-sdk``, no binary), every manifest validated against Kubernetes schemas."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "recova"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
QUEUE_JOB_TIMEOUTS = {"ingest": 14400, "core": 1800, "webhooks": 600}


def production_values() -> dict[str, Any]:
    return yaml.safe_load(PRODUCTION_VALUES.read_text())


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest the chart renders (hooks included, NOTES.txt excluded)."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="recova", namespace="collect", is_install=True)
    documents = []
    for name, text in sorted(files.items()):
        if name.endswith("NOTES.txt"):
            continue
        documents.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return documents


def by_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == kind}


def notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="recova", namespace="collect", is_install=True)
    return next(text for name, text in files.items() if name.endswith("NOTES.txt"))


@pytest.mark.parametrize("values_file", [None, PRODUCTION_VALUES], ids=["defaults", "production"])
def test_the_chart_lints_clean(values_file: Path | None) -> None:
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    report = helm.lint(CHART, values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert problems == []


@pytest.mark.parametrize("values_file", [None, PRODUCTION_VALUES], ids=["defaults", "production"])
@pytest.mark.parametrize("kube", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_kubernetes_schemas(
    values_file: Path | None, kube: str
) -> None:
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    documents = render(values)
    kinds = {doc["kind"] for doc in documents}
    assert {"Deployment", "Service", "ConfigMap", "Job", "HorizontalPodAutoscaler"} <= kinds
    assert {"PodDisruptionBudget", "ServiceAccount"} <= kinds
    for doc in documents:
        kubernetes_validate.validate(doc, kube, strict=True)


def test_the_default_install_has_every_part() -> None:
    documents = render()
    deployments = by_kind(documents, "Deployment")
    assert set(deployments) == {
        "recova-web",
        "recova-worker-ingest",
        "recova-worker-core",
        "recova-worker-webhooks",
        "recova-scheduler",
    }
    assert set(by_kind(documents, "Service")) == {"recova-web"}
    assert set(by_kind(documents, "HorizontalPodAutoscaler")) == {
        "recova-web",
        "recova-worker-ingest",
        "recova-worker-core",
    }
    assert set(by_kind(documents, "PodDisruptionBudget")) == {"recova-web"}
    assert by_kind(documents, "Ingress") == {}  # optional, off by default
    assert set(by_kind(documents, "ConfigMap")) == {"recova"}
    assert set(by_kind(documents, "ServiceAccount")) == {"recova"}

    # Generated keys in the chart's own Secret, made before the migration hook runs.
    secret = by_kind(documents, "Secret")["recova"]
    assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    data_key = base64.urlsafe_b64decode(base64.b64decode(secret["data"]["RECOVA_DATA_KEY"]))
    assert len(data_key) == 32
    assert "WARNING: no PostgreSQL configured" in notes()


def test_pods_are_locked_down() -> None:
    for doc in render(production_values()):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]


def test_web_probes_and_scheduler_and_migration_hook() -> None:
    documents = render(production_values())
    deployments = by_kind(documents, "Deployment")
    web = deployments["recova-web"]["spec"]["template"]["spec"]["containers"][0]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {item["name"]: item for item in web["env"]}
    assert env["WEB_CONCURRENCY"]["value"] == "3"
    assert env["GUNICORN_THREADS"]["value"] == "8"
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "recova-pgbouncer",
        "key": "uri",
    }
    assert env["SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "recova-keys"
    assert "Secret" not in {doc["kind"] for doc in documents}  # all from existing Secrets

    scheduler = deployments["recova-scheduler"]["spec"]
    assert scheduler["replicas"] == 1
    assert scheduler["strategy"]["type"] == "Recreate"
    assert scheduler["template"]["spec"]["containers"][0]["command"][:2] == [
        "recova",
        "scheduler",
    ]

    job = by_kind(documents, "Job")["recova-migrate"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["recova", "migrate", "--jobs", "8"]
    assert {"name": "RECOVA_ENV", "value": "production"} in container["env"]

    ingress = by_kind(documents, "Ingress")["recova"]
    assert ingress["spec"]["tls"] == [
        {"secretName": "recova-tls", "hosts": ["recova.example.test"]}
    ]


def test_worker_grace_period_outlasts_its_longest_job() -> None:
    deployments = by_kind(render(production_values()), "Deployment")
    for group, timeout in QUEUE_JOB_TIMEOUTS.items():
        pod = deployments[f"recova-worker-{group}"]["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > timeout
        command = pod["containers"][0]["command"]
        assert command[:3] == ["recova", "worker", "--queues"]


def test_the_longest_declared_job_fits_its_worker_group() -> None:
    """Every job the code declares fits the grace period of the group serving its queue."""
    from recova.platform.entry.worker import import_job_modules
    from recova.platform.kernel.jobs import JobSpec

    import_job_modules()
    import gc

    specs = [obj for obj in gc.get_objects() if isinstance(obj, JobSpec)]
    assert specs
    groups = {
        group["name"]: group
        for group in yaml.safe_load((CHART / "values.yaml").read_text())["workers"]
    }
    for spec in specs:
        serving = [g for g in groups.values() if spec.queue in g["queues"]]
        assert serving, f"no worker group serves queue {spec.queue}"
        for group in serving:
            assert spec.timeout <= group["jobTimeoutSeconds"], (spec.path, group["name"])


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"web": {"replicas": "two"}}, "replicas"),
        ({"workers": [{"name": "x", "queues": ["nope"], "jobTimeoutSeconds": 60}]}, "queues"),
        ({"config": {"logLevel": "LOUD"}}, "logLevel"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"postgresql": {"url": "mysql://db/recova"}}, "url"),
        ({"replicaCount": 3}, "replicaCount"),
    ],
    ids=["type", "unknown-queue", "enum", "security", "url-scheme", "unknown-key"],
)
def test_values_that_break_the_schema_are_refused(change: dict[str, Any], complaint: str) -> None:
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmError, match=complaint):
            chart.validate_schema(change)
        with pytest.raises(helm.HelmError, match=complaint):
            chart.render(change, name="recova", namespace="collect", is_install=True)
    report = helm.lint(CHART, change, strict=True, kube_version="v1.30.0")
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


def test_valid_values_pass_the_schema() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(production_values())
        chart.validate_schema({})
