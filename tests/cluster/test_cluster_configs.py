"""The cluster configs in cluster/: valid for Ray (and KubeRay) as far as can be checked
offline, consistent with each other and with the installed Ray, and closed to the internet
except SSH from one CIDR. Nothing here contacts AWS or Kubernetes."""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
AWS = CLUSTER / "aws-gpu.yaml"
AWS_NETWORK = CLUSTER / "aws-network.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
KUBERAY = CLUSTER / "kuberay"
README = CLUSTER / "README.md"
SHARED = "/mnt/ninsweep"
RAY_PORTS = (6379, 8265)
WORLD = {"0.0.0.0/0", "::/0"}
# Placeholders a user replaces before use; README.md says how.
PLACEHOLDER = re.compile(r"REPLACE_[A-Z_]+|registry\.example\.com")


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kuberay_docs() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted(KUBERAY.glob("*.yaml")) for d in _docs(p)]


def _cluster_specs() -> list[tuple[str, dict]]:
    """Every RayCluster spec: the RayCluster's and the RayJob's rayClusterSpec."""
    specs = []
    for name, doc in _kuberay_docs():
        if doc["kind"] == "RayCluster":
            specs.append((name, doc["spec"]))
        elif doc["kind"] == "RayJob" and "rayClusterSpec" in doc["spec"]:
            specs.append((name, doc["spec"]["rayClusterSpec"]))
    return specs


def _pod_templates(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]


# -- AWS: Ray's own validation ------------------------------------------------------------


def test_aws_config_passes_ray_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = _load(AWS)
    validate_config(config)  # ray-schema.json plus Ray's own cross-field checks
    prepared = prepare_config(copy.deepcopy(config))  # merged with Ray's AWS defaults
    validate_config(prepared)
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] in types
    assert prepared["provider"]["type"] == "aws"
    assert types[prepared["head_node_type"]]["resources"] == {"CPU": 0}
    assert sum(t.get("min_workers", 0) for t in types.values()) <= prepared["max_workers"]
    gpu_types = [t for t in types.values() if t["node_config"]["InstanceType"].startswith(("g", "p"))]
    assert gpu_types and all(t["max_workers"] > 0 for t in gpu_types)


def test_aws_images_match_the_installed_ray():
    docker = _load(AWS)["docker"]
    for key in ("image", "head_image", "worker_image"):
        repo, tag = docker[key].split(":")
        assert repo == "rayproject/ray"
        assert tag.startswith(f"{ray.__version__}-py"), (key, tag, ray.__version__)
    assert docker["worker_image"].endswith("-gpu")
    config = _load(AWS)
    pins = re.findall(r"ray\[[a-z,]+\]==([0-9.]+)", " ".join(config["setup_commands"]))
    assert pins == [ray.__version__]


def test_aws_nodes_use_the_restricted_security_group():
    """Without SecurityGroupIds Ray creates a group with SSH open to 0.0.0.0/0."""
    config = _load(AWS)
    for name, node_type in config["available_node_types"].items():
        groups = node_type["node_config"].get("SecurityGroupIds")
        assert groups, f"{name}: no SecurityGroupIds; Ray would open SSH to the world"
    # Extra rules Ray would add to its own group: none may open a Ray port to the world.
    for rule in config["provider"].get("security_group", {}).get("IpPermissions", []):
        assert not (_rule_is_world(rule) and _rule_ports_hit(rule, RAY_PORTS + (22,)))


def test_aws_dashboard_on_loopback_and_token_auth_on_every_node():
    config = _load(AWS)
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        start = [c for c in commands if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start)
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"


def test_aws_shared_storage_is_mounted_everywhere():
    config = _load(AWS)
    init = " ".join(config["initialization_commands"])
    assert re.search(rf"mount -t nfs4 .*efs\..*:/ {SHARED}", init)
    assert f"-v {SHARED}:{SHARED}" in config["docker"]["run_options"]
    assert config["file_mounts"]["~/ninsweep"] == "."
    for pattern in (".venv", ".git", "/runs", "/data"):
        assert pattern in config["rsync_exclude"]


# -- AWS network (CloudFormation) ---------------------------------------------------------


def _rule_is_world(rule: dict) -> bool:
    cidrs = [rule.get("CidrIp"), rule.get("CidrIpv6")]
    cidrs += [r.get("CidrIp") for r in rule.get("IpRanges", [])]
    cidrs += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges", [])]
    return any(isinstance(c, str) and c in WORLD for c in cidrs)


def _rule_ports_hit(rule: dict, ports) -> bool:
    if str(rule.get("IpProtocol")) == "-1":
        return True
    low, high = int(rule.get("FromPort", -1)), int(rule.get("ToPort", -1))
    return low == -1 or any(low <= port <= high for port in ports)


def _ingress_rules(template: dict) -> list[dict]:
    rules = []
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            rules += props.get("SecurityGroupIngress", [])
        elif resource["Type"] == "AWS::EC2::SecurityGroupIngress":
            rules.append(props)
    return rules


def test_network_opens_only_ssh_from_one_cidr():
    template = _load(AWS_NETWORK)
    rules = _ingress_rules(template)
    assert rules
    for rule in rules:
        assert not _rule_is_world(rule), rule
        if "CidrIp" in rule:  # from outside the VPC's groups: SSH only, from SshCidr
            assert rule["CidrIp"] == {"Ref": "SshCidr"}, rule
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22)
        else:  # everything else comes from the node group itself
            assert "SourceSecurityGroupId" in rule, rule
    ssh = template["Parameters"]["SshCidr"]
    assert "Default" not in ssh
    pattern = re.compile(ssh["AllowedPattern"])
    for ok in ("203.0.113.7/32", "10.1.0.0/16"):
        assert pattern.match(ok)
    for bad in ("0.0.0.0/0", "10.0.0.0/8", "1.2.3.4", "::/0", "300.1.1.1/32"):
        assert not pattern.match(bad), bad
    assert template["Resources"]["FileSystem"]["DeletionPolicy"] == "Retain"
    assert template["Resources"]["FileSystem"]["Properties"]["Encrypted"] is True


@pytest.mark.skipif(shutil.which("cfn-lint") is None, reason="cfn-lint not installed")
def test_network_template_passes_cfn_lint():
    result = subprocess.run(["cfn-lint", str(AWS_NETWORK)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- KubeRay --------------------------------------------------------------------------------


def test_kuberay_manifests_have_the_expected_shape():
    kinds = [(name, doc["apiVersion"], doc["kind"]) for name, doc in _kuberay_docs()]
    assert ("raycluster.yaml", "ray.io/v1", "RayCluster") in kinds
    assert ("rayjob.yaml", "ray.io/v1", "RayJob") in kinds
    assert ("storage.yaml", "v1", "PersistentVolumeClaim") in kinds
    specs = _cluster_specs()
    assert [name for name, _ in specs] == ["raycluster.yaml", "rayjob.yaml"]
    for name, spec in specs:
        assert spec["rayVersion"] == ray.__version__, name
        assert spec.get("authOptions", {}).get("mode") == "token", name
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"  # in-pod only
        assert head["rayStartParams"]["num-cpus"] == "0"
        assert head["template"]["spec"]["containers"][0]["name"] == "ray-head"
        assert spec["workerGroupSpecs"], name
        for group in spec["workerGroupSpecs"]:
            assert {"groupName", "minReplicas", "maxReplicas", "rayStartParams",
                    "template"} <= set(group)
            assert group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
            ray_container = group["template"]["spec"]["containers"][0]
            limits = ray_container["resources"]["limits"]
            requests = ray_container["resources"]["requests"]
            assert int(limits["nvidia.com/gpu"]) >= 1, name
            assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"]
            tolerations = group["template"]["spec"].get("tolerations", [])
            assert any(t.get("key") == "nvidia.com/gpu" for t in tolerations)


def test_kuberay_ray_sees_the_intended_resources():
    """KubeRay's autoscaler config as Ray derives it (and validates it) from the CR."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    for name, spec in _cluster_specs():
        cr = {"apiVersion": "ray.io/v1", "kind": "RayCluster",
              "metadata": {"name": "ninsweep", "namespace": "default"},
              "spec": copy.deepcopy(spec)}
        config = _derive_autoscaling_config_from_ray_cr(cr)  # runs Ray's validate_config
        types = config["available_node_types"]
        assert types["headgroup"]["resources"]["CPU"] == 0, name
        gpu = types["gpu"]["resources"]
        assert gpu["GPU"] == 1 and gpu["CPU"] >= 8, name  # 4 lab4 trials (2 CPU, 0.25 GPU)


def test_kuberay_shared_volume_on_every_ray_container():
    (claim,) = [d for _, d in _kuberay_docs() if d["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    claim_name = claim["metadata"]["name"]
    for name, spec in _cluster_specs():
        for template in _pod_templates(spec):
            pod = template["spec"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            for container in pod["containers"]:
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert SHARED in mounts, (name, container["name"])
                volume = volumes[mounts[SHARED]]
                assert volume["persistentVolumeClaim"]["claimName"] == claim_name
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                assert env.get("NINSWEEP_STORAGE", "").startswith(SHARED + "/")


def test_kuberay_nothing_exposed_outside_the_cluster():
    for name, doc in _kuberay_docs():
        assert doc["kind"] not in ("Ingress", "Route", "Gateway"), name
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", name
    for name, spec in _cluster_specs():
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", name
        assert head.get("enableIngress", False) is False, name
        if "headService" in head:
            assert head["headService"]["spec"].get("type", "ClusterIP") == "ClusterIP"
        for template in _pod_templates(spec):
            pod = template["spec"]
            assert not pod.get("hostNetwork"), name
            for container in pod["containers"]:
                for port in container.get("ports", []):
                    assert "hostPort" not in port, (name, port)


def test_kuberay_images_match_ray_and_the_dockerfile():
    (base,) = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert base == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert f'"ray[default,tune]=={ray.__version__}"' in DOCKERFILE.read_text()
    build_tag = re.search(r"-t (\S+) \.", DOCKERFILE.read_text()).group(1)
    images = {c["image"] for _, spec in _cluster_specs() for t in _pod_templates(spec)
              for c in t["spec"]["containers"]}
    assert images == {build_tag}
    (image,) = images
    assert image.split(":")[1].endswith(f"-ray{ray.__version__}-py311-gpu")


def test_rayjob_and_raycluster_describe_the_same_cluster():
    by_file = dict(_cluster_specs())
    assert by_file["rayjob.yaml"] == by_file["raycluster.yaml"]


def test_rayjob_runs_lab4_on_shared_storage_and_resumes():
    (job,) = [d for _, d in _kuberay_docs() if d["kind"] == "RayJob"]
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["backoffLimit"] >= 1
    assert spec["metadata"]["ninsweep"] == "1"  # listed by `ninsweep jobs list`
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["bash", "-c"] and len(argv) == 3
    script = argv[2]
    subprocess.run(["bash", "-n", "-c", script], check=True)  # syntax
    run = re.search(r"python -m ninsweep run (.*?);", script).group(1).split()
    assert run[0] == "search_spaces/lab4.yaml"
    assert run[run.index("--storage") + 1] == f"{SHARED}/experiments"
    assert run[run.index("--address") + 1] == "auto"
    experiment = f"{SHARED}/experiments/{run[run.index('--name') + 1]}"
    assert f"[ -f {experiment}/ninsweep.json ]" in script
    assert f"python -m ninsweep resume {experiment} --address auto" in script
    assert (REPO / run[0]).is_file()


# -- docs -----------------------------------------------------------------------------------


def test_every_placeholder_is_explained_in_the_readme():
    readme = README.read_text()
    for path in [AWS, AWS_NETWORK, *KUBERAY.glob("*.yaml")]:
        for placeholder in set(PLACEHOLDER.findall(path.read_text())):
            assert placeholder in readme, (path.name, placeholder)


def test_readme_covers_the_lifecycle():
    readme = README.read_text()
    for phrase in ("ray up", "ray dashboard cluster/aws-gpu", "kubectl port-forward",
                   "ninsweep submit", "ninsweep jobs logs", "--resume", "ninsweep export",
                   "ray down", "kubectl delete", "peak_gpu_mem", "RAY_AUTH_TOKEN"):
        assert phrase in readme, phrase


def test_no_config_opens_ray_ports_to_the_world():
    """A blunt scan of every file in cluster/ for a world-open CIDR next to a Ray port."""
    for path in CLUSTER.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            text = path.read_text()
            for cidr in WORLD:
                assert cidr not in text, (path.name, cidr)
