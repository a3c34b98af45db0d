"""An emulated Kubernetes API server for operator tests: kmock, made stricter, in a thread.

Usage (synchronous tests; no pytest plugin and no event loop in the test itself)::

    from tests.operator.kube_api import KubeAPI, RLEXPERIMENTS, run_operator

    with KubeAPI() as kube:                      # server up, KUBECONFIG points at it
        with run_operator("path/to/operator.py") as runner:   # kopf.testing.KopfRunner
            kube.create(RLEXPERIMENTS, {...})
            kube.wait_for(lambda: kube.get_or_none("v1/configmaps", "x-env"))
        assert runner.exception is None

or the ``kube_api`` fixture from ``tests/operator/conftest.py``.

How it works
------------
* kmock's ``KubernetesEmulator`` (an aiohttp handler that keeps objects in memory and serves
  discovery, list, watch, get, create, patch and delete) is subclassed as
  :class:`StrictEmulator`, which takes over every object-changing request and fills in what a
  real API server does (see the gap list below). Reads still go through kmock's reaction
  machinery, so kmock's DSL (``kube.emulator[...] << 500``) can inject faults.
* The server runs on its own event loop in a daemon thread, on a free loopback port
  (``kmock.Server`` binds port 0). Tests stay synchronous; KopfRunner runs the operator in a
  second thread with its own loop, exactly as in production, talking HTTP to the server.
* On enter, :class:`KubeAPI` writes a kubeconfig (``kube.kubeconfig_path``) and points both
  clients at it: it sets ``KUBECONFIG``, removes ``KUBERNETES_SERVICE_HOST``/``_PORT`` (so
  neither kopf's login nor ``load_config()`` pick in-cluster config), adds the loopback to
  ``NO_PROXY``, patches ``kubernetes.config[.kube_config].KUBE_CONFIG_DEFAULT_LOCATION`` (the
  client reads ``KUBECONFIG`` once, at import) and loads it as the client's default
  ``Configuration``. Everything is restored on exit.

Ordering rule for tests: enter ``KubeAPI`` first, then start the operator (KopfRunner) and
only then call ``kubernetes.config.load_kube_config()``/``load_config()`` or create
``CoreV1Api()`` without an explicit client. Importing ``kubernetes`` before is fine (the
default location is patched), but a ``Configuration`` loaded before entering still points
elsewhere: build API objects after entering, or pass ``kube.api_client`` explicitly. Exit in
reverse order (the operator before the server) -- nested ``with`` blocks do this.

kmock 0.8 gaps and what this harness does about them
----------------------------------------------------
Fixed here (the operator under test need not care):

1.  kmock's URL parser reads ``/api/v1/namespaces[/NAME[/status]]`` as a namespace prefix:
    listing, watching or creating Namespaces is a 500 and a GET of one has no resource. This
    is why kopf's namespace observation failed (MACHINE-NOTES: "namespace listing returns
    500", hence ``--all-namespaces``). ``kmock._internal.parsing.parse_path`` is wrapped for
    these URLs only (process-wide, harmless to other kmock users); ``kopf run -n NS`` and
    ``-n 'glob*'`` work now (``run_operator(namespaces=[...])``).
2.  No ``metadata.uid``/``resourceVersion``/``creationTimestamp``/``generation`` on create
    (so no ``kopf.adopt``, no ownerReferences, no observedGeneration): filled on create;
    ``resourceVersion`` is one global counter bumped on every write; ``generation`` starts at
    1 and is bumped when anything but ``metadata`` (and ``status``, for resources with a
    status subresource) changes. Server-managed fields (uid, name, namespace,
    creationTimestamp, generation, resourceVersion, deletionTimestamp) cannot be patched.
3.  ``metadata.namespace`` is not filled from the URL, so the object is missing from
    namespaced watches: it is always set from the URL (a mismatching body namespace is 400).
    Cluster-scoped objects never carry one. ``apiVersion``/``kind`` are filled too.
4.  ``generateName`` is ignored (all of kopf's k8s Events would collide on one key, 409): a
    name is generated. Neither ``name`` nor ``generateName``: 422.
5.  Unknown resources are served anyway (objects of any plural are stored): 404 unless
    declared in the registry or created by posting a CRD (a CRD's served versions become
    resources, as in a real cluster).
6.  Status subresource not modelled (every patch patches everything): for resources declared
    with ``status``, PATCH/PUT on the main endpoint ignore ``status`` and ``.../status``
    ignores everything except ``status``; ``status`` is dropped on create. A subresource the
    resource lacks is 404.
7.  PUT (replace) answers 404: implemented, with the resourceVersion precondition (409).
8.  ``resourceVersion`` preconditions ignored: a merge patch or PUT carrying a stale
    ``metadata.resourceVersion`` is 409 Conflict; a failed JSON-patch ``test`` op is 422 (kopf
    relies on this for its optimistic finalizer patches), not 500.
9.  JSON merge patch: kmock refuses to replace a dict by a scalar (500); RFC 7386 here.
10. ``labelSelector``/``fieldSelector`` ignored on list and watch: both evaluated (equality,
    ``!=``, ``in``, ``notin``, ``key``, ``!key``; field selectors on any dotted path).
11. Watches ignore ``timeoutSeconds`` and ``resourceVersion`` and replay every object as ADDED
    on each connection, and kmock subscribes only after replaying (events in between are
    lost): watches here subscribe first, honour ``timeoutSeconds`` (the stream ends), resume
    from ``resourceVersion`` out of an event log (410 Gone once it is older than the log),
    send BOOKMARKs when ``allowWatchBookmarks=true`` (every ``bookmark_interval`` s) and the
    ``k8s.io/initial-events-end`` bookmark for ``sendInitialEvents=true``. Lists carry the
    current resourceVersion (kmock: ``"..."``), ``kind: <Kind>List`` and are sorted.
12. No garbage collector: deleting an object deletes (or marks, if it has finalizers) every
    object whose ownerReferences name it and no other live owner (``propagationPolicy:
    Orphan`` is honoured); deleting a Namespace deletes everything in it. Deletion
    preconditions (uid/resourceVersion) are checked. A PATCH that removes the last finalizer
    of an object being deleted deletes it (one DELETED event, as in Kubernetes).
13. Objects may be created in namespaces that do not exist: 404 as in Kubernetes (pass
    ``strict_namespaces=False`` to allow). ``default`` exists from the start.
14. DELETE on a collection answers 404: deletecollection implemented (with selectors).
15. A no-op patch (nothing changes) does not bump resourceVersion and emits no event.
16. Open watch streams would hold the server's shutdown for aiohttp's 60 s grace period:
    the harness ends them before stopping the server.

Not fixed (the operator and its tests must live with these):

* Strategic merge patch (the ``kubernetes`` client's default for ``patch_*`` with a dict) is
  applied as a JSON merge patch: lists are REPLACED, not merged by key (containers by name,
  ownerReferences by uid...). Send whole lists, or JSON patches. Server-side apply
  (``application/apply-patch+yaml``) is 415.
* No controllers: Deployments never get ReplicaSets or Pods, Pods never run, Services get no
  clusterIP, Namespaces are deleted at once (no Terminating phase). Tests create/patch the
  objects (and their ``status``, through ``subresource="status"``) themselves.
* No admission, no OpenAPI/CEL validation, no defaulting, no field pruning, no
  ``managedFields``; ``dryRun`` is ignored. Validate CR bodies against the CRD schema in unit
  tests (jsonschema), not here. ``generation`` is kept on every kind (Kubernetes leaves it
  unset on ConfigMaps and some others).
* Subresources other than ``status`` (``scale``, ``log``, ``exec``, ``eviction``) are not
  served; a GET on ``.../status`` returns the whole object (as Kubernetes does).
* No pagination: ``limit``/``continue`` are ignored, lists return everything.
* No RBAC/authentication: any token is accepted; tests cannot catch missing RBAC rules.
* ``kubectl`` mostly fails against kmock's discovery: drive everything through the Python
  client (``kube.api_client`` or the helpers below).
* kopf needs ``--standalone`` (no peering resources are declared; add
  ``kopf.dev/v1/clusterkopfpeerings``/``kopfpeerings`` to ``resources`` to test peering).
* The harness subclasses kmock internals (``_handle``, ``_objects``, ``_buses``, ``_lock``,
  ``parsing.parse_path``): re-check it when upgrading kmock past 0.8.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import json
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import kmock
import kmock._internal.parsing as kmock_parsing
import yaml

T = TypeVar("T")

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class ResourceSpec:
    """One served resource: what discovery announces and how the emulator treats it."""

    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    shortnames: tuple[str, ...] = ()
    singular: str = ""
    verbs: tuple[str, ...] = ALL_VERBS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def id(self) -> str:
        """``v1/configmaps``, ``apps/v1/deployments``: the notation the helpers accept."""
        return f"{self.api_version}/{self.plural}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if namespace is not None and self.namespaced:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


NAMESPACES = ResourceSpec("", "v1", "namespaces", "Namespace", False, ("status", "finalize"), ("ns",))
CONFIGMAPS = ResourceSpec("", "v1", "configmaps", "ConfigMap", True, (), ("cm",))
SERVICES = ResourceSpec("", "v1", "services", "Service", True, ("status", "proxy"), ("svc",))
PODS = ResourceSpec("", "v1", "pods", "Pod", True, ("status", "log", "exec", "eviction"), ("po",))
EVENTS = ResourceSpec("", "v1", "events", "Event", True, (), ("ev",))
DEPLOYMENTS = ResourceSpec("apps", "v1", "deployments", "Deployment", True, ("status", "scale"), ("deploy",))
CRDS = ResourceSpec(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
    ("status",), ("crd", "crds"),
)
RLEXPERIMENTS = ResourceSpec(
    "kuberl.dev", "v1alpha1", "rlexperiments", "RLExperiment", True, ("status",), ("rlx",),
    singular="rlexperiment",
)

DEFAULT_RESOURCES: tuple[ResourceSpec, ...] = (
    NAMESPACES, CONFIGMAPS, SERVICES, PODS, EVENTS, DEPLOYMENTS, CRDS, RLEXPERIMENTS,
)

ResourceRef = ResourceSpec | str


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _k8s_error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details={})


def _not_found(spec: ResourceSpec, name: str | None) -> kmock.KubernetesError:
    return _k8s_error(404, "NotFound", f'{spec.plural} "{name}" not found')


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (a new object; the inputs are not modified)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------- selectors

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_./]*"


def _split_requirements(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def label_selector_matcher(selector: str | None) -> Callable[[Mapping[str, str]], bool]:
    """A predicate over a labels dict, for the Kubernetes label-selector syntax."""
    if not selector:
        return lambda labels: True
    checks: list[Callable[[Mapping[str, str]], bool]] = []
    for req in _split_requirements(selector):
        if m := re.fullmatch(rf"({_KEY})\s+(in|notin)\s+\(([^)]*)\)", req):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if op == "in":
                checks.append(lambda lb, k=key, vs=values: k in lb and lb[k] in vs)
            else:
                checks.append(lambda lb, k=key, vs=values: k not in lb or lb[k] not in vs)
        elif m := re.fullmatch(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})", req):
            key, op, value = m.groups()
            if op == "!=":
                checks.append(lambda lb, k=key, v=value: lb.get(k) != v)
            else:
                checks.append(lambda lb, k=key, v=value: k in lb and lb[k] == v)
        elif m := re.fullmatch(rf"!\s*({_KEY})", req):
            absent = m.group(1)
            checks.append(lambda lb, k=absent: k not in lb)
        elif m := re.fullmatch(rf"({_KEY})", req):
            present = m.group(1)
            checks.append(lambda lb, k=present: k in lb)
        else:
            raise _k8s_error(400, "BadRequest", f"unable to parse requirement: {req!r}")
    return lambda labels: all(check(labels) for check in checks)


def field_selector_matcher(selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over a whole object, for ``metadata.name=x,status.phase!=Running``."""
    if not selector:
        return lambda obj: True
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for req in _split_requirements(selector):
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)", req)
        if not m:
            raise _k8s_error(400, "BadRequest", f"invalid field selector: {req!r}")
        path, op, value = m.groups()

        def lookup(obj: Mapping[str, Any], path: str = path) -> str:
            node: Any = obj
            for part in path.split("."):
                node = node.get(part) if isinstance(node, Mapping) else None
            return "" if node is None else str(node)

        if op == "!=":
            checks.append(lambda obj, f=lookup, v=value: f(obj) != v)
        else:
            checks.append(lambda obj, f=lookup, v=value: f(obj) == v)
    return lambda obj: all(check(obj) for check in checks)


# --------------------------------------------------------------------------- kmock's URL parser

_original_parse_path = kmock_parsing.parse_path


def _parse_path(path: str) -> kmock_parsing.ParsedPath:
    """kmock's parser, except for the core ``namespaces`` resource itself.

    kmock reads ``/api/v1/namespaces[/NAME[/status]]`` as a namespace prefix: the list raises
    (a 500), a GET of one namespace has no resource. These URLs name the Namespace objects.
    """
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "api" and parts[2] == "namespaces":
        rest = parts[3:]
        if len(rest) <= 1 or (len(rest) == 2 and rest[1] in ("status", "finalize")):
            return kmock_parsing.ParsedPath(
                group="", version=parts[1], plural="namespaces", namespace=None,
                name=rest[0] if rest else None, subresource=rest[1] if len(rest) == 2 else None,
            )
    return _original_parse_path(path)


kmock_parsing.parse_path = _parse_path  # module-global, looked up at each request by kmock


# --------------------------------------------------------------------------- the emulator

ObjectKey = tuple[Any, str | None, str]  # (kmock.resource, namespace, name)


@attrs.define(kw_only=True)
class StrictEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the server-side behaviour listed in the module doc."""

    strict_namespaces: bool = True
    bookmark_interval: float = 15.0
    event_history: int = 10_000

    _specs: dict[tuple[str, str, str], ResourceSpec] = attrs.field(factory=dict, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _logs: dict[Any, collections.deque[tuple[int, dict[str, Any]]]] = attrs.field(factory=dict, init=False)
    _closing: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _watchers: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)

    # ---- registry

    def register(self, spec: ResourceSpec) -> None:
        self._specs[(spec.group, spec.version, spec.plural)] = spec
        self.resources[kmock.resource(spec.group, spec.version, spec.plural)] = kmock.ResourceInfo(
            kind=spec.kind,
            singular=spec.singular or spec.kind.lower(),
            namespaced=spec.namespaced,
            verbs=set(spec.verbs),
            shortnames=set(spec.shortnames),
            subresources=set(spec.subresources),
        )

    def spec_of(self, resource: Any) -> ResourceSpec | None:
        return self._specs.get((resource.group, resource.version, resource.plural))

    @staticmethod
    def _res(spec: ResourceSpec) -> Any:
        return kmock.resource(spec.group, spec.version, spec.plural)

    def watchers(self, spec: ResourceSpec) -> int:
        return self._watchers[spec.id]

    def close_watches(self) -> None:
        self._closing.set()

    # ---- the request entry point

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None or res.version is None or res.plural is None:
            return await kmock.RawHandler._handle(self, request)  # discovery, /version, non-k8s
        spec = self.spec_of(res)
        if spec is None:
            raise _k8s_error(404, "NotFound", f"the server could not find the requested resource ({res.group}/{res.version}/{res.plural})")
        if spec.namespaced is False and request.namespace is not None:
            raise _k8s_error(404, "NotFound", f"{spec.plural} is cluster-scoped; no namespaces in its URLs")
        if request.subresource and request.subresource not in spec.subresources:
            raise _k8s_error(404, "NotFound", f"{spec.plural} has no subresource {request.subresource!r}")
        if request.name is not None and spec.namespaced and request.namespace is None:
            raise _k8s_error(404, "NotFound", f"{spec.plural} is namespaced: use /namespaces/NS/... URLs")

        action, method = request.action, request.method
        if action in (kmock.action.LIST, kmock.action.WATCH, kmock.action.FETCH):
            pass  # served by the (overridden) fallbacks
        elif action == kmock.action.CREATE:
            if request.subresource:
                raise _k8s_error(405, "MethodNotAllowed", "POST to a subresource is not supported")
            async with self._lock:
                stored = await self._create(spec, request.namespace, request.data)
            if isinstance(request.data, dict):  # let kmock's _serve_create find a generated name
                request.data.setdefault("metadata", {})["name"] = stored["metadata"]["name"]
        elif action == kmock.action.UPDATE:
            async with self._lock:
                await self._patch(spec, request)
        elif action == kmock.action.DELETE:
            async with self._lock:
                await self._delete(spec, request.namespace, request.name, request.data, request.params)
        elif method == kmock.method.PUT and request.name is not None:
            async with self._lock:
                replaced = await self._replace(spec, request)
            return aiohttp.web.json_response(replaced)
        elif method == kmock.method.DELETE and request.name is None:
            async with self._lock:
                await self._delete_collection(spec, request)
            return aiohttp.web.json_response(
                {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}
            )
        else:
            raise _k8s_error(405, "MethodNotAllowed", f"{method} is not supported on {request.url.path}")
        return await kmock.RawHandler._handle(self, request)

    # ---- store primitives (callers hold self._lock)

    def _get(self, spec: ResourceSpec, namespace: str | None, name: str | None) -> dict[str, Any] | None:
        key = (self._res(spec), namespace if spec.namespaced else None, name)
        if name is None or key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _put(self, spec: ResourceSpec, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (self._res(spec), meta.get("namespace"), meta["name"])
        if key in self._objects:
            self._objects[key].history.append(copy.deepcopy(obj))
        else:
            self._objects[key] = copy.deepcopy(obj)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    async def _emit(self, spec: ResourceSpec, kind: str, obj: dict[str, Any]) -> None:
        res = self._res(spec)
        event = {"type": kind, "object": copy.deepcopy(obj)}
        log = self._logs.setdefault(res, collections.deque(maxlen=self.event_history))
        log.append((int(obj["metadata"]["resourceVersion"]), event))
        await self._buses[res].put(event)

    def _live_objects(self) -> Iterator[tuple[ResourceSpec, dict[str, Any]]]:
        for (res, _ns, _name), obj in list(self._objects.items()):
            spec = self.spec_of(res)
            if spec is not None and not obj.deleted:
                yield spec, obj.raw

    # ---- create

    async def _create(self, spec: ResourceSpec, url_namespace: str | None, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _k8s_error(400, "BadRequest", "the request body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.get("metadata") or {}
        obj["metadata"] = meta
        if obj.get("apiVersion", spec.api_version) != spec.api_version or obj.get("kind", spec.kind) != spec.kind:
            raise _k8s_error(400, "BadRequest", f"expected {spec.api_version} {spec.kind}, got {obj.get('apiVersion')} {obj.get('kind')}")
        obj["apiVersion"], obj["kind"] = spec.api_version, spec.kind

        if spec.namespaced:
            if url_namespace is None:
                raise _k8s_error(405, "MethodNotAllowed", f"{spec.plural} is namespaced: POST to /namespaces/NS/{spec.plural}")
            if meta.get("namespace") not in (None, "", url_namespace):
                raise _k8s_error(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = url_namespace
            if self.strict_namespaces and self._get(NAMESPACES, None, url_namespace) is None:
                raise _k8s_error(404, "NotFound", f'namespaces "{url_namespace}" not found')
        else:
            meta.pop("namespace", None)

        if meta.get("resourceVersion"):
            raise _k8s_error(422, "Invalid", "metadata.resourceVersion: must not be set on objects to be created")
        name = meta.get("name")
        if not name and meta.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            while not name or self._get(spec, meta.get("namespace"), name) is not None:
                name = meta["generateName"] + "".join(random.choices(alphabet, k=5))
        if not name:
            raise _k8s_error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
        meta["name"] = name
        if self._get(spec, meta.get("namespace"), name) is not None:
            raise _k8s_error(409, "AlreadyExists", f'{spec.plural} "{name}" already exists')

        for server_managed in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(server_managed, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_rv()
        if "status" in spec.subresources:
            obj.pop("status", None)
        if spec.id == NAMESPACES.id:
            obj["status"] = {"phase": "Active"}

        self._put(spec, obj)
        await self._emit(spec, "ADDED", obj)
        if spec.group == CRDS.group and spec.plural == CRDS.plural:
            self._register_crd(obj)
        return obj

    def _register_crd(self, crd: Mapping[str, Any]) -> None:
        crd_spec = crd.get("spec", {})
        names = crd_spec.get("names", {})
        for version in crd_spec.get("versions", []):
            if version.get("served", True):
                self.register(ResourceSpec(
                    group=crd_spec["group"], version=version["name"], plural=names["plural"],
                    kind=names["kind"], namespaced=crd_spec.get("scope", "Namespaced") == "Namespaced",
                    subresources=tuple(version.get("subresources", {}) or {}),
                    shortnames=tuple(names.get("shortNames", [])),
                    singular=names.get("singular", ""),
                ))

    # ---- update (PATCH, PUT)

    def _settle(self, spec: ResourceSpec, subresource: str | None, old: dict[str, Any], new: Any) -> dict[str, Any]:
        """Apply status-subresource rules and keep server-managed fields; return the new object."""
        if not isinstance(new, dict) or not isinstance(new.get("metadata", {}), dict):
            raise _k8s_error(422, "Invalid", "the patched object is not a Kubernetes object")
        if "status" in spec.subresources:
            if subresource == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                new.pop("status", None)
                if status is not None:
                    new["status"] = status
            else:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        meta = new.setdefault("metadata", {})
        for key in ("uid", "name", "namespace", "creationTimestamp", "generation", "resourceVersion",
                    "deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
            else:
                meta.pop(key, None)
        return new

    async def _commit_update(self, spec: ResourceSpec, old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        if new == old:
            return old  # a no-op: no new resourceVersion, no event (as in Kubernetes)

        def essence(obj: Mapping[str, Any]) -> dict[str, Any]:
            skip = {"metadata", "status"} if "status" in spec.subresources else {"metadata"}
            return {k: v for k, v in obj.items() if k not in skip}

        if essence(new) != essence(old):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._put(spec, new)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            await self._erase(spec, new)  # the last finalizer is gone: one DELETED event
        else:
            await self._emit(spec, "MODIFIED", new)
        return new

    async def _patch(self, spec: ResourceSpec, request: kmock.Request) -> dict[str, Any]:
        old = self._get(spec, request.namespace, request.name)
        if old is None:
            raise _not_found(spec, request.name)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        patch = request.data
        if content_type == "application/apply-patch+yaml":
            raise _k8s_error(415, "UnsupportedMediaType", "server-side apply is not emulated")
        if content_type == "application/json-patch+json" or isinstance(patch, list):
            try:
                new = jsonpatch.apply_patch(old, patch, in_place=False)
            except jsonpatch.JsonPatchTestFailed as e:
                raise _k8s_error(422, "Invalid", f"the JSON patch test failed: {e}") from e
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                raise _k8s_error(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
        elif isinstance(patch, dict):
            wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted_rv is not None and wanted_rv != old["metadata"]["resourceVersion"]:
                raise _k8s_error(409, "Conflict", f'Operation cannot be fulfilled on {spec.plural} "{request.name}": the object has been modified; please apply your changes to the latest version and try again')
            new = merge_patch(old, patch)
        else:
            raise _k8s_error(400, "BadRequest", "the patch must be a JSON object or a JSON-patch list")
        return await self._commit_update(spec, old, self._settle(spec, request.subresource, old, new))

    async def _replace(self, spec: ResourceSpec, request: kmock.Request) -> dict[str, Any]:
        old = self._get(spec, request.namespace, request.name)
        if old is None:
            raise _not_found(spec, request.name)
        body = request.data
        if not isinstance(body, dict):
            raise _k8s_error(400, "BadRequest", "the request body must be a JSON object")
        meta = body.get("metadata") or {}
        if meta.get("name") not in (None, request.name):
            raise _k8s_error(400, "BadRequest", "the name of the object does not match the name in the URL")
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv is not None and wanted_rv != old["metadata"]["resourceVersion"]:
            raise _k8s_error(409, "Conflict", f'Operation cannot be fulfilled on {spec.plural} "{request.name}": the object has been modified; please apply your changes to the latest version and try again')
        new = self._settle(spec, request.subresource, old, copy.deepcopy(body))
        return await self._commit_update(spec, old, new)

    # ---- delete

    async def _erase(self, spec: ResourceSpec, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = (self._res(spec), meta.get("namespace"), meta["name"])
        self._objects[key].delete()
        await self._emit(spec, "DELETED", obj)
        await self._collect_garbage(meta["uid"])
        if spec.id == NAMESPACES.id:
            for other_spec, other in list(self._live_objects()):
                if other_spec.namespaced and other["metadata"].get("namespace") == meta["name"]:
                    await self._delete_object(other_spec, copy.deepcopy(other))

    async def _delete_object(self, spec: ResourceSpec, obj: dict[str, Any], orphan: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return obj  # already being deleted
        meta["resourceVersion"] = self._next_rv()
        if meta.get("finalizers"):
            meta["deletionTimestamp"] = _now()
            meta["deletionGracePeriodSeconds"] = 0
            self._put(spec, obj)
            await self._emit(spec, "MODIFIED", obj)
        else:
            self._put(spec, obj)  # the last seen state, which the DELETE answer returns
            if orphan:
                key = (self._res(spec), meta.get("namespace"), meta["name"])
                self._objects[key].delete()
                await self._emit(spec, "DELETED", obj)
            else:
                await self._erase(spec, obj)
        return obj

    async def _collect_garbage(self, owner_uid: str) -> None:
        alive = {o["metadata"]["uid"] for _, o in self._live_objects()}
        for spec, obj in list(self._live_objects()):
            refs = obj["metadata"].get("ownerReferences") or []
            other_owners_alive = any(ref.get("uid") in alive for ref in refs if ref.get("uid") != owner_uid)
            if any(ref.get("uid") == owner_uid for ref in refs) and not other_owners_alive:
                await self._delete_object(spec, copy.deepcopy(obj))

    async def _delete(self, spec: ResourceSpec, namespace: str | None, name: str | None,
                      options: Any, params: Mapping[str, str]) -> dict[str, Any]:
        obj = self._get(spec, namespace, name)
        if obj is None:
            raise _not_found(spec, name)
        options = options if isinstance(options, dict) else {}
        preconditions = options.get("preconditions") or {}
        for field_name in ("uid", "resourceVersion"):
            wanted = preconditions.get(field_name)
            if wanted is not None and wanted != obj["metadata"].get(field_name):
                raise _k8s_error(409, "Conflict", f"Precondition failed: {field_name} in precondition: {wanted}, {field_name} in object meta: {obj['metadata'].get(field_name)}")
        policy = options.get("propagationPolicy") or params.get("propagationPolicy")
        orphan = policy == "Orphan" or options.get("orphanDependents") is True
        return await self._delete_object(spec, obj, orphan=orphan)

    async def _delete_collection(self, spec: ResourceSpec, request: kmock.Request) -> None:
        labels = label_selector_matcher(request.params.get("labelSelector"))
        fields = field_selector_matcher(request.params.get("fieldSelector"))
        for other_spec, obj in list(self._live_objects()):
            if other_spec != spec:
                continue
            if request.namespace is not None and obj["metadata"].get("namespace") != request.namespace:
                continue
            if labels(obj["metadata"].get("labels") or {}) and fields(obj):
                await self._delete_object(spec, copy.deepcopy(obj))

    # ---- reads (kmock fallbacks, overridden)

    def _selector(self, request: kmock.Request) -> Callable[[Mapping[str, Any]], bool]:
        labels = label_selector_matcher(request.params.get("labelSelector"))
        fields = field_selector_matcher(request.params.get("fieldSelector"))

        def selected(obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            if request.namespace is not None and meta.get("namespace") != request.namespace:
                return False
            if request.name is not None and meta.get("name") != request.name:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        return selected

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        spec = self.spec_of(request.resource)
        if spec is None:  # only when a user reaction bypasses _handle's check
            raise kmock.KubernetesResourceNotFoundError()
        selected = self._selector(request)
        async with self._lock:
            items = [copy.deepcopy(o) for s, o in self._live_objects() if s == spec and selected(o)]
            rv = str(self._rv)
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        return {"apiVersion": spec.api_version, "kind": f"{spec.kind}List",
                "metadata": {"resourceVersion": rv}, "items": items}

    async def _serve_watch(self, request: kmock.Request):  # type: ignore[override]
        spec = self.spec_of(request.resource)
        if spec is None:
            raise kmock.KubernetesResourceNotFoundError()
        selected = self._selector(request)  # raises 400 before the stream starts
        params = request.params
        since = params.get("resourceVersion") or None
        if since is not None and not since.isdigit():
            raise _k8s_error(400, "BadRequest", f"invalid resourceVersion: {since!r}")
        initial = since in (None, "0") or params.get("sendInitialEvents") == "true"
        bookmarks = params.get("allowWatchBookmarks") == "true"
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        res = self._res(spec)
        bus = self._buses[res]

        def bookmark(end_of_initial: bool = False) -> dict[str, Any]:
            meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
            if end_of_initial:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return {"type": "BOOKMARK", "object": {"apiVersion": spec.api_version, "kind": spec.kind, "metadata": meta}}

        yield b""  # send the headers now (as kmock does), even if no event follows
        async with self._lock:  # subscribe and snapshot atomically: no event falls in between
            marker = await bus.mark()
            if initial:
                current = sorted((o for s, o in self._live_objects() if s == spec),
                                 key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
                replay = [{"type": "ADDED", "object": copy.deepcopy(o)} for o in current]
            else:
                log = self._logs.get(res, collections.deque())
                floor = log[0][0] - 1 if len(log) == log.maxlen else 0
                if int(since) < floor:
                    replay = [{"type": "ERROR", "object": {
                        "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                        "code": 410, "reason": "Expired", "message": f"too old resource version: {since} ({floor})"}}]
                else:
                    replay = [event for rv, event in log if rv > int(since)]
            end_bookmark = bookmark(end_of_initial=True) if params.get("sendInitialEvents") == "true" else None

        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def pump() -> None:
            async for event in bus.stream(since=marker):
                queue.put_nowait(event)

        pumping = asyncio.create_task(pump())
        closing = asyncio.create_task(self._closing.wait())
        getting: asyncio.Future[dict[str, Any]] | None = None
        self._watchers[spec.id] += 1
        try:
            for event in replay:
                if event["type"] == "ERROR":
                    yield event
                    return
                if selected(event["object"]):
                    yield event
            if end_bookmark is not None:
                yield end_bookmark
            while not self._closing.is_set():
                wait = self.bookmark_interval if bookmarks else None
                if deadline is not None:
                    left = deadline - loop.time()
                    if left <= 0:
                        return
                    wait = left if wait is None else min(wait, left)
                if getting is None:
                    getting = asyncio.ensure_future(queue.get())
                await asyncio.wait({getting, closing}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    if bookmarks and not self._closing.is_set() and (deadline is None or deadline > loop.time()):
                        yield bookmark()
                    continue
                event, getting = getting.result(), None
                if selected(event["object"]):
                    yield event
        finally:
            self._watchers[spec.id] -= 1
            for task in (pumping, closing, getting):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping
            with contextlib.suppress(Exception):
                await bus.unmark(marker)

    # ---- direct (non-HTTP) access, used for seeding

    async def seed(self, spec: ResourceSpec, body: Mapping[str, Any]) -> dict[str, Any]:
        async with self._lock:
            return await self._create(spec, (body.get("metadata") or {}).get("namespace"), dict(body))

    async def snapshot(self) -> list[dict[str, Any]]:
        async with self._lock:
            return [copy.deepcopy(o) for _, o in self._live_objects()]


# --------------------------------------------------------------------------- the thread + clients


def wait_for(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, message: str = ""
) -> T:
    """Poll ``condition()`` until it returns something truthy; return that.

    Exceptions raised by ``condition`` (a 404, a failing assert) count as "not yet"; on timeout
    an AssertionError names the last value and chains the last exception.
    """
    deadline = time.monotonic() + timeout
    last_value: Any = None
    last_error: BaseException | None = None
    while True:
        try:
            last_value = condition()
            last_error = None
            if last_value:
                return last_value
        except Exception as e:  # noqa: BLE001 - "not yet", reported on timeout
            last_error = e
        if time.monotonic() >= deadline:
            what = message or getattr(condition, "__name__", repr(condition))
            raise AssertionError(
                f"timed out after {timeout:.1f}s waiting for {what}; last value: {last_value!r}"
                + (f"; last error: {last_error!r}" if last_error else "")
            ) from last_error
        time.sleep(interval)


@dataclass
class KubeAPI:
    """The emulated API server in a background thread, plus clients for it.

    Attributes once entered: ``url``, ``kubeconfig_path``, ``api_client`` (a
    ``kubernetes.client.ApiClient`` of its own), ``emulator`` (the :class:`StrictEmulator`;
    touch it only through :meth:`call`, it lives on the server thread's loop).
    """

    resources: Iterable[ResourceSpec] = DEFAULT_RESOURCES
    namespaces: Iterable[str] = ("default",)
    strict_namespaces: bool = True
    bookmark_interval: float = 15.0
    host: str = "127.0.0.1"

    url: str = field(default="", init=False)
    kubeconfig_path: Path = field(default=Path(), init=False)
    api_client: Any = field(default=None, init=False)
    emulator: StrictEmulator | None = field(default=None, init=False)
    _specs: dict[str, ResourceSpec] = field(default_factory=dict, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _stop: asyncio.Event | None = field(default=None, init=False)
    _ready: threading.Event = field(default_factory=threading.Event, init=False)
    _error: BaseException | None = field(default=None, init=False)
    _tmpdir: Any = field(default=None, init=False)
    _restore: contextlib.ExitStack | None = field(default=None, init=False)

    # ---- lifecycle

    def __enter__(self) -> Self:
        for spec in self.resources:
            self._specs[spec.id] = spec
        self._thread = threading.Thread(target=self._thread_main, name="kube-api", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=10) or self._error is not None:
            raise RuntimeError("the emulated Kubernetes API did not start") from self._error
        try:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="kube-api-")
            self.kubeconfig_path = Path(self._tmpdir.name) / "kubeconfig"
            self.kubeconfig_path.write_text(yaml.safe_dump(self.kubeconfig()))
            self._restore = contextlib.ExitStack()
            self._restore.enter_context(self._point_clients_here())
            import kubernetes.config

            self.api_client = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig_path))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.api_client is not None:
            self.api_client.close()
            self.api_client = None
        if self._restore is not None:
            self._restore.close()
            self._restore = None
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                raise RuntimeError("the emulated Kubernetes API did not stop within 15 s")
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # noqa: BLE001 - reported to the starting thread
            self._error = e
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        emulator = StrictEmulator(strict_namespaces=self.strict_namespaces, bookmark_interval=self.bookmark_interval)
        for spec in self._specs.values():
            emulator.register(spec)
        if NAMESPACES.id not in self._specs:
            emulator.register(NAMESPACES)
        async with emulator, kmock.Server(emulator, host=self.host) as server:
            for namespace in self.namespaces:
                await emulator.seed(NAMESPACES, {"metadata": {"name": namespace}})
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()
            emulator.close_watches()  # end open watch streams so that the server stops at once
            await asyncio.sleep(0.05)

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "kmock-test-token"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": "default"}}],
            "current-context": "kmock",
        }

    @contextlib.contextmanager
    def _point_clients_here(self) -> Iterator[None]:
        """KUBECONFIG and the kubernetes client's import-time copies of it, then the default
        Configuration; all restored afterwards."""
        import kubernetes.client
        import kubernetes.config
        from kubernetes.config import kube_config

        saved_env = {k: os.environ.get(k) for k in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "NO_PROXY", "no_proxy")}
        saved_locations = (kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION, kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
        saved_default = getattr(kubernetes.client.Configuration, "_default", None)
        try:
            os.environ["KUBECONFIG"] = str(self.kubeconfig_path)
            os.environ.pop("KUBERNETES_SERVICE_HOST", None)
            os.environ.pop("KUBERNETES_SERVICE_PORT", None)
            for var in ("NO_PROXY", "no_proxy"):
                os.environ[var] = ",".join(filter(None, [os.environ.get(var), self.host, "localhost"]))
            kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION = str(self.kubeconfig_path)
            kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(self.kubeconfig_path)
            kubernetes.config.load_kube_config(config_file=str(self.kubeconfig_path))
            yield
        finally:
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION, kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved_locations
            kubernetes.client.Configuration._default = saved_default

    # ---- server-side access

    def call(self, fn: Callable[[StrictEmulator], Any], timeout: float = 10.0) -> Any:
        """Run ``fn(emulator)`` (a coroutine function or a plain one) on the server's loop."""
        assert self._loop is not None and self.emulator is not None

        async def run() -> Any:
            result = fn(self.emulator)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every live object in the store (deep copies), straight from memory."""
        return self.call(lambda emulator: emulator.snapshot())

    def watchers(self, resource: ResourceRef) -> int:
        """How many watch streams are open on a resource (kopf opens one per watched resource)."""
        spec = self.spec(resource)
        return self.call(lambda emulator: emulator.watchers(spec))

    def request_log(self) -> list[tuple[str, str]]:
        """``(METHOD, path)`` of every request served so far, in order (kmock records them all)."""
        return self.call(lambda emulator: [(str(r.method.value), r.url.path) for r in list(emulator)])

    def wait_for(self, condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, message: str = "") -> T:
        return wait_for(condition, timeout=timeout, interval=interval, message=message)

    # ---- client helpers: raw REST through the official client's ApiClient

    def spec(self, resource: ResourceRef) -> ResourceSpec:
        if isinstance(resource, ResourceSpec):
            return resource
        if resource in self._specs:
            return self._specs[resource]
        for spec in self._specs.values():  # also "configmaps", "rlexperiments.kuberl.dev"
            if resource in (spec.plural, f"{spec.plural}.{spec.group}", f"{spec.plural}.{spec.version}.{spec.group}"):
                return spec
        if self.emulator is not None:  # registered later, e.g. by posting a CRD
            for spec in self.call(lambda emulator: list(emulator._specs.values())):
                if resource in (spec.id, spec.plural, f"{spec.plural}.{spec.group}"):
                    return spec
        raise KeyError(f"unknown resource {resource!r}; declare it in KubeAPI(resources=...)")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Any:
        """One REST call; returns the decoded JSON or raises ``kubernetes.client.ApiException``."""
        from kubernetes.client.exceptions import ApiException

        client = self.api_client
        headers = {"Accept": "application/json", "Content-Type": content_type}
        query_params = [(k, v) for k, v in (query or {}).items() if v is not None]
        if hasattr(client, "param_serialize"):  # kubernetes >= 36 (openapi-generator 7 layout)
            method, url, headers, body, post = client.param_serialize(
                method=method, resource_path=path, query_params=query_params,
                header_params=headers, body=body, auth_settings=["BearerToken"],
            )
            response = client.call_api(method, url, header_params=headers, body=body, post_params=post)
            response.read()
            if not 200 <= response.status <= 299:
                raise ApiException(http_resp=response)
            return json.loads(response.data) if response.data else None
        return client.call_api(  # older clients
            path, method, query_params=query_params, header_params=headers, body=body,
            response_type="object", auth_settings=["BearerToken"],
            _return_http_data_only=True, _preload_content=True,
        )

    def _ns(self, spec: ResourceSpec, namespace: str | None, body: Mapping[str, Any] | None = None) -> str | None:
        if not spec.namespaced:
            return None
        return namespace or ((body or {}).get("metadata") or {}).get("namespace") or "default"

    def create(self, resource: ResourceRef, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        spec = self.spec(resource)
        full = {"apiVersion": spec.api_version, "kind": spec.kind, **copy.deepcopy(dict(body))}
        return self.request("POST", spec.path(self._ns(spec, namespace, body)), full)

    def get(self, resource: ResourceRef, name: str, namespace: str | None = None, subresource: str | None = None) -> dict[str, Any]:
        spec = self.spec(resource)
        return self.request("GET", spec.path(self._ns(spec, namespace), name, subresource))

    def get_or_none(self, resource: ResourceRef, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.get(resource, name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(self, resource: ResourceRef, namespace: str | None = None, *, all_namespaces: bool = False,
             label_selector: str | None = None, field_selector: str | None = None) -> list[dict[str, Any]]:
        spec = self.spec(resource)
        ns = None if all_namespaces else self._ns(spec, namespace)
        answer = self.request("GET", spec.path(ns), query={"labelSelector": label_selector, "fieldSelector": field_selector})
        return answer["items"]

    def patch(self, resource: ResourceRef, name: str, patch: Any, namespace: str | None = None, *,
              subresource: str | None = None, patch_type: str = "merge") -> dict[str, Any]:
        """``patch_type``: ``merge`` (RFC 7386), ``json`` (RFC 6902 list) or ``strategic``."""
        spec = self.spec(resource)
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[patch_type]
        return self.request("PATCH", spec.path(self._ns(spec, namespace), name, subresource), patch, content_type=content_type)

    def replace(self, resource: ResourceRef, name: str, body: Mapping[str, Any], namespace: str | None = None, *,
                subresource: str | None = None) -> dict[str, Any]:
        spec = self.spec(resource)
        return self.request("PUT", spec.path(self._ns(spec, namespace, body), name, subresource), dict(body))

    def delete(self, resource: ResourceRef, name: str, namespace: str | None = None, *,
               propagation_policy: str | None = None) -> dict[str, Any]:
        spec = self.spec(resource)
        body = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        return self.request("DELETE", spec.path(self._ns(spec, namespace), name), body)

    def create_namespace(self, name: str) -> dict[str, Any]:
        return self.create(NAMESPACES, {"metadata": {"name": name}})

    def wait_for_object(self, resource: ResourceRef, name: str, namespace: str | None = None,
                        predicate: Callable[[dict[str, Any]], Any] = bool, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until the object exists and ``predicate(obj)`` is truthy; return the object."""

        def check() -> dict[str, Any] | None:
            obj = self.get_or_none(resource, name, namespace)
            return obj if obj is not None and predicate(obj) else None

        return wait_for(check, timeout=timeout, message=f"{self.spec(resource).id} {namespace or ''}/{name}")

    def wait_gone(self, resource: ResourceRef, name: str, namespace: str | None = None, timeout: float = 10.0) -> None:
        wait_for(lambda: self.get_or_none(resource, name, namespace) is None, timeout=timeout,
                 message=f"{self.spec(resource).id} {namespace or ''}/{name} to be gone")


# --------------------------------------------------------------------------- the operator


@contextlib.contextmanager
def run_operator(
    *paths: str | os.PathLike[str],
    modules: Iterable[str] = (),
    namespaces: Iterable[str] = (),
    extra_args: Iterable[str] = (),
    settings: Any = None,
    timeout: float = 30.0,
) -> Iterator[Any]:
    """Run a kopf operator (files or modules) in a thread against the current KUBECONFIG.

    A ``kopf.testing.KopfRunner`` with ``run --standalone --verbose`` and ``--all-namespaces``
    (or ``-n`` for each of ``namespaces``, globs allowed) and a fresh registry, so that loading
    the same operator in several tests does not register its handlers twice. A public
    ``kopf.OperatorRegistry`` has no login handlers (kopf's default registry is a private
    subclass that adds them), so ``kopf.login_via_client`` is registered on it. Enter this
    inside :class:`KubeAPI`. If the block fails, the operator's log is printed (pytest shows
    it with the failure). While it runs, click's runner has swapped ``sys.stdout``: a
    ``print()`` in the test lands in ``runner.output``, not in pytest's capture.
    """
    import kopf
    from kopf.testing import KopfRunner

    namespaces = list(namespaces)
    scope = [arg for ns in namespaces for arg in ("-n", ns)] or ["--all-namespaces"]
    args = ["run", "--standalone", "--verbose", *scope, *extra_args]
    for module in modules:
        args += ["-m", module]
    args += [str(path) for path in paths]
    # kopf's own default registry is a SmartOperatorRegistry (private) that comes with the login
    # handlers; a plain public OperatorRegistry has none, so add the kubernetes-client login.
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry, id="login_via_client")(kopf.login_via_client)
    runner = KopfRunner(args, registry=registry, settings=settings, timeout=timeout)
    failed = False
    try:
        with runner:
            try:
                yield runner
            except BaseException:
                failed = True
                raise
    finally:
        if runner.future.done():
            with contextlib.suppress(Exception):
                if failed or runner.exception is not None:
                    print("----- kopf operator output -----\n" + runner.output)
