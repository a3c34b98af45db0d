"""Turns a role into its replica addresses.

A target is a comma-separated list of `host:port`. Every host is resolved with
`getaddrinfo` and every record it returns is a replica: a headless Service's DNS name (or a
Docker network alias) yields all pods behind it, an IP literal yields itself, so the same code
serves a cluster, Docker and a static loopback list. Results are re-resolved every
`refresh_seconds`, so replicas that come and go need no restart.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

log = logging.getLogger(__name__)


def parse_target(target: str) -> list[tuple[str, int]]:
    """['host:port', ...] -> [(host, port), ...]; ValueError naming the bad entry."""
    endpoints = []
    for entry in (part.strip() for part in target.split(",")):
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address {entry!r} is not host:port")
        endpoints.append((host.strip("[]"), int(port)))
    if not endpoints:
        raise ValueError(f"no address in {target!r}")
    return endpoints


def resolve(target: str) -> list[str]:
    """Every replica address behind a target, sorted, as `ip:port` (`[ip]:port` for IPv6)."""
    found: set[str] = set()
    for host, port in parse_target(target):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as err:
            log.debug("cannot resolve %s: %s", host, err)
            continue
        for family, _, _, _, sockaddr in infos:
            ip = sockaddr[0]
            found.add(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
    return sorted(found)


class Discovery:
    """The replicas of one role, re-resolved at most every `refresh_seconds`.

    When a resolution finds nothing (DNS hiccup, every pod restarting) the last known list is
    kept, so a transient failure never empties a client's view.
    """

    def __init__(self, target: str, refresh_seconds: float = 2.0):
        parse_target(target)  # refuse a malformed target now, not at first use
        self.target = target
        self.refresh_seconds = refresh_seconds
        self._addresses: list[str] = []
        self._resolved_at = float("-inf")
        self._lock = threading.Lock()

    def addresses(self) -> list[str]:
        with self._lock:
            if time.monotonic() - self._resolved_at >= self.refresh_seconds:
                fresh = resolve(self.target)
                if fresh and fresh != self._addresses:
                    log.info("%s -> %s", self.target, ", ".join(fresh))
                if fresh or not self._addresses:
                    self._addresses = fresh
                self._resolved_at = time.monotonic()
            return list(self._addresses)
