"""gRPC plumbing shared by every role: servers with health (and reflection when asked for)
behind mutual TLS and the authorization table, error mapping, cached client channels, and a
SIGTERM-aware serve loop.

A process has one TLS identity (`use_tls`): its servers present it and its clients dial with
it. Without one (`kuberl serve --insecure`, in-process tests) everything is plaintext and
unauthorized."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from kuberl.prometheus import ClientMetrics, ServerMetrics
from kuberl.roles import ROLE_OF_SERVICE
from kuberl.security import Authorizer, TlsFiles, receive_limit, server_name
from kuberl.sizes import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly to a replica that restarted (the default backoff grows to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class NotFound(LookupError):
    """An RPC named something (usually an experiment) this replica does not hold."""


class AlreadyExists(ValueError):
    """An RPC would create something that exists (and is still live)."""


class Unavailable(RuntimeError):
    """Something this role depends on (a database, another role) is down; retry later."""


class Exhausted(RuntimeError):
    """A bounded resource (queue, rate limit) is full; the caller should retry later."""


class FailedPrecondition(RuntimeError):
    """The request is valid but cannot be done in this state or mode (the message says what can)."""


def rpc_errors(method: Callable) -> Callable:
    """Maps a servicer method's exceptions to status codes: bad input -> INVALID_ARGUMENT,
    unknown names -> NOT_FOUND, live duplicates -> ALREADY_EXISTS, full queues ->
    RESOURCE_EXHAUSTED, a dependency down or a failed call to another role -> UNAVAILABLE, a
    request this mode cannot do -> FAILED_PRECONDITION;
    anything else is answered UNKNOWN by grpc. The server keeps serving."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except NotFound as err:
            context.abort(grpc.StatusCode.NOT_FOUND, str(err))
        except AlreadyExists as err:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, str(err))
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except Exhausted as err:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
        except Unavailable as err:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(err))
        except FailedPrecondition as err:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        except grpc.RpcError as err:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"a call to another role failed: {err.code().name}: "
                                                       f"{err.details()}")

    return wrapper


def require_experiment_id(experiment_id: str) -> str:
    if not experiment_id:
        raise ValueError("experiment_id: required")
    if len(experiment_id) > 128:
        raise ValueError("experiment_id: at most 128 characters")
    return experiment_id


_tls: TlsFiles | None = None
_reflection = False
_health_port: int | None = None


def use_tls(files: TlsFiles | None, reflection: bool = False, health_port: int | None = None) -> TlsFiles | None:
    """Sets this process's identity for the servers it starts and the calls it makes from now
    on (None: plaintext), whether its servers offer reflection, and a plaintext port that serves
    their health service alone (for probes that cannot present a certificate, as the kubelet's);
    returns the identity before."""
    global _tls, _reflection, _health_port
    before, _tls, _reflection, _health_port = _tls, files, reflection, health_port
    return before


# Requests in flight or queued per server beyond which new ones get RESOURCE_EXHAUSTED: a flood
# waits in no unbounded queue.
MAX_CONCURRENT_RPCS = 256


class Server:
    """One role's gRPC server, with the standard health service (NOT_SERVING until
    `set_serving`) and, when asked for, reflection. Served over mutual TLS with the
    authorization table checked before every handler, when this process has an identity.
    `add_servicer` is the generated add_XServicer_to_server."""

    def __init__(self, servicer: object, add_servicer: Callable[[Any, grpc.Server], None], file_descriptor: Any,
                 port: int, host: str = "127.0.0.1", max_workers: int = 32):
        tls = _tls
        self.service_names = [service.full_name for service in file_descriptor.services_by_name.values()]
        options = [(k, v) for k, v in CHANNEL_OPTIONS if k != "grpc.max_receive_message_length"]
        options.append(("grpc.max_receive_message_length", receive_limit(self.service_names)))
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options,
                                       interceptors=[ServerMetrics(), Authorizer()] if tls else [ServerMetrics()],
                                       maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
        add_servicer(servicer, self.grpc_server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        if _reflection:
            reflection.enable_server_reflection([*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME],
                                                self.grpc_server)
        address = f"{host}:{port}"
        self.port = (self.grpc_server.add_secure_port(address, tls.server_credentials()) if tls
                     else self.grpc_server.add_insecure_port(address))
        # Health only, no data, no writes: what a probe may reach without an identity.
        self.health_server: grpc.Server | None = None
        if _health_port is not None:
            self.health_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), maximum_concurrent_rpcs=16)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            if self.health_server.add_insecure_port(f"{host}:{_health_port}") == 0:
                raise OSError(f"cannot bind the health port {host}:{_health_port}")
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port}")
        self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)

    def _set_all(self, status: int) -> None:
        for name in ["", *self.service_names]:
            self.health.set(name, status)

    def start(self) -> None:
        self.grpc_server.start()
        if self.health_server is not None:
            self.health_server.start()

    def set_serving(self) -> None:
        self._set_all(health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float) -> None:
        self.health.enter_graceful_shutdown()
        if self.health_server is not None:
            self.health_server.stop(0)
        self.grpc_server.stop(grace).wait()


def stop_when_closed(fd: int) -> None:
    """SIGTERM to this process once the pipe `fd` reads end of file: its launcher held the other
    end, and a dead launcher's descriptors are closed by the kernel however it died (SIGKILL
    included), so its roles stop and snapshot instead of running on orphaned."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        log.info("launcher gone (its lifeline closed), shutting down")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()


def serve_until_signalled(server: Server, on_stop: Callable[[], None], grace: float = 5.0) -> None:
    """Serves until SIGTERM or SIGINT, then stops the role (on_stop) and drains RPCs within grace."""
    stopping = threading.Event()

    def handle(signum: int, _frame: Any) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    stopping.wait()
    on_stop()
    server.stop(grace)
    log.info("stopped")


_channels: dict[tuple[str, str, Any], grpc.Channel] = {}
_channels_lock = threading.Lock()

Stub = TypeVar("Stub")


def channel(address: str, role: str, tls: TlsFiles | None, options: tuple[tuple[str, Any], ...] = ()) -> grpc.Channel:
    """A new channel to a `role` server: plaintext, or TLS with `tls`'s identity, checking that
    the server's certificate is that role's whatever address was dialled."""
    if tls is None:
        raw = grpc.insecure_channel(address, options=[*CHANNEL_OPTIONS, *options])
    else:
        raw = grpc.secure_channel(address, tls.channel_credentials(), options=[
            *CHANNEL_OPTIONS, *options, ("grpc.ssl_target_name_override", server_name(role))])
    return grpc.intercept_channel(raw, ClientMetrics())


# The files are looked at at most once a second: a stub is made per call, a rotation takes days.
STAMP_SECONDS = 1.0
_stamp_seen: tuple[float, TlsFiles | None, tuple[float, ...]] = (-math.inf, None, ())


def _stamp(tls: TlsFiles) -> tuple[float, ...]:
    global _stamp_seen
    seen_at, seen_tls, stamp = _stamp_seen
    now = time.monotonic()
    if seen_tls != tls or now - seen_at >= STAMP_SECONDS:
        _stamp_seen = (now, tls, tls.stamp())
    return _stamp_seen[2]


def stub(stub_class: Callable[[grpc.Channel], Stub], address: str, role: str | None = None) -> Stub:
    """A stub on a process-wide cached channel to `address` (channels are costly, stubs cheap).
    The role served there follows from the stub's service; a health stub names it."""
    if role is None:
        role = ROLE_OF_SERVICE[stub_class.__name__.removesuffix("Stub")]
    tls = _tls
    # Rotated certificate files (a changed stamp) get a new channel; the old one's calls finish.
    with _channels_lock:
        key = (address, role, (tls.directory, _stamp(tls)) if tls else None)
        cached = _channels.get(key)
        if cached is None:
            cached = _channels[key] = channel(address, role, tls)
    return stub_class(cached)


def wait_until_serving(address: str, timeout: float, role: str) -> None:
    """Blocks until the `role` server's health service at address answers SERVING; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    health_stub = stub(health_pb2_grpc.HealthStub, address, role)
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            reply = health_stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError as err:
            last = err
        time.sleep(0.05)
    raise TimeoutError(f"{address} not serving after {timeout:.0f}s ({last})")
