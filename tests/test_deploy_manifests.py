"""The Kubernetes manifests of deploy/kubernetes/ (README "Azure IoT Operations"): every document is a
well-formed Kubernetes object (the fields used exist in the API, names and references resolve), and
the manifests agree with the code — the ConfigMap is the SpaceShip profile, which loads with the
Deployment's environment into exactly the AIO target, reading the projected token and the CA
bundle where the pod mounts them, with the probes on the port the service listens on.

Without a cluster or kubectl, the structure is checked against the Kubernetes API's field names
for the kinds used here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.adapters.mqtt_options import credentials, tls_context
from simulator.config.loader import load
from simulator.config.schema import Config
from simulator.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
NAMESPACE = "azure-iot-operations"
AIO_HOST, AIO_PORT, AIO_AUDIENCE = "aio-broker.azure-iot-operations", 18883, "aio-internal"
TRUST_BUNDLE = "azure-iot-operations-aio-ca-trust-bundle"

# --- the Kubernetes API's field names, for the kinds and parts these manifests use -----------------
KINDS = {("v1", "ServiceAccount"), ("v1", "ConfigMap"), ("v1", "PersistentVolumeClaim"), ("v1", "Service"),
         ("v1", "Pod"), ("apps/v1", "Deployment"), ("kustomize.config.k8s.io/v1beta1", "Kustomization")}
TOP = {"ServiceAccount": {"apiVersion", "kind", "metadata", "automountServiceAccountToken", "imagePullSecrets",
                          "secrets"},
       "ConfigMap": {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"},
       "Kustomization": {"apiVersion", "kind", "namespace", "resources", "images", "labels", "commonLabels",
                         "commonAnnotations", "configMapGenerator", "secretGenerator", "patches", "replicas"}}
TOP_DEFAULT = {"apiVersion", "kind", "metadata", "spec"}
METADATA = {"name", "namespace", "labels", "annotations"}
DEPLOYMENT_SPEC = {"minReadySeconds", "paused", "progressDeadlineSeconds", "replicas", "revisionHistoryLimit",
                   "selector", "strategy", "template"}
POD_SPEC = {"activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig",
            "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork",
            "hostPID", "hostUsers", "hostname", "imagePullSecrets", "initContainers", "nodeName", "nodeSelector",
            "os", "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates",
            "resourceClaims", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates",
            "securityContext", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace", "subdomain",
            "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes"}
POD_SECURITY = {"appArmorProfile", "fsGroup", "fsGroupChangePolicy", "runAsGroup", "runAsNonRoot", "runAsUser",
                "seLinuxOptions", "seccompProfile", "supplementalGroups", "supplementalGroupsPolicy", "sysctls",
                "windowsOptions"}
CONTAINER = {"args", "command", "env", "envFrom", "image", "imagePullPolicy", "lifecycle", "livenessProbe", "name",
             "ports", "readinessProbe", "resizePolicy", "resources", "restartPolicy", "securityContext",
             "startupProbe", "stdin", "stdinOnce", "terminationMessagePath", "terminationMessagePolicy", "tty",
             "volumeDevices", "volumeMounts", "workingDir"}
CONTAINER_SECURITY = {"allowPrivilegeEscalation", "appArmorProfile", "capabilities", "privileged", "procMount",
                      "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser", "seLinuxOptions",
                      "seccompProfile", "windowsOptions"}
PROBE = {"exec", "failureThreshold", "grpc", "httpGet", "initialDelaySeconds", "periodSeconds", "successThreshold",
         "tcpSocket", "terminationGracePeriodSeconds", "timeoutSeconds"}
HTTP_GET = {"host", "httpHeaders", "path", "port", "scheme"}
VOLUME_SOURCES = {"configMap": {"defaultMode", "items", "name", "optional"},
                  "emptyDir": {"medium", "sizeLimit"},
                  "persistentVolumeClaim": {"claimName", "readOnly"},
                  "projected": {"defaultMode", "sources"}}
PROJECTION = {"serviceAccountToken": {"audience", "expirationSeconds", "path"},
              "configMap": {"items", "name", "optional"}}
VOLUME_MOUNT = {"mountPath", "mountPropagation", "name", "readOnly", "recursiveReadOnly", "subPath", "subPathExpr"}
SERVICE_SPEC = {"allocateLoadBalancerNodePorts", "clusterIP", "clusterIPs", "externalIPs", "externalName",
                "externalTrafficPolicy", "healthCheckNodePort", "internalTrafficPolicy", "ipFamilies",
                "ipFamilyPolicy", "loadBalancerClass", "loadBalancerIP", "loadBalancerSourceRanges", "ports",
                "publishNotReadyAddresses", "selector", "sessionAffinity", "sessionAffinityConfig",
                "trafficDistribution", "type"}
SERVICE_PORT = {"appProtocol", "name", "nodePort", "port", "protocol", "targetPort"}
PVC_SPEC = {"accessModes", "dataSource", "dataSourceRef", "resources", "selector", "storageClassName",
            "volumeAttributesClassName", "volumeMode", "volumeName"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # RFC 1123 label, at most 63 characters
QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


def _documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict), f"{path}: a document that is not a mapping"
            yield path, document


DOCUMENTS = list(_documents())


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for path, d in DOCUMENTS if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
             and path.parent == DEPLOY]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} in {DEPLOY}"
    return found[0]


def _keys(what: str, mapping: dict[str, Any], allowed: set[str]) -> None:
    assert isinstance(mapping, dict), f"{what} must be a mapping"
    unknown = set(mapping) - allowed
    assert not unknown, f"{what}: not a Kubernetes field: {sorted(unknown)}"


def _pod_spec(path: Path, spec: dict[str, Any]) -> None:
    _keys(f"{path.name} pod spec", spec, POD_SPEC)
    _keys(f"{path.name} pod securityContext", spec.get("securityContext", {}), POD_SECURITY)
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    assert len(volumes) == len(spec.get("volumes", [])), f"{path.name}: volume names repeat"
    for name, volume in volumes.items():
        assert DNS_LABEL.match(name), f"{path.name}: volume name {name!r}"
        sources = set(volume) - {"name"}
        assert len(sources) == 1 and sources <= set(VOLUME_SOURCES), f"{path.name}: volume {name}: {sources}"
        (source,) = sources
        _keys(f"{path.name} volume {name}", volume[source], VOLUME_SOURCES[source])
        for projection in volume[source].get("sources", []):
            (kind,) = projection
            _keys(f"{path.name} volume {name} projection", projection[kind], PROJECTION[kind])
    for container in spec["containers"]:
        what = f"{path.name} container {container['name']}"
        _keys(what, container, CONTAINER)
        assert container["image"], what
        _keys(f"{what} securityContext", container.get("securityContext", {}), CONTAINER_SECURITY)
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert all(len(n) <= 15 and DNS_LABEL.match(n) for n in ports), f"{what}: port names {sorted(ports)}"
        for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe_name in container:
                probe = container[probe_name]
                _keys(f"{what} {probe_name}", probe, PROBE)
                _keys(f"{what} {probe_name}.httpGet", probe["httpGet"], HTTP_GET)
                port = probe["httpGet"]["port"]
                assert isinstance(port, int) or port in ports, f"{what} {probe_name}: no port named {port}"
        for mount in container.get("volumeMounts", []):
            _keys(f"{what} volumeMount", mount, VOLUME_MOUNT)
            assert mount["name"] in volumes, f"{what}: mounts {mount['name']}, which is no volume"
            assert mount["mountPath"].startswith("/"), f"{what}: {mount['mountPath']}"
        for section in container.get("resources", {}).values():
            assert all(QUANTITY.match(str(q)) for q in section.values()), f"{what}: resources {section}"
        assert all(set(e) <= {"name", "value", "valueFrom"} and isinstance(e.get("value", ""), str)
                   for e in container.get("env", [])), f"{what}: env values must be strings"


@pytest.mark.parametrize(("path", "document"), DOCUMENTS, ids=[f"{p.relative_to(DEPLOY)}:{d.get('kind')}"
                                                                 for p, d in DOCUMENTS])
def test_every_manifest_is_a_well_formed_kubernetes_object(path: Path, document: dict[str, Any]) -> None:
    assert (document.get("apiVersion"), document.get("kind")) in KINDS, f"{path.name}: {document.get('kind')}"
    kind = document["kind"]
    _keys(f"{path.name} {kind}", document, TOP.get(kind, TOP_DEFAULT))
    if kind == "Kustomization":
        return
    metadata = document["metadata"]
    _keys(f"{path.name} metadata", metadata, METADATA)
    assert DNS_LABEL.match(metadata["name"]) and len(metadata["name"]) <= 63, metadata["name"]
    assert metadata["namespace"] == NAMESPACE, f"{path.name}: the namespace where AIO's CA trust bundle is"
    if kind == "Deployment":
        spec = document["spec"]
        _keys(f"{path.name} spec", spec, DEPLOYMENT_SPEC)
        labels = spec["template"]["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), "the selector must match the pods"
        _pod_spec(path, spec["template"]["spec"])
    elif kind == "Pod":
        _pod_spec(path, document["spec"])
    elif kind == "Service":
        _keys(f"{path.name} spec", document["spec"], SERVICE_SPEC)
        for port in document["spec"]["ports"]:
            _keys(f"{path.name} port", port, SERVICE_PORT)
    elif kind == "PersistentVolumeClaim":
        _keys(f"{path.name} spec", document["spec"], PVC_SPEC)
        assert QUANTITY.match(document["spec"]["resources"]["requests"]["storage"])
    elif kind == "ConfigMap":
        assert all(isinstance(v, str) for v in document["data"].values())


def test_the_kustomization_applies_every_manifest_of_its_folder_in_one_namespace() -> None:
    kustomization = _one("Kustomization")
    assert kustomization["namespace"] == NAMESPACE
    assert sorted(kustomization["resources"]) == sorted(p.name for p in DEPLOY.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")
    names = {(d["kind"], d["metadata"]["name"]) for path, d in DOCUMENTS if path.parent == DEPLOY
             and d["kind"] != "Kustomization"}
    deployment = _one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert ("ServiceAccount", pod["serviceAccountName"]) in names
    for volume in pod["volumes"]:
        if "persistentVolumeClaim" in volume:
            assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
        if "configMap" in volume and volume["configMap"]["name"] != TRUST_BUNDLE:
            assert ("ConfigMap", volume["configMap"]["name"]) in names
    service = _one("Service")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate", \
        "one writer of the run's journal at a time"


# --- the manifests against the code -----------------------------------------------------------------
def _image_environment() -> dict[str, str]:
    """The ENV of the repository's Dockerfile (what the container starts with)."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    environment: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            environment.update(item.split("=", 1) for item in shlex.split(line[4:]))
    return environment


def _container() -> dict[str, Any]:
    (container,) = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _mount_of(volume_name: str, pod: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The mount path of a volume in the (first) container and the volume."""
    pod = pod or _one("Deployment")["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume_name]
    (volume,) = [v for v in pod["volumes"] if v["name"] == volume_name]
    return mount["mountPath"], volume


def _token_file(pod: dict[str, Any]) -> str:
    """Where the projected service-account token of audience aio-internal is in the container."""
    for volume in pod["volumes"]:
        for source in volume.get("projected", {}).get("sources", []):
            token = source.get("serviceAccountToken")
            if token is not None:
                assert token["audience"] == AIO_AUDIENCE, "AIO's K8S-SAT authentication accepts this audience"
                assert 600 <= token["expirationSeconds"] <= 86400 * 2
                mount, _ = _mount_of(volume["name"], pod)
                return f"{mount}/{token['path']}"
    raise AssertionError("no projected service-account token")


def _ca_file(pod: dict[str, Any]) -> str:
    """Where AIO's CA trust bundle is in the container."""
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name") == TRUST_BUNDLE]
    mount, _ = _mount_of(volume["name"], pod)
    (item,) = volume["configMap"]["items"]
    assert item["key"] == "ca.crt", "AIO publishes the bundle under the key ca.crt"
    return f"{mount}/{item['path']}"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict[str, str]]:
    """The ConfigMap's config as the container loads it: from the --config path, with the image's
    and the Deployment's environment; and that environment."""
    container = _container()
    environment = {**_image_environment(), **{e["name"]: e["value"] for e in container["env"]}}
    args = container["args"]
    assert args[0] == "run", "the service"
    config_path = args[args.index("--config") + 1]
    mount, volume = _mount_of("config")
    configmap = _one("ConfigMap", volume["configMap"]["name"])
    assert config_path.startswith(mount + "/"), f"--config {config_path} is not on the ConfigMap's mount {mount}"
    text = configmap["data"][config_path[len(mount) + 1:]]
    file = tmp_path_factory.mktemp("configmap") / "config.yaml"
    file.write_text(text, encoding="utf-8")
    return load(file, environ=environment), environment


def test_the_configmap_is_the_spaceship_profile() -> None:
    configmap = _one("ConfigMap", "factorysim-config")
    profile = (ROOT / "profiles" / "spaceship.yaml").read_text(encoding="utf-8")
    assert configmap["data"]["config.yaml"] == profile, \
        "deploy/kubernetes/configmap.yaml is out of date: run python3 tools/kubernetes_configmap.py"
    checked = subprocess.run([sys.executable, str(ROOT / "tools" / "kubernetes_configmap.py"), "--check"],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


def test_the_tool_writes_the_configmap_of_any_profile(tmp_path: Path) -> None:
    out = tmp_path / "configmap.yaml"
    subprocess.run([sys.executable, str(ROOT / "tools" / "kubernetes_configmap.py"),
                    str(ROOT / "profiles" / "enms.yaml"), "--output", str(out)], check=True, capture_output=True)
    configmap = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert configmap["data"]["config.yaml"] == (ROOT / "profiles" / "enms.yaml").read_text(encoding="utf-8")
    checked = subprocess.run([sys.executable, str(ROOT / "tools" / "kubernetes_configmap.py"), "--check",
                              "--output", str(out)], capture_output=True, text=True, check=False)
    assert checked.returncode == 1 and "run python3 tools/kubernetes_configmap.py" in checked.stderr


def test_the_deployed_config_publishes_to_the_aio_broker_only(deployed: tuple[Config, dict[str, str]]) -> None:
    config, environment = deployed
    assert environment["AIO_ENABLED"] == "true", "the profile's one switch"
    (target,) = config.mqtt.enabled_targets
    assert (target.name, target.host, target.port, target.protocol) == ("aio", AIO_HOST, AIO_PORT, "5")
    assert target.tls.enabled and target.tls.verify
    assert target.auth.method == "k8s-sat"
    assert [t.name for t in config.mqtt.targets if not t.enabled] == ["local"]


def test_the_aio_target_reads_the_token_and_the_ca_bundle_where_the_pod_mounts_them(
        deployed: tuple[Config, dict[str, str]]) -> None:
    config, _ = deployed
    (target,) = config.mqtt.enabled_targets
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert target.auth.token_file == _token_file(pod)
    assert target.tls.ca_file == _ca_file(pod)
    # what the code opens (here, outside a pod, they are missing: the errors name the paths)
    with pytest.raises(ConfigError, match=re.escape(_token_file(pod))):
        credentials(target)
    with pytest.raises(ConfigError, match=re.escape("mqtt.targets.aio.tls: cannot load TLS files")):
        tls_context(target)
    assert all(m.get("readOnly") for m in pod["containers"][0]["volumeMounts"]
               if m["mountPath"] in (str(Path(target.auth.token_file).parent), str(Path(target.tls.ca_file).parent)))


def test_the_probes_and_the_service_reach_the_port_the_service_listens_on(
        deployed: tuple[Config, dict[str, str]]) -> None:
    config, _ = deployed
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[container["livenessProbe"]["httpGet"]["port"]] == config.http.port
    assert ports[container["readinessProbe"]["httpGet"]["port"]] == config.http.port
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    (service_port,) = _one("Service")["spec"]["ports"]
    assert ports[service_port["targetPort"]] == config.http.port
    assert config.http.host == "0.0.0.0", "reachable by the kubelet's probes"  # noqa: S104 - what is checked


def test_the_container_writes_only_to_its_volumes(deployed: tuple[Config, dict[str, str]]) -> None:
    """A read-only root file system: the embedded broker's data, the home (the broker binary is
    unpacked there, a generated command token written) and /tmp are volumes."""
    config, environment = deployed
    container = _container()
    pod = _one("Deployment")["spec"]["template"]["spec"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
    assert config.kafka.bootstrap_servers == "embedded"
    data_dir = config.kafka.embedded.data_dir or environment["FACTORYSIM_EMBEDDED_DATA_DIR"]
    assert any(Path(data_dir).is_relative_to(w) for w in writable), f"{data_dir} is on no writable volume"
    data_mount, data_volume = _mount_of("data")
    assert "persistentVolumeClaim" in data_volume and Path(data_dir).is_relative_to(data_mount)
    assert environment["HOME"] in writable and "/tmp" in writable
    user = re.search(r"useradd .*--uid (\d+) factorysim", (ROOT / "Dockerfile").read_text(encoding="utf-8"))
    assert user is not None and pod["securityContext"]["runAsUser"] == int(user[1]) == pod["securityContext"]["fsGroup"]
    assert "memory" in container["resources"]["requests"] and "cpu" in container["resources"]["requests"]


def test_the_verification_pod_and_the_readme_authenticate_as_factorysim_does() -> None:
    (pod,) = [d for path, d in DOCUMENTS if d["kind"] == "Pod" and d["metadata"]["name"] == "mqtt-client"]
    deployment_pod = _one("Deployment")["spec"]["template"]["spec"]
    assert _token_file(pod["spec"]) == _token_file(deployment_pod)
    assert _ca_file(pod["spec"]) == _ca_file(deployment_pod)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (command,) = [line for line in readme.splitlines() if "mosquitto_sub" in line and "K8S-SAT" in line]
    assert f"--cafile {_ca_file(pod['spec'])}" in command
    assert f"cat {_token_file(pod['spec'])}" in command
    assert f"--port {AIO_PORT}" in command and f"--host {AIO_HOST}" in command
    assert "'factory/#'" in command
