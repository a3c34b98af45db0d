"""A single-node Kubernetes cluster of host processes, from binaries built here.

    etcd (mTLS on loopback) <- kube-apiserver -> kube-controller-manager, kube-scheduler
    kubelet -> containerd 2 -> runc (Debian), CNI bridge + host-local (Debian's plugins)
    kube-proxy (iptables mode); CoreDNS and the local-path provisioner run as pods (addons.py)

Network hygiene (the machine's own addresses are 192.0.2.0/24, its resolver 10.255.255.53):
pods live in 10.244.0.0/24 on the bridge `kuberl0`, Services in 10.96.0.0/16, and the node's
address 10.245.0.1 sits on `lo`, so neither the API server nor the kubelet listens on the
outside interface. Host rules let pods reach each other, the API server and the kubelet, and
nothing else: no masquerading out, no upstream DNS, no image pulls (every image is imported).

Each `up` starts a fresh cluster (new PKI, empty etcd); container images stay in containerd's
store between clusters, so a second `up` imports nothing that has not changed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.localcluster import build, pki

NODE_NAME = "kuberl-local"
CONTEXT = "kuberl-local"
NODE_IP = "10.245.0.1"
POD_CIDR = "10.244.0.0/16"
NODE_POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
BRIDGE = "kuberl0"
API_PORT = 6443
CNI_BIN_DIR = "/usr/lib/cni"
RUNC = "/usr/bin/runc"
HOST_PACKAGES = {"runc": RUNC, "containernetworking-plugins": f"{CNI_BIN_DIR}/bridge", "iptables": "/usr/sbin/iptables",
                 "conntrack": "/usr/sbin/conntrack"}
FORWARD_CHAIN = "KUBERL-LOCALCLUSTER-FORWARD"
INPUT_CHAIN = "KUBERL-LOCALCLUSTER-INPUT"
# Component -> the (user, groups) its client certificate names; RBAC's defaults know them.
CLIENT_IDENTITIES = {
    "admin": ("kuberl-localcluster-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ()),
    "scheduler": ("system:kube-scheduler", ()),
    "kubelet": (f"system:node:{NODE_NAME}", ("system:nodes",)),
    "kube-proxy": ("system:kube-proxy", ()),
}


class ClusterError(RuntimeError):
    """The cluster could not be brought up; the message says which part and shows its log."""


@dataclass(frozen=True)
class Layout:
    """Where a cluster keeps its state. `run` holds sockets; `images` outlives clusters."""

    root: Path

    @classmethod
    def default(cls) -> Layout:
        return cls(Path(os.environ.get("KUBERL_CLUSTER_DIR") or "/var/lib/kuberl-localcluster"))

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def images(self) -> Path:  # containerd's root: the content store survives `down`
        return self.root / "containerd"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd(self) -> Path:
        return self.root / "etcd"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def cni(self) -> Path:
        return self.root / "cni"

    @property
    def ipam(self) -> Path:
        return self.root / "ipam"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig, for people and tests."""
        return self.config / "admin.kubeconfig"


# ---- configuration files: pure functions of the layout -------------------------------------

def kubeconfig(layout: Layout, pair: pki.KeyPair, user: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": CONTEXT, "cluster": {"server": f"https://{NODE_IP}:{API_PORT}",
                                                    "certificate-authority": str(layout.pki / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
    })


def containerd_config(layout: Layout, sandbox_image: str) -> str:
    return f"""version = 3
root = "{layout.images}"
state = "{layout.run / 'containerd'}"

[grpc]
  address = "{layout.containerd_socket}"

[ttrpc]
  address = "{layout.run / 'containerd.sock.ttrpc'}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '{sandbox_image}'

[plugins.'io.containerd.cri.v1.runtime']
  # CAP_SYS_RESOURCE is not in this machine's bounding set: an OOM score below containerd's
  # own (the pod sandbox asks for -998) cannot be set, so clamp instead of failing the pod.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = '{RUNC}'
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['{CNI_BIN_DIR}']
    conf_dir = '{layout.cni}'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
"""


def cni_conflist(layout: Layout) -> str:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "kuberl-localcluster",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(layout.ipam), "ranges": [[{"subnet": NODE_POD_CIDR}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2)


def kubelet_config(layout: Layout, p: pki.ClusterPKI) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(p.ca.cert)}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(p.kubelet_serving.cert), "tlsPrivateKeyFile": str(p.kubelet_serving.key),
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        # This machine: cgroup v1 (refused from 1.35 unless allowed), no systemd, no swap limits.
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        # No CAP_SYS_RESOURCE: the kubelet cannot lower its own OOM score below 0.
        "oomScoreAdj": 0,
        "clusterDNS": [DNS_SERVICE_IP], "clusterDomain": CLUSTER_DOMAIN,
        # Pods get no upstream resolver: the machine's must not be reached from a pod.
        "resolvConf": str(layout.config / "resolv.conf"),
        # A small test node: never collect images (none can be pulled back) and never evict on disk.
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%", "nodefs.inodesFree": "0%",
                         "imagefs.available": "0%"},
        "serializeImagePulls": False, "maxPods": 110, "shutdownGracePeriod": "0s",
        "protectKernelDefaults": False, "rotateCertificates": False, "serverTLSBootstrap": False,
    })


def kube_proxy_config(layout: Layout) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.config / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME, "mode": "iptables", "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP, "healthzBindAddress": "127.0.0.1:10256", "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Leave the machine's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    })


def commands(layout: Layout, p: pki.ClusterPKI) -> dict[str, list[str]]:
    """Each process of the cluster, in start order, with its full command line."""
    k8s = build.KUBERNETES.bin
    cfg = layout.config
    return {
        "etcd": [str(build.ETCD.binary("etcd")),
                 "--name", NODE_NAME, "--data-dir", str(layout.etcd),
                 "--listen-client-urls", "https://127.0.0.1:2379", "--advertise-client-urls", "https://127.0.0.1:2379",
                 "--listen-peer-urls", "https://127.0.0.1:2380", "--initial-advertise-peer-urls", "https://127.0.0.1:2380",
                 "--initial-cluster", f"{NODE_NAME}=https://127.0.0.1:2380",
                 "--cert-file", str(p.etcd_server.cert), "--key-file", str(p.etcd_server.key),
                 "--trusted-ca-file", str(p.etcd_ca.cert), "--client-cert-auth",
                 "--peer-cert-file", str(p.etcd_server.cert), "--peer-key-file", str(p.etcd_server.key),
                 "--peer-trusted-ca-file", str(p.etcd_ca.cert), "--peer-client-cert-auth",
                 "--listen-metrics-urls", "http://127.0.0.1:2381", "--log-level", "warn"],
        "kube-apiserver": [
            str(k8s / "kube-apiserver"), "--bind-address", NODE_IP, "--advertise-address", NODE_IP,
            "--secure-port", str(API_PORT), "--etcd-servers", "https://127.0.0.1:2379",
            "--etcd-cafile", str(p.etcd_ca.cert), "--etcd-certfile", str(p.apiserver_etcd_client.cert),
            "--etcd-keyfile", str(p.apiserver_etcd_client.key),
            "--client-ca-file", str(p.ca.cert), "--tls-cert-file", str(p.apiserver.cert),
            "--tls-private-key-file", str(p.apiserver.key),
            "--kubelet-client-certificate", str(p.apiserver_kubelet_client.cert),
            "--kubelet-client-key", str(p.apiserver_kubelet_client.key),
            "--kubelet-certificate-authority", str(p.ca.cert),
            "--kubelet-preferred-address-types", "InternalIP",
            "--service-cluster-ip-range", SERVICE_CIDR,
            "--service-account-issuer", f"https://kubernetes.default.svc.{CLUSTER_DOMAIN}",
            "--service-account-key-file", str(p.service_account_public_key),
            "--service-account-signing-key-file", str(p.service_account_key),
            "--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
            "--allow-privileged=false", "--profiling=false", "--v=1"],
        "kube-controller-manager": [
            str(k8s / "kube-controller-manager"), "--kubeconfig", str(cfg / "controller-manager.kubeconfig"),
            "--authentication-kubeconfig", str(cfg / "controller-manager.kubeconfig"),
            "--authorization-kubeconfig", str(cfg / "controller-manager.kubeconfig"),
            "--bind-address", "127.0.0.1", "--leader-elect=false", "--use-service-account-credentials",
            "--cluster-signing-cert-file", str(p.ca.cert), "--cluster-signing-key-file", str(layout.pki / "ca.key"),
            "--root-ca-file", str(p.ca.cert), "--service-account-private-key-file", str(p.service_account_key),
            "--service-cluster-ip-range", SERVICE_CIDR, "--cluster-cidr", POD_CIDR,
            "--profiling=false", "--v=1"],
        "kube-scheduler": [
            str(k8s / "kube-scheduler"), "--kubeconfig", str(cfg / "scheduler.kubeconfig"),
            "--authentication-kubeconfig", str(cfg / "scheduler.kubeconfig"),
            "--authorization-kubeconfig", str(cfg / "scheduler.kubeconfig"),
            "--bind-address", "127.0.0.1", "--leader-elect=false", "--profiling=false", "--v=1"],
        "containerd": [str(build.CONTAINERD.binary("containerd")), "--config", str(cfg / "containerd.toml")],
        "kubelet": [str(k8s / "kubelet"), "--config", str(cfg / "kubelet.yaml"),
                    "--kubeconfig", str(cfg / "kubelet.kubeconfig"), "--root-dir", str(layout.kubelet),
                    "--hostname-override", NODE_NAME, "--node-ip", NODE_IP, "--v=1"],
        "kube-proxy": [str(k8s / "kube-proxy"), "--config", str(cfg / "kube-proxy.yaml"), "--v=1"],
    }


# ---- processes --------------------------------------------------------------------------------

def _pid(layout: Layout, name: str) -> int | None:
    """The live process recorded for `name`, checked against its command line (PIDs are reused)."""
    try:
        pid = int((layout.pids / f"{name}.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(layout.root).encode() in cmdline else None


def _start(layout: Layout, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Starts one process in a session of its own: it outlives this Python process (`up`)."""
    with open(layout.logs / f"{name}.log", "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, start_new_session=True, cwd=layout.root)
    (layout.pids / f"{name}.pid").write_text(str(process.pid))
    return process


def _stop(layout: Layout, name: str, grace: float = 15) -> None:
    pid = _pid(layout, name)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pid(layout, name) is not None:
        try:  # our own child: reap it, or it stays a zombie and looks alive
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    if _pid(layout, name) is not None:
        os.kill(pid, signal.SIGKILL)
    (layout.pids / f"{name}.pid").unlink(missing_ok=True)


def _log_tail(layout: Layout, name: str, lines: int = 40) -> str:
    try:
        return "\n".join((layout.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(layout: Layout, name: str, process: subprocess.Popen, ready, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ClusterError(f"{name} exited during start; its log ({layout.logs / name}.log) ends:\n"
                               f"{_log_tail(layout, name)}")
        try:
            if ready():
                return
        except (OSError, ssl.SSLError, subprocess.SubprocessError):
            pass
        time.sleep(0.3)
    raise ClusterError(f"{name} not ready after {timeout:.0f}s; its log ends:\n{_log_tail(layout, name)}")


def _sh(*argv: str, check: bool = True, timeout: float = 60, input: bytes | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(list(argv), capture_output=True, timeout=timeout, input=input)
    if check and done.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    return done


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def api_get(layout: Layout, path: str, timeout: float = 5) -> bytes:
    """GET from the API server as the admin (client certificate)."""
    context = ssl.create_default_context(cafile=str(layout.pki / "ca.crt"))
    context.load_cert_chain(str(layout.pki / "admin-client.crt"), str(layout.pki / "admin-client.key"))
    with urllib.request.urlopen(f"https://{NODE_IP}:{API_PORT}{path}", context=context, timeout=timeout) as reply:
        return reply.read()


def kubectl(layout: Layout, *args: str, input: bytes | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return _sh(str(build.KUBERNETES.binary("kubectl")), "--kubeconfig", str(layout.kubeconfig), *args,
               input=input, check=check, timeout=timeout)


def ctr_argv(layout: Layout, *args: str) -> list[str]:
    return [str(build.CONTAINERD.binary("ctr")), "--address", str(layout.containerd_socket), "--namespace", "k8s.io",
            *args]


def ctr(layout: Layout, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    return _sh(*ctr_argv(layout, *args), check=check, timeout=timeout)


# ---- host network -----------------------------------------------------------------------------

def _outside_interface() -> str:
    route = _sh("ip", "-json", "route", "show", "default").stdout
    routes = json.loads(route or b"[]")
    return routes[0]["dev"] if routes else "eth0"


def _rules(outside: str) -> dict[str, list[list[str]]]:
    """Our two chains. FORWARD: pods talk to pods on the bridge and to nothing beyond it, and
    nothing from outside reaches a pod. INPUT: from a pod, only the node's address (API server,
    kubelet) and replies; the node's address only from the machine itself and from pods."""
    return {
        FORWARD_CHAIN: [["-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"],
                        ["-s", POD_CIDR, "-j", "DROP"],
                        ["-d", POD_CIDR, "-j", "DROP"]],
        INPUT_CHAIN: [["-i", BRIDGE, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
                      ["-i", BRIDGE, "-d", NODE_IP, "-j", "RETURN"],
                      ["-i", BRIDGE, "-j", "DROP"],
                      ["-i", outside, "-d", NODE_IP, "-j", "DROP"]],
    }


_JUMPS = ((FORWARD_CHAIN, "FORWARD"), (INPUT_CHAIN, "INPUT"))


def _delete_jumps() -> None:
    for chain, parent in _JUMPS:
        while _sh("iptables", "-D", parent, "-j", chain, check=False).returncode == 0:
            pass


def _insert_jumps() -> None:
    _delete_jumps()
    for chain, parent in _JUMPS:
        _sh("iptables", "-I", parent, "1", "-j", chain)


def _remove_kubernetes_chains() -> None:
    """What `kube-proxy --cleanup` leaves: the kubelet's own chains (KUBE-FIREWALL, canaries)."""
    for table in ("filter", "nat", "mangle"):
        listing = _sh("iptables", "-t", table, "-S", check=False).stdout.decode().splitlines()
        chains = [line.split()[1] for line in listing if line.startswith("-N KUBE-")]
        for line in listing:
            words = line.split()
            if words[:1] == ["-A"] and "-j" in words and words[words.index("-j") + 1] in chains \
                    and not words[1].startswith("KUBE-"):
                _sh("iptables", "-t", table, "-D", *words[1:], check=False)
        for chain in chains:
            _sh("iptables", "-t", table, "-F", chain, check=False)
        for chain in chains:
            _sh("iptables", "-t", table, "-X", chain, check=False)


def _remove_host_network() -> None:
    _delete_jumps()
    for chain, _ in _JUMPS:
        _sh("iptables", "-F", chain, check=False)
        _sh("iptables", "-X", chain, check=False)
    _sh("ip", "link", "delete", BRIDGE, check=False)
    _sh("ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False)


def _set_up_host_network() -> None:
    _remove_host_network()
    _sh("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")
    for key, value in (("net/ipv4/ip_forward", "1"), ("net/bridge/bridge-nf-call-iptables", "1"),
                       ("fs/inotify/max_user_instances", "8192"), ("fs/inotify/max_user_watches", "524288")):
        Path("/proc/sys", key).write_text(value)
    for chain, rules in _rules(_outside_interface()).items():
        _sh("iptables", "-N", chain)
        for rule in rules:
            _sh("iptables", "-A", chain, *rule)
    _insert_jumps()
    # The kubelet and containerd propagate volume mounts; this machine's root mount is private.
    _sh("mount", "--make-rshared", "/")


# ---- whole cluster ----------------------------------------------------------------------------

def why_not_runnable() -> str | None:
    reason = build.why_not_buildable()
    if reason:
        return reason
    missing = [package for package, path in HOST_PACKAGES.items() if not Path(path).exists()]
    if missing:
        return f"missing Debian packages: {' '.join(missing)} (tests/run.sh installs them as root)"
    return None


def is_up(layout: Layout) -> bool:
    try:
        return api_get(layout, "/readyz", timeout=3) == b"ok" and _pid(layout, "kubelet") is not None
    except (OSError, ssl.SSLError):
        return False


def _unmount_under(*roots: Path) -> None:
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted(mounts, key=len, reverse=True):
        if any(mount == str(r) or mount.startswith(f"{r}/") for r in roots):
            _sh("umount", "-l", mount, check=False)


def _remove_cgroups() -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        kubepods = hierarchy / "kubepods"
        if kubepods.is_dir():
            for directory in sorted(kubepods.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if directory.is_dir():
                    try:
                        directory.rmdir()
                    except OSError:
                        pass


def down(layout: Layout, log=print) -> None:
    """Stops every process, removes the pods' containers, mounts, network and the cluster's
    state; keeps the image store and the build cache."""
    for name in ("kube-proxy", "kubelet", "kube-scheduler", "kube-controller-manager"):
        _stop(layout, name)
    if _pid(layout, "containerd") is not None:
        # Without a kubelet, remove the pod sandboxes through containerd itself: the CRI plugin
        # tears their networks down on the way.
        listed = ctr(layout, "containers", "list", "--quiet", check=False).stdout.decode().split()
        for container in listed:
            ctr(layout, "tasks", "kill", "--signal", "SIGKILL", container, check=False, timeout=30)
        for container in listed:
            ctr(layout, "tasks", "delete", "--force", container, check=False, timeout=30)
            ctr(layout, "containers", "delete", container, check=False, timeout=30)
    for name in ("containerd", "kube-apiserver", "etcd"):
        _stop(layout, name)
    # Shims outlive containerd by design; ours name our state directory on their command line.
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in cmdline and str(layout.root).encode() in cmdline:
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    _unmount_under(layout.kubelet, layout.run, layout.volumes)
    _remove_cgroups()
    if build.KUBERNETES.built:
        _sh(str(build.KUBERNETES.binary("kube-proxy")), "--cleanup", check=False)
    _remove_kubernetes_chains()
    _remove_host_network()
    for part in ("etcd", "config", "pki", "pids", "kubelet", "cni", "ipam", "run", "volumes"):
        shutil.rmtree(layout.root / part, ignore_errors=True)
    log("[localcluster] down")


def _write_configs(layout: Layout, p: pki.ClusterPKI, sandbox_image: str) -> None:
    cfg = layout.config
    for component, (user, _) in CLIENT_IDENTITIES.items():
        (cfg / f"{component}.kubeconfig").write_text(kubeconfig(layout, p.clients[component], user))
        (cfg / f"{component}.kubeconfig").chmod(0o600)
    (cfg / "containerd.toml").write_text(containerd_config(layout, sandbox_image))
    (cfg / "kubelet.yaml").write_text(kubelet_config(layout, p))
    (cfg / "kube-proxy.yaml").write_text(kube_proxy_config(layout))
    (cfg / "resolv.conf").write_text("")
    (layout.cni / "10-kuberl.conflist").write_text(cni_conflist(layout))


def start_control_plane_and_node(layout: Layout, sandbox_image: str, log=print) -> None:
    """Fresh PKI and etcd, then every process, each waited for before the next that needs it."""
    for part in ("pki", "etcd", "config", "logs", "pids", "kubelet", "cni", "ipam", "volumes", "run"):
        (layout.root / part).mkdir(parents=True, exist_ok=True)
    layout.etcd.chmod(0o700)
    p = pki.make_cluster_pki(layout.pki, node_name=NODE_NAME, node_ip=NODE_IP, api_service_ip=API_SERVICE_IP,
                             cluster_domain=CLUSTER_DOMAIN, client_identities=CLIENT_IDENTITIES)
    _write_configs(layout, p, sandbox_image)
    _set_up_host_network()
    argv = commands(layout, p)
    path = ":".join([str(build.CONTAINERD.bin), str(build.KUBERNETES.bin), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    env = {"PATH": path, "HOME": str(layout.root), "LANG": "C.UTF-8"}
    checks = {
        "etcd": lambda: _port_open(2379),
        "kube-apiserver": lambda: api_get(layout, "/readyz") == b"ok",
        "kube-controller-manager": lambda: _port_open(10257),
        "kube-scheduler": lambda: _port_open(10259),
        "containerd": lambda: ctr(layout, "version", check=False, timeout=5).returncode == 0,
        "kubelet": lambda: _port_open(10248),
        "kube-proxy": lambda: _port_open(10256),
    }
    for name, command in argv.items():
        started = time.monotonic()
        _wait(layout, name, _start(layout, name, command, env), checks[name], timeout=120)
        log(f"[localcluster] {name} up in {time.monotonic() - started:.1f}s")
    _insert_jumps()  # kube-proxy put its own chains first; ours decide before them
