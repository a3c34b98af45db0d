"""What a bare cluster lacks that kind ships: cluster DNS and a default StorageClass.

- CoreDNS (built from its Go module) answers `*.svc.cluster.local` and headless-Service names
  with every pod's address, and nothing else: no `forward` plugin, so no name outside the
  cluster resolves from a pod.
- Rancher's local-path provisioner (the one kind uses) backs the default StorageClass: a claim
  becomes a directory on the node, made by a helper pod that runs the local base image.
"""

from __future__ import annotations

import json

import yaml

from tests.localcluster import cluster

DNS_PORT = 1053  # CoreDNS runs unprivileged; the Service maps 53 onto it


def coredns(image: str) -> list[dict]:
    labels = {"k8s-app": "kube-dns"}
    corefile = (f".:{DNS_PORT} {{\n    errors\n    health :8080\n    ready :8181\n"
                f"    kubernetes {cluster.CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
                "        pods insecure\n        fallthrough in-addr.arpa ip6.arpa\n    }\n"
                "    cache 30\n    loop\n    reload\n}\n")
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
         "data": {"Corefile": corefile}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", "namespace": "kube-system",
                                                                     "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "coredns", "dnsPolicy": "Default",
                      "priorityClassName": "system-cluster-critical",
                      "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                          "seccompProfile": {"type": "RuntimeDefault"}},
                      "containers": [{
                          "name": "coredns", "image": image, "imagePullPolicy": "Never",
                          "args": ["-conf", "/etc/coredns/Corefile"],
                          "ports": [{"name": "dns", "containerPort": DNS_PORT, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": DNS_PORT, "protocol": "TCP"}],
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 2},
                          "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10},
                          "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "170Mi"}},
                          "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                              "capabilities": {"drop": ["ALL"]}},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", "namespace": "kube-system",
                                                             "labels": labels},
         "spec": {"clusterIP": cluster.DNS_SERVICE_IP, "selector": labels,
                  "ports": [{"name": "dns", "port": 53, "targetPort": DNS_PORT, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "targetPort": DNS_PORT, "protocol": "TCP"}]}},
    ]


def local_path_storage(image: str, helper_image: str, volumes: str) -> list[dict]:
    namespace, account = "local-path-storage", "local-path-provisioner"
    helper_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "helper-pod"},
                  "spec": {"containers": [{"name": "helper-pod", "image": helper_image, "imagePullPolicy": "Never"}]}}
    config = {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [volumes]}]}
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": account, "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["pods"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": account, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account}, "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": account},
         "rules": [{"apiGroups": [""], "resources": ["nodes", "persistentvolumeclaims", "configmaps", "pods",
                                                    "pods/log"], "verbs": ["get", "list", "watch"]},
                   {"apiGroups": [""], "resources": ["persistentvolumes"],
                    "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
                   {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
                   {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": account},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": account},
         "subjects": subject},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local-path-config", "namespace": namespace},
         "data": {"config.json": json.dumps(config),
                  "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                  "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                  "helperPod.yaml": yaml.safe_dump(helper_pod)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": account, "namespace": namespace},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": account}},
                  "template": {"metadata": {"labels": {"app": account}}, "spec": {
                      "serviceAccountName": account,
                      "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                          "seccompProfile": {"type": "RuntimeDefault"}},
                      "containers": [{
                          "name": "provisioner", "image": image, "imagePullPolicy": "Never",
                          "args": ["start", "--config", "/etc/config/config.json", "--service-account-name", account],
                          "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                  {"name": "CONFIG_MOUNT_PATH", "value": "/etc/config/"}],
                          "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                          "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                              "capabilities": {"drop": ["ALL"]}},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/config/"}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "local-path-config"}}]}}}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
         "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
         "reclaimPolicy": "Delete"},
    ]
