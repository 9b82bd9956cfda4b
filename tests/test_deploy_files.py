"""deploy/: what can be checked without Docker or Kubernetes. The files parse and agree with each
other; the Helm values fit the official chart's values schema; the Dockerfile's steps, run as a
script, install the locked dependencies and give an image whose code server answers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def _load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


# --- docker compose ---------------------------------------------------------------------------


def test_compose_runs_the_production_layout_from_one_image():
    services = _load("docker-compose.yaml")["services"]
    assert {"postgres", "code-location", "webserver", "daemon"} <= set(services)
    code = services["code-location"]
    assert code["build"]["dockerfile"] == "deploy/Dockerfile"
    assert code["command"][:5] == ["dagster", "api", "grpc", "-m", "pipelines.definitions"]
    port = int(code["command"][code["command"].index("--port") + 1])
    # The webserver and the daemon load the code location over gRPC, from the workspace file.
    grpc = _load("workspace.yaml")["load_from"][0]["grpc_server"]
    assert (grpc["host"], grpc["port"]) == ("code-location", port)
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("webserver", "daemon"):
        command = services[name]["command"]
        assert command[command.index("-w") + 1] == "deploy/workspace.yaml"
        assert services[name]["image"] == code["image"]


def test_compose_keeps_dagster_in_postgresql_and_no_secret_in_the_file():
    services = _load("docker-compose.yaml")["services"]
    for name in ("code-location", "webserver", "daemon"):
        env = services[name]["environment"]
        url = env["STRIPE_REPORTS_DAGSTER_STORAGE_URL"]
        assert url.startswith("postgresql://") and "@postgres:5432/" in url
        assert "${POSTGRES_PASSWORD" in url  # the password comes from deploy/.env
        assert env["STRIPE_REPORTS_SECRET"].startswith("${STRIPE_REPORTS_SECRET")


def _interpolate(value: str, given: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} with the values `given`."""
    def one(match: re.Match) -> str:
        name, op, rest = match[1], match[2], match[3]
        if name in given:
            return given[name]
        if op == ":?":
            raise KeyError(f"{name}: {rest}")
        return rest if op == ":-" else ""
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def test_compose_report_service_needs_the_credential_and_starts_with_it(home, tmp_path):
    """The report service's environment and command, as compose gives them (PostgreSQL and
    the volume swapped for this test's files): without the hash compose refuses to start
    it; with it `serve` signs staff in at the public URL (bound to 127.0.0.1 here)."""
    from apps.web.auth import hash_password
    from apps.web.security import site_for
    from engine.settings import load_settings

    service = _load("docker-compose.yaml")["services"]["reports"]
    command = service["command"]
    assert command[:2] == ["stripe-reports", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    port = _free_port()
    given = {"POSTGRES_PASSWORD": "pw", "STRIPE_REPORTS_SECRET": "compose-check",
             "STRIPE_REPORTS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    with pytest.raises(KeyError, match="STRIPE_REPORTS_ADMIN_PASSWORD_HASH"):
        _interpolate(service["environment"]["STRIPE_REPORTS_ADMIN_PASSWORD_HASH"], given)
    given["STRIPE_REPORTS_ADMIN_PASSWORD_HASH"] = hash_password("compose staff")
    env = {k: _interpolate(str(v), given) for k, v in service["environment"].items()}
    assert env["STRIPE_REPORTS_PUBLIC_URL"] == given["STRIPE_REPORTS_PUBLIC_URL"]
    env.update(STRIPE_REPORTS_CONNECTIONS_URL=f"sqlite:///{tmp_path / 'c.db'}",
               STRIPE_REPORTS_WAREHOUSE=str(tmp_path / "w.duckdb"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        site_for(load_settings(), "0.0.0.0", 8050)  # what `serve --host 0.0.0.0` checks
    serve = [*command[:command.index("--host")], "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / serve[0]), *serve[1:]], cwd=ROOT,
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "staff sign in" in server.stdout.readline()
        with httpx.Client(base_url=given["STRIPE_REPORTS_PUBLIC_URL"]) as http:
            assert http.get("/api/clients").status_code == 401
            signed = http.post("/signin", data={"password": "compose staff"},
                               headers={"Origin": given["STRIPE_REPORTS_PUBLIC_URL"]})
            assert signed.status_code == 303 and http.get("/api/clients").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_helm_values_give_the_report_page_its_url_and_credential():
    values = _load("helm/values.yaml")
    env = {e["name"]: e for e in values["dagster-user-deployments"]["deployments"][0]["env"]}
    assert env["STRIPE_REPORTS_PUBLIC_URL"]["value"].startswith("https://")
    secret = env["STRIPE_REPORTS_ADMIN_PASSWORD_HASH"]["valueFrom"]["secretKeyRef"]
    assert secret["key"] == "password-hash" and "value" not in env[
        "STRIPE_REPORTS_ADMIN_PASSWORD_HASH"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert any(v.startswith("STRIPE_REPORTS_PUBLIC_URL=https://") for v in launcher["envVars"])


# --- Helm values against the official chart's values schema -----------------------------------
# The parts of helm/dagster/values.schema.json (dagster-io/dagster, the chart's published schema)
# that our values set: the allowed keys (the schema forbids others there), required keys, enums.

IMAGE = {"keys": {"repository", "tag", "pullPolicy"}, "required": {"repository", "pullPolicy"},
         "enums": {"pullPolicy": {"Always", "IfNotPresent", "Never"}}}
SCHEMA = {
    "keys": {"dagsterWebserver", "dagster-user-deployments", "postgresql",
             "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq",
             "redis", "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler",
             "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry",
             "serviceAccount", "global", "retention", "additionalInstanceConfig"},
    "dagster-user-deployments": {
        "keys": {"enabled", "enableSubchart", "imagePullSecrets", "deployments"},
        "deployments[]": {
            "keys": {"name", "image", "dagsterApiGrpcArgs", "codeServerArgs",
                     "includeConfigInLaunchedRuns", "deploymentNamespace", "port", "env",
                     "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity",
                     "tolerations", "podSecurityContext", "securityContext", "resources",
                     "livenessProbe", "readinessProbe", "startupProbe", "labels", "volumeMounts",
                     "volumes", "schedulerName", "initContainers", "sidecarContainers"},
            "required": {"name", "image", "port"}, "image": IMAGE}},
    "runLauncher": {
        "keys": {"type", "config"}, "required": {"type", "config"},
        "enums": {"type": {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"}},
        "config": {"keys": {"celeryK8sRunLauncher", "k8sRunLauncher", "customRunLauncher"},
                   "k8sRunLauncher": {
                       "keys": {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig",
                                "kubeconfigFile", "envConfigMaps", "envSecrets", "envVars",
                                "volumeMounts", "volumes", "labels", "failPodOnRunFailure",
                                "resources", "schedulerName", "securityContext", "runK8sConfig"},
                       "required": {"imagePullPolicy", "loadInclusterConfig", "envConfigMaps",
                                    "envSecrets", "envVars", "volumeMounts", "volumes"},
                       "runK8sConfig": {"keys": {"containerConfig", "podSpecConfig",
                                                 "podTemplateSpecMetadata", "jobSpecConfig",
                                                 "jobMetadata"}}}}},
    "dagsterDaemon": {
        "keys": {"enabled", "image", "runCoordinator", "heartbeatTolerance", "env",
                 "envConfigMaps", "envSecrets", "deploymentLabels", "labels", "nodeSelector",
                 "affinity", "tolerations", "podSecurityContext", "securityContext", "resources",
                 "livenessProbe", "readinessProbe", "startupProbe", "annotations",
                 "runMonitoring", "runRetries", "sensors", "schedules", "schedulerName",
                 "volumeMounts", "volumes", "initContainerResources"},
        "runCoordinator": {
            "keys": {"enabled", "type", "config"}, "required": {"enabled", "type", "config"},
            "enums": {"type": {"QueuedRunCoordinator", "CustomRunCoordinator"}},
            "config": {"keys": {"queuedRunCoordinator", "customRunCoordinator"},
                       "queuedRunCoordinator": {
                           "keys": {"maxConcurrentRuns", "tagConcurrencyLimits",
                                    "dequeueIntervalSeconds", "dequeueNumWorkers",
                                    "dequeueUseThreads", "blockOpConcurrencyLimitedRuns"},
                           "tagConcurrencyLimits[]": {
                               "keys": {"key", "value", "limit"}, "required": {"key", "limit"},
                               "value": {"keys": {"applyLimitPerUniqueValue"},
                                         "required": {"applyLimitPerUniqueValue"}}}}}},
        "schedules": {"keys": {"useThreads", "numWorkers", "numSubmitWorkers"},
                      "required": {"useThreads"}},
        "sensors": {"keys": {"useThreads", "numWorkers", "numSubmitWorkers"},
                    "required": {"useThreads"}}},
    "postgresql": {"keys": {"image", "enabled", "postgresqlHost", "postgresqlUsername",
                            "postgresqlPassword", "postgresqlDatabase", "postgresqlParams",
                            "postgresqlScheme", "service"},
                   "service": {"keys": {"port"}, "required": {"port"}}},
}


def _violations(value: object, schema: dict, where: str = "values") -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected a mapping"]
    found = [f"{where}.{k}: not in the chart's schema" for k in set(value) - schema["keys"]]
    found += [f"{where}.{k}: required" for k in schema.get("required", set()) - set(value)]
    found += [f"{where}.{k}: {value[k]!r} not one of {sorted(allowed)}"
              for k, allowed in schema.get("enums", {}).items()
              if k in value and value[k] not in allowed]
    for key, sub in schema.items():
        if key.endswith("[]") and key[:-2] in value:
            for i, item in enumerate(value[key[:-2]]):
                found += _violations(item, sub, f"{where}.{key[:-2]}[{i}]")
        elif isinstance(sub, dict) and "keys" in sub and key in value:
            found += _violations(value[key], sub, f"{where}.{key}")
    return found


def test_the_helm_values_fit_the_charts_schema():
    assert _violations(_load("helm/values.yaml"), SCHEMA) == []


def test_the_schema_check_catches_what_helm_would_refuse():
    values = _load("helm/values.yaml")
    values["runLauncher"]["config"]["k8sRunLauncher"]["imagePullPolicy"] = "Sometimes"
    values["runLauncher"]["config"]["k8sRunLauncher"]["jobNamespaces"] = "typo"
    del values["dagsterDaemon"]["runCoordinator"]["enabled"]
    problems = "\n".join(_violations(values, SCHEMA))
    assert "jobNamespaces: not in the chart's schema" in problems
    assert "runCoordinator.enabled: required" in problems
    values["runLauncher"]["type"] = "DockerRunLauncher"
    assert "not one of" in "\n".join(_violations(values, SCHEMA))


def test_the_helm_values_launch_runs_as_kubernetes_jobs_queued_per_client():
    values = _load("helm/values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "pipelines.definitions"]
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True},
            "limit": 1} in queue["tagConcurrencyLimits"]
    assert queue["maxConcurrentRuns"] > 0
    # The chart's instance opens PostgreSQL with psycopg2, which dagster-postgres needs.
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"


# --- the Dockerfile, run as a script ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _image_env(root: Path) -> dict[str, str]:
    lines = (root / "image.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _serve_and_probe(root: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The image's ENTRYPOINT and CMD (on a free port): the code server answers a health check."""
    port = str(_free_port())
    workdir = Path((root / "image.workdir").read_text())
    env = {**env, "STRIPE_REPORTS_SECRET": "image-check", "STRIPE_REPORTS_CLIENTS_FILE":
           str(workdir / "workspace_config" / "clients.yaml")}
    log = (tmp_path / "code-server.log").open("w")
    server = subprocess.Popen(
        [str(workdir / "deploy" / "entrypoint.sh"), "dagster", "api", "grpc", "-m",
         "pipelines.definitions", "--host", "127.0.0.1", "--port", port],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and server.poll() is None:
            probe = subprocess.run(["dagster", "api", "grpc-health-check", "--port", port],
                                   env=env, capture_output=True, timeout=30)
            if probe.returncode == 0:
                break
            time.sleep(1)
        else:
            pytest.fail("the image's code server never answered:\n"
                        + (tmp_path / "code-server.log").read_text()[-3000:])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert (Path(env["DAGSTER_HOME"]) / "dagster.yaml").exists()  # written by the entrypoint


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("STRIPE_REPORTS_IMAGE_CHECK"), reason=(
    "installs the whole lock into a new venv (2-5 min on 2 cores): `make deploy-check` runs it"))
def test_the_dockerfile_steps_install_the_lock_and_serve_the_code_location(tmp_path):
    root = tmp_path / "image"
    root.mkdir()
    built = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "dockerfile_steps.py"),
         str(DEPLOY / "Dockerfile"), str(root), "--fast"],
        capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    env = _image_env(root)
    assert Path(env["VIRTUAL_ENV"]).is_relative_to(root)
    _serve_and_probe(root, env, tmp_path)
