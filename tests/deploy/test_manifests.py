"""deploy/ checked offline: the Kubernetes overlays against the API schemas and against what the
architecture asks of every pod, Compose against its specification, the Dockerfile with
hadolint, everything with yamllint and checkov."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from medcloud.bootstrap import ALL_CONTEXTS
from medcloud.gateway.ingress import service_name
from tests.deploy.conftest import DEPLOY, ROOT, Tool

OVERLAYS = ("dev", "production")
KUBERNETES = "1.30.0"
"""The oldest Kubernetes release the manifests are for (preStop `sleep` needs 1.30)."""

Objects = list[dict[str, Any]]
TEMPLATES = (DEPLOY / "sam" / "template.yaml", DEPLOY / "cloudformation" / "vm.yaml")


class _CloudFormation(yaml.SafeLoader):
    """Reads CloudFormation's short-form functions (`!Ref`, `!Sub`) as their plain values."""


_CloudFormation.add_multi_constructor(
    "!",
    lambda loader, _tag, node: (
        loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node)
    ),
)


def template(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.load(path.read_text(), Loader=_CloudFormation)  # noqa: S506
    return loaded


@pytest.fixture(scope="module")
def rendered(deploy_tool: Tool, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each overlay built with kustomize, as `kubectl apply -k` would send it."""
    out = tmp_path_factory.mktemp("k8s")
    files = {}
    for overlay in OVERLAYS:
        built = deploy_tool("kubectl", "kustomize", DEPLOY / "k8s" / "overlays" / overlay)
        assert built.returncode == 0, built.stderr
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(built.stdout)
    return files


def objects(path: Path) -> Objects:
    return [each for each in yaml.safe_load_all(path.read_text()) if each]


def of_kind(found: Objects, kind: str) -> dict[str, dict[str, Any]]:
    return {each["metadata"]["name"]: each for each in found if each["kind"] == kind}


def workloads(found: Objects) -> dict[str, dict[str, Any]]:
    """The long-running workloads: Deployments, and the ingest workers' StatefulSet."""
    return of_kind(found, "Deployment") | of_kind(found, "StatefulSet")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [medcloud] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(medcloud)


def test_every_overlay_matches_the_kubernetes_schemas(
    rendered: dict[str, Path], deploy_tool: Tool
) -> None:
    for path in rendered.values():
        checked = deploy_tool("kubernetes-validate", "--quiet", "--strict", "-k", KUBERNETES, path)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_schema_check_refuses_a_misspelt_field(deploy_tool: Tool, tmp_path: Path) -> None:
    # The check above means something only if a wrong manifest fails it.
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
        "spec: {ports: [{port: 80, targetPort: http}], selectr: {a: b}}\n"
    )
    checked = deploy_tool("kubernetes-validate", "--quiet", "--strict", "-k", KUBERNETES, wrong)
    assert checked.returncode != 0


def test_each_context_runs_as_a_service_and_a_worker(rendered: dict[str, Path]) -> None:
    deployments = workloads(objects(rendered["production"]))
    expected = {service_name(c) for c in ALL_CONTEXTS} | {
        f"{service_name(c)}-worker" for c in ALL_CONTEXTS
    }
    assert set(deployments) == expected
    services = of_kind(objects(rendered["production"]), "Service")
    assert {service_name(c) for c in ALL_CONTEXTS} <= set(services)


def test_every_pod_is_probed_bounded_and_locked_down(rendered: dict[str, Path]) -> None:
    found = objects(rendered["production"])
    for name, deployment in workloads(found).items():
        pod = deployment["spec"]["template"]["spec"]
        main = container(deployment)
        resources = main["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) & set(resources["limits"]), name
        security = main["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"], name
        assert security["allowPrivilegeEscalation"] is False, name
        assert security["capabilities"]["drop"] == ["ALL"], name
        assert pod["automountServiceAccountToken"] is False, name
        if deployment["metadata"]["labels"]["medcloud/process"] == "serve":
            assert main["livenessProbe"]["httpGet"]["path"] == "/health", name
            assert main["readinessProbe"]["httpGet"]["path"] == "/ready", name
            assert main["startupProbe"]["httpGet"]["path"] == "/health", name


def test_the_ingest_workers_share_the_mqtt_load_under_their_pods_stable_names(
    rendered: dict[str, Path],
) -> None:
    for path in rendered.values():
        found = objects(path)
        workers = of_kind(found, "StatefulSet")
        assert set(workers) == {"medcloud-ingest-worker"}
        worker = workers["medcloud-ingest-worker"]
        replicas = worker["spec"]["replicas"]
        assert replicas >= 2
        client_id = next(
            v for v in container(worker)["env"] if v["name"] == "MEDCLOUD_MQTT__CLIENT_ID"
        )
        assert client_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        # Every pod's session is made up front, and none that no pod would take.
        [config] = of_kind(found, "ConfigMap").values()
        listed = json.loads(config["data"]["MEDCLOUD_MQTT__WORKER_CLIENT_IDS"])
        assert listed == [f"medcloud-ingest-worker-{n}" for n in range(replicas)]
        governing = of_kind(found, "Service")[worker["spec"]["serviceName"]]
        assert governing["spec"]["clusterIP"] == "None"


def test_the_http_services_autoscale_from_3_to_10_on_cpu_and_memory(
    rendered: dict[str, Path],
) -> None:
    found = objects(rendered["production"])
    autoscalers = of_kind(found, "HorizontalPodAutoscaler")
    assert set(autoscalers) == {service_name(c) for c in ALL_CONTEXTS}
    for name, autoscaler in autoscalers.items():
        spec = autoscaler["spec"]
        assert (spec["minReplicas"], spec["maxReplicas"]) == (3, 10), name
        targets = {
            metric["resource"]["name"]: metric["resource"]["target"]["averageUtilization"]
            for metric in spec["metrics"]
        }
        assert targets == {"cpu": 70, "memory": 80}, name
        assert spec["scaleTargetRef"]["name"] == name
    budgets = of_kind(found, "PodDisruptionBudget")
    assert set(budgets) == set(workloads(found))


def test_the_network_is_closed_by_default_and_no_secret_is_in_a_manifest(
    rendered: dict[str, Path],
) -> None:
    for path in rendered.values():
        found = objects(path)
        policies = of_kind(found, "NetworkPolicy")
        deny = policies["medcloud-default-deny"]["spec"]
        assert deny["podSelector"] == {}
        assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
        assert "ingress" not in deny and "egress" not in deny
        assert not of_kind(found, "Secret")
        for workload in [*workloads(found).values(), *of_kind(found, "Job").values()]:
            for variable in container(workload).get("env", []):
                if re.search(r"PASSWORD|SECRET|KEY|TOKEN|_URL", variable["name"]):
                    assert "value" not in variable, variable["name"]


def test_the_daily_reports_run_at_two_utc_once_and_locked_down(
    rendered: dict[str, Path],
) -> None:
    for path in rendered.values():
        [job] = of_kind(objects(path), "CronJob").values()
        assert (job["spec"]["schedule"], job["spec"]["timeZone"]) == ("0 2 * * *", "Etc/UTC")
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        pod = job["spec"]["jobTemplate"]["spec"]["template"]
        main = container({"spec": {"template": pod}})
        assert main["args"] == ["reports", "daily"]
        security = main["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
        assert security["capabilities"]["drop"] == ["ALL"]
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert {"cpu", "memory"} <= set(main["resources"]["limits"])
        for variable in main["env"]:
            assert "value" not in variable, variable["name"]


def test_every_object_carries_the_cost_labels(rendered: dict[str, Path]) -> None:
    for path in rendered.values():
        for each in objects(path):
            labels = each["metadata"].get("labels", {})
            assert labels.get("cost-center") == "medcloud", each["metadata"]["name"]
            assert labels.get("app.kubernetes.io/part-of") == "medcloud"
            template = each.get("spec", {}).get("template", {})
            if template:
                assert template["metadata"]["labels"]["cost-center"] == "medcloud"


def test_the_ingress_sends_each_path_to_a_service_that_exists(rendered: dict[str, Path]) -> None:
    found = objects(rendered["production"])
    services = set(of_kind(found, "Service"))
    ingresses = of_kind(found, "Ingress")
    assert "medcloud" in ingresses
    for ingress in ingresses.values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] in services, path["path"]


def test_compose_matches_the_compose_specification(deploy_tool: Tool) -> None:
    checked = deploy_tool(
        "check-jsonschema", "--builtin-schema", "vendor.compose-spec", DEPLOY / "compose.yaml"
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_runs_all_in_one_or_split_behind_nginx() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]

    def profile(name: str) -> set[str]:
        return {key for key, value in services.items() if name in value.get("profiles", [])}

    backing = {"postgres", "rabbitmq", "redis", "mosquitto", "mailpit", "migrate"}
    assert profile("all-in-one") == backing | {"medcloud"}
    assert profile("split") == backing | {"nginx"} | set(ALL_CONTEXTS) | {
        f"{context}-worker" for context in ALL_CONTEXTS
    }


def test_the_dockerfile_passes_hadolint(deploy_tool: Tool) -> None:
    checked = deploy_tool("hadolint", DEPLOY / "Dockerfile")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_deploy_files_pass_yamllint(deploy_tool: Tool) -> None:
    checked = deploy_tool("yamllint", "--strict", "-c", ROOT / ".yamllint.yaml", DEPLOY)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_checkov_finds_nothing_that_is_not_explained(
    rendered: dict[str, Path], deploy_tool: Tool
) -> None:
    config = DEPLOY / "checkov.yaml"
    lines = [line.strip() for line in config.read_text().splitlines()]
    for number, line in enumerate(lines):
        if line.startswith("- CKV"):
            # Each skip sits under the comment that gives its reason (or under another skip
            # that shares it).
            above = next(each for each in reversed(lines[:number]) if not each.startswith("- "))
            assert above.startswith("#"), line
    targets: list[str | Path] = []
    for path in (DEPLOY / "Dockerfile", *rendered.values(), *TEMPLATES):
        targets += ["-f", path]
    checked = deploy_tool(
        "checkov", "--config-file", config, "--framework", "kubernetes", "dockerfile",
        "cloudformation", "-o", "json", *targets,
    )  # fmt: skip
    reports = json.loads(checked.stdout)
    for report in reports if isinstance(reports, list) else [reports]:
        failed = [
            (each["check_id"], each["resource"]) for each in report["results"]["failed_checks"]
        ]
        assert not failed, failed
        assert report["summary"]["passed"] > 0


def test_the_cloudformation_templates_pass_cfn_lint(deploy_tool: Tool) -> None:
    checked = deploy_tool("cfn-lint", *TEMPLATES)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_functions_run_on_what_their_objects_arrive_as_and_on_the_clock() -> None:
    resources = template(DEPLOY / "sam" / "template.yaml")["Resources"]
    functions = {
        each["Properties"]["Handler"]: each["Properties"]
        for each in resources.values()
        if each["Type"] == "AWS::Serverless::Function"
    }
    assert set(functions) == {
        "medcloud.functions.uploads.handler",
        "medcloud.functions.hl7_to_fhir.handler",
        "medcloud.functions.daily_report.handler",
    }
    prefixes = {}
    for handler, properties in functions.items():
        module, name = handler.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), name))
        [event] = properties["Events"].values()
        if event["Type"] == "ScheduleV2":
            schedule = event["Properties"]
            assert (schedule["ScheduleExpression"], schedule["ScheduleExpressionTimezone"]) == (
                "cron(0 2 * * ? *)",
                "UTC",
            )
            continue
        assert event["Type"] == "S3"
        assert event["Properties"]["Events"] == "s3:ObjectCreated:*"
        [rule] = event["Properties"]["Filter"]["S3Key"]["Rules"]
        prefixes[handler] = rule["Value"]
    assert prefixes == {
        "medcloud.functions.uploads.handler": "uploads/",
        "medcloud.functions.hl7_to_fhir.handler": "hl7/",
    }
    assert any(each["Type"] == "AWS::SNS::Topic" for each in resources.values())


def test_the_vms_scale_from_3_to_10_on_cpu_and_requests_behind_a_health_check() -> None:
    resources = template(DEPLOY / "cloudformation" / "vm.yaml")["Resources"]
    group = resources["AutoScalingGroup"]["Properties"]
    assert (group["MinSize"], group["MaxSize"], group["HealthCheckType"]) == ("3", "10", "ELB")
    assert resources["TargetGroup"]["Properties"]["HealthCheckPath"] == "/health"
    targets = {
        each["Properties"]["TargetTrackingConfiguration"]["PredefinedMetricSpecification"][
            "PredefinedMetricType"
        ]: each["Properties"]["TargetTrackingConfiguration"]["TargetValue"]
        for each in resources.values()
        if each["Type"] == "AWS::AutoScaling::ScalingPolicy"
    }
    assert targets == {"ASGAverageCPUUtilization": 70, "ALBRequestCountPerTarget": 1000}
