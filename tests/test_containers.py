"""The container files under infra/container are checked without a container engine (there is
none on the development machine): they parse, every component runs the command ``ecpds up``
runs it with (cli/supervisor.py) and every command is a real module or CLI verb of this project,
every ECPDS_* variable they set is one ``Settings`` reads, the image is built in stages and
runs as a user without rights, and the HTTP probes ask for a route the component serves."""

from __future__ import annotations

import base64
import importlib.util
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from bus.settings import ROOT, Settings
from cli.supervisor import components

CONTAINER = ROOT / "infra" / "container"
IMAGE = "localhost/ecpds:0.1.0"
# the components that answer HTTP: the port they listen on and their app's routes
HTTP = {"monitor": 8080, "api": 8081}


def supervised() -> dict[str, list[str]]:
    """Each component's command as ``ecpds up`` runs it, with ``python`` for the interpreter."""
    return {c.name: ["python", *c.argv[1:]] for c in components()}


def routes_of(component: str) -> set[str]:
    """The paths the component's web app serves (its route table, built without a state)."""
    from producers.api.app import routes as api_routes
    from projections.monitor.app import routes as monitor_routes

    table = monitor_routes(None) if component == "monitor" else api_routes(None)  # type: ignore[arg-type]
    return {route.path for route in table if hasattr(route, "path")}


def resolves(command: list[str]) -> bool:
    """Whether ``command`` runs a module of this project (``python -m x``) or a verb of the
    ``ecpds`` CLI (``ecpds topics apply``)."""
    if command[:2] == ["python", "-m"]:
        module = command[2]
        return module.split(".")[0] in PACKAGES and importlib.util.find_spec(module) is not None
    if command[0] != "ecpds":
        return False
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    if scripts.get("ecpds") != "cli.main:app":
        return False
    from cli.main import app

    # typer's groups carry their sub-commands in ``commands`` (typer ships its own click)
    verb: Any = typer.main.get_command(app)
    for word in command[1:]:
        if word.startswith("-"):
            break
        if word not in getattr(verb, "commands", {}):
            return False
        verb = verb.commands[word]
    return not hasattr(verb, "commands") or command[-1] == "--help"


PACKAGES = {"bus", "protocols", "store", "producers", "consumers", "projections", "cli"}


def unknown_variables(env: Mapping[str, Any]) -> set[str]:
    return {name for name in env if name.startswith("ECPDS_")} - Settings.variables()


def cluster_id_ok(value: str) -> bool:
    """A KRaft cluster id: 16 bytes in URL-safe base64 without padding (22 characters)."""
    return len(value) == 22 and len(base64.urlsafe_b64decode(value + "==")) == 16


# --- Containerfile ------------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined, comments out."""
    text = re.sub(r"\\\n", " ", path.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages(path: Path) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for word, rest in instructions(path):
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, rest))
    return out


def test_the_image_is_built_in_stages_and_runs_without_rights() -> None:
    """The codec is compiled in a build stage, the runtime stage copies the built environment
    (no toolchain in it) and runs as a numeric non-root user; every file it copies exists."""
    built = stages(CONTAINER / "Containerfile")
    assert len(built) >= 2
    *build, runtime = built
    assert any(w == "RUN" and "pip install ./native/avro" in r for s in build for w, r in s)
    assert any(w == "RUN" and re.search(r"pip install \.(\s|$)", r) for s in build for w, r in s)
    assert ("COPY", "--from=build /opt/ecpds /opt/ecpds") in runtime
    assert not any("cargo" in r or "rust" in r for _, r in runtime)
    users = [r for w, r in runtime if w == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert users[-1].split(":")[0].isdigit()  # numeric: Kubernetes' runAsNonRoot can check it
    for word, rest in instructions(CONTAINER / "Containerfile"):
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = rest.split()
            assert all((ROOT / s).exists() for s in sources), rest
        if word == "ENV":
            names = set(re.findall(r"(ECPDS_\w+)=", rest))
            assert names <= Settings.variables(), names - Settings.variables()
        if word == "CMD":
            assert resolves(yaml.safe_load(rest))


# --- compose ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CONTAINER / "compose.yaml").read_text())
    return loaded


def test_compose_runs_every_component_with_its_own_command(compose: dict[str, Any]) -> None:
    """Each component of ``ecpds up`` is a compose service of its name running the same
    module; every service of the ecpds image runs a real command with known variables."""
    services = compose["services"]
    for name, command in supervised().items():
        assert services[name]["command"] == command, name
    ours = {n: s for n, s in services.items() if s.get("image") == IMAGE}
    assert set(supervised()) < set(ours)  # plus the one-shot topics service
    for name, service in ours.items():
        assert resolves(service["command"]), (name, service["command"])
        assert not unknown_variables(service["environment"]), name
        assert service["environment"]["ECPDS_KAFKA_REPLICATION"] == "3"
        for server in service["environment"]["ECPDS_KAFKA_BOOTSTRAP"].split(","):
            assert server.split(":")[0] in services
    assert services["mover"]["deploy"]["replicas"] >= 2


def test_compose_has_three_kraft_brokers_and_the_services(compose: dict[str, Any]) -> None:
    """Three brokers, each broker and controller with its own id, one cluster id, all three
    voters, topics of 3 copies needing 2; PostgreSQL and mosquitto; every dependency, volume
    and mounted file exists."""
    services = compose["services"]
    brokers = {n: s["environment"] for n, s in services.items() if n.startswith("kafka-")}
    assert len(brokers) == 3
    assert {e["KAFKA_NODE_ID"] for e in brokers.values()} == {"1", "2", "3"}
    for name, env in brokers.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert cluster_id_ok(env["CLUSTER_ID"])
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert {v.split("@")[1].split(":")[0] for v in voters} == set(brokers)
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == (
            "3",
            "2",
        )
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
    assert len({e["CLUSTER_ID"] for e in brokers.values()}) == 1
    assert {"postgres", "mosquitto"} <= set(services)
    for name, service in services.items():
        assert set(service.get("depends_on", ())) <= set(services), name
        for volume in service.get("volumes", ()):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (CONTAINER / source).exists(), source
            else:
                assert source in compose["volumes"], source
    for name in HTTP:
        probe = " ".join(services[name]["healthcheck"]["test"])
        port, path = re.search(r"127\.0\.0\.1:(\d+)(/\S+?)'", probe).groups()  # type: ignore[union-attr]
        assert (int(port), path in routes_of(name)) == (HTTP[name], True)


# --- Kubernetes ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((CONTAINER / "k8s").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from doc["spec"]["template"]["spec"]["containers"]


def test_kubernetes_runs_every_component_as_a_deployment(manifests: list[dict[str, Any]]) -> None:
    """A Deployment per component with ``ecpds up``'s command, non-root, reading the settings
    ConfigMap (whose variables Settings knows) and the shared claim, both defined; the topics
    Job runs a real CLI verb."""
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in manifests}
    config = kinds[("ConfigMap", "ecpds-env")]["data"]
    assert not unknown_variables(config)
    assert config["ECPDS_KAFKA_REPLICATION"] == "3"
    for name, command in supervised().items():
        deployment = kinds[("Deployment", f"ecpds-{name}")]
        (container,) = containers(deployment)
        assert container["command"] == command, name
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in spec["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert all(("PersistentVolumeClaim", c) in kinds for c in claims)
    for doc in manifests:
        if doc["kind"] in ("Deployment", "Job") and doc["metadata"]["name"].startswith("ecpds-"):
            for container in containers(doc):
                assert container["image"] == IMAGE
                assert resolves(container["command"]), container["command"]
                for ref in container.get("envFrom", ()):
                    assert ("ConfigMap", ref["configMapRef"]["name"]) in kinds
                assert not unknown_variables({e["name"]: e for e in container.get("env", ())})
    assert kinds[("Deployment", "ecpds-mover")]["spec"]["replicas"] >= 2


def test_kubernetes_probes_ask_for_routes_the_components_serve(
    manifests: list[dict[str, Any]],
) -> None:
    """The monitor's and the API's readiness and liveness probes ask for a path of their own
    app on the port they listen on; the Kafka StatefulSet runs 3 KRaft nodes of one id."""
    kinds = {(d["kind"], d["metadata"]["name"]): d for d in manifests}
    for name, port in HTTP.items():
        (container,) = containers(kinds[("Deployment", f"ecpds-{name}")])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] in routes_of(name), (name, probe)
            assert ports[get["port"]] == port, (name, probe)
    kafka = kinds[("StatefulSet", "kafka")]
    assert kafka["spec"]["replicas"] == 3
    (broker,) = containers(kafka)
    env = {e["name"]: e["value"] for e in broker["env"]}
    assert cluster_id_ok(env["CLUSTER_ID"])
    assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
    assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
