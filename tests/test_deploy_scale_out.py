"""The deployments of several instances (README "Running several instances"): the systemd template
unit tools/systemd/factorysim@.service, deploy/compose/docker-compose.yaml and
deploy/kubernetes-scale-out/.

They are checked against the code, not against lists written here: the probes and health checks
against the routes of the service's HTTP server, the environment variables against what the config
loader and the service read, the stop timeouts against the service's own shutdown deadline, and
the template unit against factorysim.service (the same settings but for what is per instance).
Without Docker or a cluster, the Compose file and the manifests are checked against the field names
of the Compose specification and the Kubernetes API; systemd-analyze and kubectl (kustomize) are
used when this machine has them.  One instance is started as the template unit starts it (its
environment and environment files, its directories, the notify socket), against the test broker."""

from __future__ import annotations

import inspect
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

# the Kubernetes API's field names and the checks of a pod spec: one table for both examples
from test_deploy_manifests import (
    DEPLOYMENT_SPEC,
    DNS_LABEL,
    METADATA,
    SERVICE_PORT,
    SERVICE_SPEC,
    TOP,
    TOP_DEFAULT,
    _image_environment,
    _keys,
    _pod_spec,
)

from simulator.adapters.health_server import HealthServer
from simulator.adapters.http import HTTP_PORT, HttpServer
from simulator.config.loader import CONFIG_PATH_VARIABLES, ENV_OVERRIDES, GENERIC_PREFIX, load
from simulator.config.schema import Config
from simulator.net import free_port
from simulator.programs import service as service_module
from simulator.programs.service import Service

ROOT = Path(__file__).resolve().parents[1]
SINGLE = ROOT / "tools" / "systemd" / "factorysim.service"
TEMPLATE = ROOT / "tools" / "systemd" / "factorysim@.service"
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yaml"
KUBERNETES = ROOT / "deploy" / "kubernetes-scale-out"
INSTANCE_ID = "FACTORYSIM_INSTANCE_ID"
SCALE_OUT = "FACTORYSIM__KAFKA__SCALE_OUT__ENABLED"
REPLICAS = 3
SOURCES = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "simulator").rglob("*.py")))


# --- what the code says -----------------------------------------------------------------------------
def _hard_stop_s() -> float:
    """How long after SIGTERM the service ends at the latest, whatever hangs: its shutdown budget
    (the command line's default) plus the grace after it."""
    budget = inspect.signature(Service.__init__).parameters["shutdown_timeout_s"].default
    return float(budget) + service_module.STOP_GRACE_S


def _health_routes() -> dict[str, Any]:
    """GET path -> the handler the service's HTTP server routes it to (HttpServer extends the
    health endpoint, so these routes are the service's)."""
    assert issubclass(HttpServer, HealthServer)
    server = HealthServer(None, CollectorRegistry(), "127.0.0.1", 0, HTTP_PORT)  # routing needs no view
    return {route.resource.canonical: route.handler.__func__ for route in server.app.router.routes()
            if route.method == "GET" and route.resource is not None}


def _assert_liveness(path: str, what: str) -> None:
    routes = _health_routes()
    assert routes.get(path) is HealthServer.live, f"{what}: {path} is not the liveness route; the service serves " \
        f"{sorted(p for p, h in routes.items() if h is HealthServer.live)}"


def _assert_readiness(path: str, what: str) -> None:
    routes = _health_routes()
    assert routes.get(path) is HealthServer.ready, f"{what}: {path} is not the readiness route; the service " \
        f"serves {sorted(p for p, h in routes.items() if h is HealthServer.ready)}"


def _read_by_the_service(name: str) -> bool:
    """Whether the config loader or the service reads the environment variable ``name``."""
    return name in ENV_OVERRIDES or name in CONFIG_PATH_VARIABLES or f'"{name}"' in SOURCES


def _assert_variables_are_read(environment: dict[str, str], config: Config, what: str) -> None:
    """Every variable a deployment sets is one the code reads; a FACTORYSIM__SECTION__KEY one lands
    in the config it names.  (FACTORYSIM_INSTANCE_ID: see its own test.)"""
    for name, value in environment.items():
        if name == INSTANCE_ID:
            continue
        if name.startswith(GENERIC_PREFIX):
            node: Any = config
            for part in name[len(GENERIC_PREFIX):].lower().split("__"):
                node = getattr(node, part)
            assert node == yaml.safe_load(value), f"{what}: {name}={value} does not reach the config ({node!r})"
        else:
            assert _read_by_the_service(name), f"{what}: {name} is read neither by the config loader nor the service"


def _seconds(text: str | int | float) -> float:
    """A duration as systemd ("45", "45s", "1min 30s") and Compose ("45s", "1m30s") write it."""
    if isinstance(text, int | float):
        return float(text)
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    assert parts and "".join(n + u for n, u in parts) == re.sub(r"\s", "", text), f"not a duration: {text!r}"
    return sum(float(n) * units[u or "s"] for n, u in parts)


def _plants(config_path: Path, environment: dict[str, str]) -> tuple[Config, int]:
    config = load(config_path, environ=environment)
    return config, len(config.locations)


# --- the systemd units --------------------------------------------------------------------------------
def _directives(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Each section's directives in their order (a key may repeat, as Environment= does)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: not a directive: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def _values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def _one(unit: dict[str, list[tuple[str, str]]], key: str, section: str = "Service") -> str:
    (value,) = _values(unit, section, key)
    return value


def _environment(unit: dict[str, list[tuple[str, str]]]) -> dict[str, str]:
    """Environment= assignments (several per line allowed, quoted as systemd quotes them)."""
    return dict(item.split("=", 1) for line in _values(unit, "Service", "Environment") for item in shlex.split(line))


def _expand(value: str, instance: str, host: str) -> str:
    """systemd's specifiers the template uses: %i (the instance), %H (the host name), %%."""
    def one(match: re.Match[str]) -> str:
        known = {"i": instance, "H": host, "%": "%"}
        assert match[1] in known, f"specifier %{match[1]} in {value!r}: expand it here too"
        return known[match[1]]
    return re.sub(r"%(.)", one, value)


@dataclass(frozen=True)
class Instance:
    """What the template unit gives instance N on host H (paths as on the machine)."""

    environment: dict[str, str]
    environment_files: list[tuple[str, bool]]  # (path, required)
    state_directory: str  # under /var/lib
    runtime_directory: str  # under /run
    exec_start: list[str]
    stop_timeout_s: float


def _instance(number: str, host: str, unit_path: Path = TEMPLATE) -> Instance:
    unit = _directives(unit_path)
    return Instance(
        environment={k: _expand(v, number, host) for k, v in _environment(unit).items()},
        environment_files=[(_expand(f.removeprefix("-"), number, host), not f.startswith("-"))
                           for f in _values(unit, "Service", "EnvironmentFile")],
        state_directory="/var/lib/" + _expand(_one(unit, "StateDirectory"), number, host),
        runtime_directory="/run/" + _expand(_one(unit, "RuntimeDirectory"), number, host),
        exec_start=shlex.split(_expand(_one(unit, "ExecStart"), number, host)),
        stop_timeout_s=_seconds(_one(unit, "TimeoutStopSec")))


PER_INSTANCE = {"Environment", "EnvironmentFile", "StateDirectory", "RuntimeDirectory", "TimeoutStopSec"}


def test_the_template_is_the_single_unit_but_for_what_is_per_instance() -> None:
    """Hardening, notify, watchdog, restart policy, user, command: every directive of
    factorysim.service is in the template with the same value, and the template has no other
    (so the two cannot drift apart); the per-instance ones extend the single unit's."""
    single, template = _directives(SINGLE), _directives(TEMPLATE)
    assert single.keys() == template.keys()
    for section in single:
        keys = {k for k, _ in single[section]} | {k for k, _ in template[section]}
        for key in sorted(keys - PER_INSTANCE - {"Description"}):
            assert _values(single, section, key) == _values(template, section, key), \
                f"[{section}] {key}: factorysim.service {_values(single, section, key)}, " \
                f"factorysim@.service {_values(template, section, key)}"
    assert "%i" in _one(template, "Description", "Unit")
    for hardening in ("NoNewPrivileges", "ProtectSystem", "CapabilityBoundingSet", "SystemCallArchitectures"):
        assert _values(template, "Service", hardening), f"{hardening} is gone from both units"
    assert _one(template, "Type") == "notify" and _seconds(_one(template, "WatchdogSec")) > 0

    single_env, template_env = _environment(single), _environment(template)
    assert template_env.keys() == single_env.keys() | {INSTANCE_ID, SCALE_OUT}
    assert template_env[SCALE_OUT] == "true", "the instances share the plants"
    assert template_env["CONFIG_PATH"] == single_env["CONFIG_PATH"], "one config for every instance"
    assert template_env[INSTANCE_ID] == "%H-%i"
    assert template_env["HOME"] == single_env["HOME"] + "/%i"
    assert _values(template, "Service", "EnvironmentFile") == [
        *_values(single, "Service", "EnvironmentFile"), "/etc/factorysim/instance-%i.env"]
    assert _one(template, "StateDirectory") == _one(single, "StateDirectory") + "/%i"
    assert _one(template, "RuntimeDirectory") == _one(single, "RuntimeDirectory") + "/%i"


def test_each_instance_has_its_own_id_port_file_and_directories() -> None:
    first, second = _instance("1", "vm"), _instance("2", "vm")
    assert (first.environment[INSTANCE_ID], second.environment[INSTANCE_ID]) == ("vm-1", "vm-2")
    assert first.environment["CONFIG_PATH"] == second.environment["CONFIG_PATH"]
    # the port comes from the instance's own file, which must exist (no "-"): a port set in the unit
    # would be the same for every instance, and the second one would not start
    assert "HEALTH_CHECK_PORT" not in first.environment
    own = sorted(set(first.environment_files) - set(second.environment_files))
    assert own == [("/etc/factorysim/instance-1.env", True)]
    shared = set(first.environment_files) & set(second.environment_files)
    assert shared == {("/etc/factorysim/factorysim.env", False)}
    for one, other in ((first, second), (second, first)):
        for mine, theirs in ((one.state_directory, other.state_directory),
                             (one.runtime_directory, other.runtime_directory)):
            assert not Path(mine).is_relative_to(theirs), f"{mine} is inside {theirs}"
    # ProtectSystem=strict: the home must be in the state directory, the one place it may write
    assert Path(first.environment["HOME"]).is_relative_to(first.state_directory)
    single = _instance("", "vm", SINGLE)
    assert first.state_directory != single.state_directory and first.runtime_directory != single.runtime_directory


def test_systemd_waits_for_the_orderly_hand_over_before_it_kills() -> None:
    """TimeoutStopSec beyond the service's own deadline: systemd never kills an orderly stop (the
    last snapshot, the commits that hand the plants over); the service ends itself before."""
    assert _instance("1", "vm").stop_timeout_s > _hard_stop_s() + 5
    assert _one(_directives(TEMPLATE), "KillSignal") == "SIGTERM"


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed on this machine: the unit files are not verified by systemd")
    return found


def _installable_copy(tmp_path: Path, unit: Path, name: str) -> Path:
    """The unit as ``name`` with ExecStart's program replaced by one that exists here (verify
    checks that it does); everything else as it is."""
    text = unit.read_text(encoding="utf-8")
    program = shlex.split(_one(_directives(unit), "ExecStart"))[0]
    copy = tmp_path / name
    copy.write_text(text.replace(f"ExecStart={program}", f"ExecStart={sys.executable}"), encoding="utf-8")
    return copy


def test_systemd_analyze_verifies_an_instance_of_the_template(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    unit = _installable_copy(tmp_path, TEMPLATE, "factorysim@1.service")
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr  # an unknown key is only a warning


def test_systemd_rates_the_template_as_hardened_as_the_single_unit(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    ratings = []
    for unit, name in ((SINGLE, "factorysim.service"), (TEMPLATE, "factorysim@1.service")):
        done = subprocess.run([analyze, "security", "--offline=yes", "--json=short",
                               str(_installable_copy(tmp_path, unit, name))],
                              capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0 and "offline" in done.stderr:
            pytest.skip(f"this systemd-analyze cannot rate unit files offline: {done.stderr.strip()}")
        assert done.returncode == 0, done.stderr
        ratings.append({c["name"]: (c["set"], c["exposure"]) for c in yaml.safe_load(done.stdout)})
    single, template = ratings
    assert single == template, {k: (single.get(k), template.get(k)) for k in single.keys() | template.keys()
                                if single.get(k) != template.get(k)}


# --- one instance as the template unit starts it --------------------------------------------------------
def _on(root: Path, path: str) -> Path:
    """A path of the machine, under ``root`` for the test."""
    return root / path.lstrip("/")


def _systemd_environment(instance: Instance, root: Path, notify_socket: Path) -> dict[str, str]:
    """The environment systemd gives the instance: its own variables, Environment=, then the
    environment files (which win), with the machine's paths under ``root``."""
    mapped = {k: str(_on(root, v)) if v.startswith("/") else v for k, v in instance.environment.items()}
    for path, required in instance.environment_files:
        file = _on(root, path)
        if not file.exists():
            assert not required, f"{path} is required"
            continue
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, _, value = line.partition("=")
                mapped[key.strip()] = value.strip()
    for directory in (instance.state_directory, instance.runtime_directory):
        _on(root, directory).mkdir(parents=True, exist_ok=True)
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(ROOT), "NOTIFY_SOCKET": str(notify_socket),
            "WATCHDOG_USEC": str(int(_seconds(_one(_directives(TEMPLATE), "WatchdogSec")) * 1_000_000)),
            "STATE_DIRECTORY": str(_on(root, instance.state_directory)),
            "RUNTIME_DIRECTORY": str(_on(root, instance.runtime_directory)), **mapped}


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - a loopback http URL
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _wait_until(condition: Any, timeout_s: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the instance ended ({process.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(0.1)


def _notifications(sock: socket.socket) -> Iterator[bytes]:
    while True:
        try:
            yield sock.recv(4096)
        except BlockingIOError:
            return


def test_an_instance_started_as_the_template_unit_starts_it_serves_the_probes(
        kafka_bootstrap: str, unique: str, tmp_path: Path) -> None:
    """The instance's port comes from its environment file; it reports READY=1, answers the
    Kubernetes probes and the Compose health check on it, keeps its command token in its own
    runtime directory, and stops in order on SIGTERM well within TimeoutStopSec."""
    root = tmp_path / "machine"
    instance = _instance("1", socket.gethostname())
    port = free_port("0.0.0.0")  # noqa: S104 - the config's http.host
    etc = _on(root, "/etc/factorysim")
    etc.mkdir(parents=True)
    shutil.copyfile(ROOT / "config.yaml", etc / "config.yaml")
    topics = {key: f"{unique}.{key}" for key in ("orders", "telemetry_prefix", "events", "dead_letter", "journal",
                                                 "snapshots")}
    (etc / "factorysim.env").write_text(  # the shared file, as README's commands write it (plus unique topics)
        f"KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap}\n"
        + "".join(f"FACTORYSIM__KAFKA__TOPICS__{k.upper()}={v}\n" for k, v in topics.items())
        + f"FACTORYSIM__KAFKA__CONSUMER__GROUP_ID={unique}\n", encoding="utf-8")
    (etc / "instance-1.env").write_text(f"HEALTH_CHECK_PORT={port}\n", encoding="utf-8")
    notify = tmp_path / "notify.sock"
    environment = _systemd_environment(instance, root, notify)
    program, *args = instance.exec_start
    assert Path(program).name == "factorysim" and args == ["run"], instance.exec_start
    log = tmp_path / "instance.log"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, log.open("wb") as output:
        sock.bind(str(notify))
        sock.setblocking(False)
        process = subprocess.Popen([sys.executable, "-m", "simulator", *args], env=environment,
                                   cwd=tmp_path, stdout=output, stderr=subprocess.STDOUT)
        try:
            seen: list[bytes] = []

            def said(prefix: bytes) -> bool:
                seen.extend(_notifications(sock))
                return any(m.startswith(prefix) or b"\n" + prefix in m for m in seen)

            _wait_until(lambda: said(b"READY=1"), 90, "READY=1", process)
            base = f"http://127.0.0.1:{port}"
            container = _kubernetes_container()
            assert _get(base + container["livenessProbe"]["httpGet"]["path"]) == 200
            _wait_until(lambda: _get(base + container["readinessProbe"]["httpGet"]["path"]) == 200, 60,
                        "readiness", process)
            check = _compose_health_check(port)
            assert check.returncode == 0, check.stderr
            assert (_on(root, instance.runtime_directory) / f"http-token-{port}").exists(), \
                "the generated command token is in the instance's own runtime directory"
            metrics = urllib.request.urlopen(base + "/metrics", timeout=3).read().decode()  # noqa: S310
            health = orjson.loads(urllib.request.urlopen(base + "/health", timeout=3).read())  # noqa: S310
            assert health["instance"]["id"] == instance.environment[INSTANCE_ID]
            assert health["instance"]["scale_out"] is True
            assert f'instance="{instance.environment[INSTANCE_ID]}"' in metrics, "the instance id is in its metrics"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=instance.stop_timeout_s)
            assert code == 0, log.read_text(encoding="utf-8", errors="replace")[-3000:]
            assert time.monotonic() - started < _hard_stop_s()
            assert said(b"STOPPING=1")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    closed = _compose_health_check(port)
    assert closed.returncode != 0, "the health check fails when nothing answers"


# --- Docker Compose ----------------------------------------------------------------------------------
# the Compose specification's field names, for the parts this file uses
COMPOSE_TOP = {"configs", "include", "models", "name", "networks", "secrets", "services", "version", "volumes"}
COMPOSE_SERVICE = {
    "annotations", "attach", "blkio_config", "build", "cap_add", "cap_drop", "cgroup", "cgroup_parent", "command",
    "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period",
    "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec", "depends_on", "deploy", "develop",
    "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname", "entrypoint", "env_file",
    "environment", "expose", "extends", "external_links", "extra_hosts", "gpus", "group_add", "healthcheck",
    "hostname", "image", "init", "ipc", "isolation", "label_file", "labels", "links", "logging", "mac_address",
    "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "models", "network_mode", "networks",
    "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start", "pre_start",
    "pre_stop", "privileged", "profiles", "provider", "pull_policy", "pull_refresh_after", "read_only", "restart",
    "runtime", "scale", "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "stop_signal",
    "storage_opt", "sysctls", "tmpfs", "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes",
    "volumes_from", "working_dir"}
COMPOSE_HEALTHCHECK = {"disable", "interval", "retries", "start_interval", "start_period", "test", "timeout"}
COMPOSE_DEPLOY = {"endpoint_mode", "labels", "mode", "placement", "replicas", "resources", "restart_policy",
                  "rollback_config", "update_config"}
COMPOSE_DEPENDS_ON = {"condition", "required", "restart"}
COMPOSE_CONFIG = {"content", "environment", "external", "file", "labels", "name", "template_driver"}
COMPOSE_SERVICE_CONFIG = {"gid", "mode", "source", "target", "uid"}


def _compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _compose_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    assert all(isinstance(v, str) for v in environment.values()), "quote values: Compose wants strings"
    return dict(environment)


def _compose_health_check(port: int) -> subprocess.CompletedProcess[str]:
    """The factorysim service's health check command, run here against ``port`` (the container's
    HEALTH_CHECK_PORT); its ``python`` is this interpreter."""
    service = _compose()["services"]["factorysim"]
    kind, *command = service["healthcheck"]["test"]
    assert kind == "CMD" and command[0] == "python", service["healthcheck"]["test"]
    environment = {**_compose_environment(service), "HEALTH_CHECK_PORT": str(port), "PATH": os.environ["PATH"]}
    return subprocess.run([sys.executable, *command[1:]], env=environment, capture_output=True, text=True,
                          check=False, timeout=30)


def _listeners(text: str) -> dict[str, tuple[str, int]]:
    """Kafka's NAME://host:port,... -> {NAME: (host, port)}."""
    found = {}
    for item in text.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port))
    return found


def test_the_compose_file_uses_only_fields_of_the_compose_specification() -> None:
    compose = _compose()
    _keys("compose file", compose, COMPOSE_TOP)
    for name, service in compose["services"].items():
        _keys(f"service {name}", service, COMPOSE_SERVICE)
        _keys(f"service {name} healthcheck", service.get("healthcheck", {}), COMPOSE_HEALTHCHECK)
        _keys(f"service {name} deploy", service.get("deploy", {}), COMPOSE_DEPLOY)
        for other, condition in service.get("depends_on", {}).items():
            assert other in compose["services"], f"{name} depends on {other}, which is no service"
            _keys(f"service {name} depends_on {other}", condition, COMPOSE_DEPENDS_ON)
        for mount in service.get("configs", []):
            _keys(f"service {name} config", mount, COMPOSE_SERVICE_CONFIG)
            assert mount["source"] in compose.get("configs", {}), f"{name}: no config {mount['source']}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in compose.get("volumes", {}) or source.startswith((".", "/")), f"{name}: volume {source}"
        for duration in ("interval", "timeout", "start_period"):
            if duration in service.get("healthcheck", {}):
                _seconds(service["healthcheck"][duration])
    for name, config in compose.get("configs", {}).items():
        _keys(f"config {name}", config, COMPOSE_CONFIG)
        assert (COMPOSE.parent / config["file"]).is_file(), f"config {name}: {config['file']} does not exist"


def test_the_compose_replicas_share_one_config_and_have_ids_and_ports_of_their_own() -> None:
    compose = _compose()
    service = compose["services"]["factorysim"]
    assert service["deploy"]["replicas"] == REPLICAS
    # Docker gives each container its own host name, the instance id's default; a container name,
    # a host name or an instance id set here would be the same for every replica
    for same_for_all in ("container_name", "hostname"):
        assert same_for_all not in service, f"{same_for_all} would be the same for every replica"
    assert INSTANCE_ID not in _compose_environment(service)
    # a fixed host port cannot be published by three containers: each gets a free one
    assert all(":" not in str(port) for port in service["ports"]), service["ports"]
    args = service["command"]
    assert args[0] == "run"
    (mount,) = [m for m in service["configs"] if m["target"] == args[args.index("--config") + 1]]
    config_file = COMPOSE.parent / compose["configs"][mount["source"]]["file"]
    assert config_file.resolve() == (ROOT / "config.yaml").resolve(), "the reference plant, as the README says"
    config, plants = _plants(config_file, _compose_environment(service))
    assert plants >= REPLICAS, f"{REPLICAS} replicas for {plants} plants: the ones beyond would idle"
    assert [str(p) for p in service["ports"]] == [str(config.http.port)]
    _assert_variables_are_read(_compose_environment(service), config, "compose")


def test_the_compose_replicas_reach_the_compose_kafka_and_wait_for_it() -> None:
    compose = _compose()
    service, kafka = compose["services"]["factorysim"], compose["services"]["kafka"]
    config, _ = _plants(ROOT / "config.yaml", _compose_environment(service))
    assert config.kafka.bootstrap_servers != "embedded", "the embedded broker cannot be shared"
    host, _, port = config.kafka.bootstrap_servers.rpartition(":")
    environment = _compose_environment(kafka)
    advertised = _listeners(environment["KAFKA_ADVERTISED_LISTENERS"])
    listening = _listeners(environment["KAFKA_LISTENERS"])
    protocols = dict(item.split(":") for item in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    (listener,) = [name for name, address in advertised.items() if address == (host, int(port))]
    assert host in {kafka.get("hostname"), "kafka"} and listening[listener][1] == int(port)
    assert protocols[listener] == config.kafka.security.protocol
    assert set(listening) <= set(protocols) and set(advertised) <= set(listening)
    voters = environment["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters == f"{environment['KAFKA_NODE_ID']}@{kafka['hostname']}:{listening['CONTROLLER'][1]}"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "factorysim creates topics with its partitions"
    assert any(v.split(":")[1] == "/var/lib/kafka/data" == environment["KAFKA_LOG_DIRS"] for v in kafka["volumes"]), \
        "the run (journal, snapshots) outlives the broker's container"
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy" and "healthcheck" in kafka


def test_the_compose_health_check_and_stop_grace_fit_the_service() -> None:
    service = _compose()["services"]["factorysim"]
    kind, _, _, code = service["healthcheck"]["test"]
    assert kind == "CMD"
    (path,) = re.findall(r"http://127\.0\.0\.1:%s(/[^'\"]*)", code)
    _assert_liveness(path, "compose health check")
    assert "HEALTH_CHECK_PORT" in code and _read_by_the_service("HEALTH_CHECK_PORT")
    assert _seconds(service["stop_grace_period"]) > _hard_stop_s() + 5
    assert service.get("stop_signal", "SIGTERM") == "SIGTERM"


# --- Kubernetes --------------------------------------------------------------------------------------
PDB_SPEC = {"maxUnavailable", "minAvailable", "selector", "unhealthyPodEvictionPolicy"}
TOPOLOGY_SPREAD = {"labelSelector", "matchLabelKeys", "maxSkew", "minDomains", "nodeAffinityPolicy",
                   "nodeTaintsPolicy", "topologyKey", "whenUnsatisfiable"}
ROLLING_UPDATE = {"maxSurge", "maxUnavailable"}
KINDS = {("v1", "Service"), ("apps/v1", "Deployment"), ("policy/v1", "PodDisruptionBudget"),
         ("kustomize.config.k8s.io/v1beta1", "Kustomization")}
KUSTOMIZATION = TOP["Kustomization"] | {"configMapGenerator"}
CONFIGMAP_GENERATOR = {"name", "namespace", "behavior", "files", "literals", "envs", "options"}


def _kustomization() -> dict[str, Any]:
    document = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _generator_files(generator: dict[str, Any]) -> dict[str, str]:
    """A configMapGenerator's files: ConfigMap key -> file (``key=file`` or ``file``)."""
    return {(entry.split("=", 1)[0] if "=" in entry else Path(entry).name): entry.split("=", 1)[-1]
            for entry in generator.get("files", [])}


def _generated_files() -> set[str]:
    return {file for generator in _kustomization().get("configMapGenerator", [])
            for file in _generator_files(generator).values()}


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    """Every object of the folder (not the files the kustomization turns into ConfigMaps)."""
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name in _generated_files():
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict), f"{path.name}: a document that is not a mapping"
            found.append((path, document))
    return found


def _object(kind: str) -> dict[str, Any]:
    (found,) = [d for _, d in _manifests() if d["kind"] == kind]
    return found


def _kubernetes_container() -> dict[str, Any]:
    (container,) = _object("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _kubernetes_environment() -> tuple[dict[str, str], dict[str, Any]]:
    """The container's plain variables (with the image's ENV) and those taken from the pod (valueFrom)."""
    container = _kubernetes_container()
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    taken = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
    return {**_image_environment(), **plain}, taken


def test_every_scale_out_manifest_is_a_well_formed_kubernetes_object() -> None:
    namespace = _kustomization()["namespace"]
    for path, document in _manifests():
        assert (document.get("apiVersion"), document.get("kind")) in KINDS, f"{path.name}: {document.get('kind')}"
        kind = document["kind"]
        if kind == "Kustomization":
            _keys(path.name, document, KUSTOMIZATION)
            for generator in document.get("configMapGenerator", []):
                _keys(f"{path.name} configMapGenerator", generator, CONFIGMAP_GENERATOR)
            continue
        _keys(f"{path.name} {kind}", document, TOP.get(kind, TOP_DEFAULT))
        metadata = document["metadata"]
        _keys(f"{path.name} metadata", metadata, METADATA)
        assert DNS_LABEL.match(metadata["name"]) and len(metadata["name"]) <= 63, metadata["name"]
        assert metadata["namespace"] == namespace, f"{path.name}: the kustomization's namespace"
        spec = document["spec"]
        if kind == "Deployment":
            _keys(f"{path.name} spec", spec, DEPLOYMENT_SPEC)
            _keys(f"{path.name} rollingUpdate", spec["strategy"].get("rollingUpdate", {}), ROLLING_UPDATE)
            _pod_spec(path, spec["template"]["spec"])
            for constraint in spec["template"]["spec"].get("topologySpreadConstraints", []):
                _keys(f"{path.name} topologySpreadConstraint", constraint, TOPOLOGY_SPREAD)
        elif kind == "Service":
            _keys(f"{path.name} spec", spec, SERVICE_SPEC)
            for port in spec["ports"]:
                _keys(f"{path.name} port", port, SERVICE_PORT)
        elif kind == "PodDisruptionBudget":
            _keys(f"{path.name} spec", spec, PDB_SPEC)
            assert ("maxUnavailable" in spec) != ("minAvailable" in spec), "one of maxUnavailable, minAvailable"


def test_the_kustomization_applies_the_folder_and_every_selector_finds_the_pods() -> None:
    kustomization = _kustomization()
    assert sorted(kustomization["resources"]) == sorted(p.name for p, d in _manifests() if d["kind"] != "Kustomization")
    assert all((KUBERNETES / f).is_file() for f in _generated_files())
    deployment = _object("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {"Deployment": deployment["spec"]["selector"]["matchLabels"],
                 "Service": _object("Service")["spec"]["selector"],
                 "PodDisruptionBudget": _object("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]}
    for constraint in deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        selectors["topologySpreadConstraint"] = constraint["labelSelector"]["matchLabels"]
    for what, selector in selectors.items():
        assert selector and selector.items() <= labels.items(), f"the {what}'s selector does not match the pods"
    generated = {g["name"] for g in kustomization["configMapGenerator"]}
    pod = deployment["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        assert "persistentVolumeClaim" not in volume, "no volume: a plant's state is in Kafka"
        if "configMap" in volume:
            assert volume["configMap"]["name"] in generated, f"no ConfigMap {volume['configMap']['name']}"
    port_names = {p["name"] for p in _kubernetes_container()["ports"]}
    assert all(p["targetPort"] in port_names for p in _object("Service")["spec"]["ports"])


def test_the_pods_share_the_plants_of_one_config_on_an_external_kafka() -> None:
    deployment = _object("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == REPLICAS
    assert spec["strategy"]["type"] == "RollingUpdate", "plants move between pods: no need to stop them all"
    assert _object("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    container = _kubernetes_container()
    args = container["args"]
    assert args[0] == "run"
    config_path = args[args.index("--config") + 1]
    (mount,) = [m for m in container["volumeMounts"] if config_path.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in spec["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    (generator,) = [g for g in _kustomization()["configMapGenerator"] if g["name"] == volume["configMap"]["name"]]
    file = _generator_files(generator)[config_path[len(mount["mountPath"]) + 1:]]
    environment, taken = _kubernetes_environment()
    config, plants = _plants(KUBERNETES / file, environment)
    assert plants >= REPLICAS, f"{REPLICAS} replicas for {plants} plants: the ones beyond would idle"
    assert config.kafka.bootstrap_servers == environment["KAFKA_BOOTSTRAP_SERVERS"] != "embedded"
    _assert_variables_are_read({k: v for k, v in environment.items() if k in {e["name"] for e in container["env"]}},
                               config, "deployment")
    assert taken[INSTANCE_ID] == {"fieldRef": {"fieldPath": "metadata.name"}}, "each pod's name is its instance id"
    assert all(_read_by_the_service(name) for name in taken if name != INSTANCE_ID)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == config.http.port
    _assert_liveness(container["livenessProbe"]["httpGet"]["path"], "livenessProbe")
    _assert_readiness(container["readinessProbe"]["httpGet"]["path"], "readinessProbe")
    assert config.http.host == "0.0.0.0", "reachable by the kubelet's probes"  # noqa: S104 - what is checked
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > _hard_stop_s() + 5
    # a read-only root file system: the home (the generated command token) and /tmp are volumes
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert environment["HOME"] in writable and "/tmp" in writable


def test_the_instance_id_variable_is_one_the_service_reads() -> None:
    """Every deployment names its instances through FACTORYSIM_INSTANCE_ID (the template unit: host
    and instance; Kubernetes: the pod's name; Compose: the host name default, see above)."""
    assert _environment(_directives(TEMPLATE))[INSTANCE_ID] == "%H-%i"
    assert INSTANCE_ID in _kubernetes_environment()[1]
    assert _read_by_the_service(INSTANCE_ID)


def test_kustomize_renders_the_manifests_with_the_generated_config() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed on this machine: the kustomization is not rendered")
    done = subprocess.run([kubectl, "kustomize", str(KUBERNETES)], capture_output=True, text=True, check=False,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = list(yaml.safe_load_all(done.stdout))
    namespace = _kustomization()["namespace"]
    assert {(d["kind"], d["metadata"]["namespace"]) for d in rendered} == {
        ("ConfigMap", namespace), ("Deployment", namespace), ("Service", namespace),
        ("PodDisruptionBudget", namespace)}
    (configmap,) = [d for d in rendered if d["kind"] == "ConfigMap"]
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment"]
    assert re.fullmatch(r"factorysim-config-[a-z0-9]{10}", configmap["metadata"]["name"]), \
        "a changed config is a new ConfigMap, and the pods roll over to it"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    (file,) = _generated_files()
    assert configmap["data"] == {file: (KUBERNETES / file).read_text(encoding="utf-8")}


# --- the README ----------------------------------------------------------------------------------------
def test_the_readme_commands_use_these_files_and_names() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Running several instances\n", 1)[1].split("\n### ", 1)[0]
    lines = section.splitlines()
    # systemd: the files the template reads, written as it reads them
    template = _directives(TEMPLATE)
    shared, own = (f.removeprefix("-") for f in _values(template, "Service", "EnvironmentFile"))
    (written,) = [line for line in lines if f"tee {own.replace('%i', '$i')}" in line]
    assert "for i in" in written and "HEALTH_CHECK_PORT=" in written
    assert any(f"tee {shared}" in line and "KAFKA_BOOTSTRAP_SERVERS=" in line for line in lines)
    assert f"cp {TEMPLATE.relative_to(ROOT)} /etc/systemd/system/" in section
    assert "enable --now factorysim@1 factorysim@2 factorysim@3" in section
    # Compose: the file, and the host listener lot-sender uses
    assert all(f"-f {COMPOSE.relative_to(ROOT)} " in line for line in lines if "docker compose" in line)
    kafka = _compose()["services"]["kafka"]
    host_listener = _listeners(_compose_environment(kafka)["KAFKA_ADVERTISED_LISTENERS"])["HOST"]
    assert f"lot-sender --broker {host_listener[0]}:{host_listener[1]} " in section
    assert f"{host_listener[1]}:{host_listener[1]}" in kafka["ports"]
    # Kubernetes: the folder and its namespace
    namespace = _kustomization()["namespace"]
    assert f"kubectl create namespace {namespace}" in section
    assert f"kubectl apply -k {KUBERNETES.relative_to(ROOT)}" in section
    assert all(f"-n {namespace} " in line for line in lines if line.startswith("kubectl -n"))
    assert f"kubectl -n {namespace} scale deployment/{_object('Deployment')['metadata']['name']}" in section
