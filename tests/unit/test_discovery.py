import pytest

import kuberl.discovery as discovery
from kuberl.discovery import Discovery, parse_target, resolve


@pytest.mark.parametrize("target", ["nohost", "h:0", "h:99999", "", " , ", ":80", "h:", "h:-1", "h:8o",
                                    "a:1,nohost"])
def test_parse_target_refuses(target):
    with pytest.raises(ValueError):
        parse_target(target)


def test_parse_target_names_the_bad_entry():
    with pytest.raises(ValueError, match="'h:0'"):
        parse_target("ok:1, h:0")


def test_parse_target_accepts_lists_and_ipv6():
    assert parse_target("a:1, b.svc:65535,") == [("a", 1), ("b.svc", 65535)]
    assert parse_target("[::1]:50051") == [("::1", 50051)]
    assert parse_target(" 10.0.0.1:80 ") == [("10.0.0.1", 80)]


def test_resolve_localhost():
    assert "127.0.0.1:1234" in resolve("localhost:1234")


def test_resolve_static_list():
    assert resolve("127.0.0.2:7,127.0.0.1:7") == ["127.0.0.1:7", "127.0.0.2:7"]
    assert resolve("127.0.0.1:7,127.0.0.1:7") == ["127.0.0.1:7"]  # duplicates collapse


def test_resolve_ipv6_literal_is_bracketed():
    assert resolve("[::1]:9") == ["[::1]:9"]


def test_resolve_unresolvable_name_gives_nothing():
    assert resolve("no-such-host.invalid:80") == []
    assert resolve("no-such-host.invalid:80,127.0.0.1:80") == ["127.0.0.1:80"]


def test_discovery_refuses_bad_target_up_front():
    with pytest.raises(ValueError):
        Discovery("nohost")


def scripted(monkeypatch, answers):
    calls = []

    def fake(target):
        calls.append(target)
        return list(answers.pop(0))

    monkeypatch.setattr(discovery, "resolve", fake)
    return calls


def test_discovery_keeps_last_known_list(monkeypatch):
    calls = scripted(monkeypatch, [["10.0.0.1:1", "10.0.0.2:1"], [], ["10.0.0.3:1"], []])
    d = Discovery("svc:1", refresh_seconds=0)
    assert d.addresses() == ["10.0.0.1:1", "10.0.0.2:1"]
    assert d.addresses() == ["10.0.0.1:1", "10.0.0.2:1"]  # resolution found nothing: kept
    assert d.addresses() == ["10.0.0.3:1"]  # a new non-empty answer replaces it
    assert d.addresses() == ["10.0.0.3:1"]
    assert calls == ["svc:1"] * 4


def test_discovery_starts_empty_when_nothing_resolves(monkeypatch):
    scripted(monkeypatch, [[], ["10.0.0.1:1"]])
    d = Discovery("svc:1", refresh_seconds=0)
    assert d.addresses() == []
    assert d.addresses() == ["10.0.0.1:1"]


def test_discovery_caches_within_refresh_interval(monkeypatch):
    calls = scripted(monkeypatch, [["10.0.0.1:1"], ["10.0.0.2:1"]])
    d = Discovery("svc:1", refresh_seconds=3600)
    assert d.addresses() == ["10.0.0.1:1"]
    assert d.addresses() == ["10.0.0.1:1"]
    assert len(calls) == 1


def test_discovery_returns_a_copy(monkeypatch):
    scripted(monkeypatch, [["10.0.0.1:1"]])
    d = Discovery("svc:1", refresh_seconds=3600)
    d.addresses().append("junk")
    assert d.addresses() == ["10.0.0.1:1"]


def test_free_ports_are_outside_the_ephemeral_range_distinct_and_not_listened_on(monkeypatch):
    import socket

    import kuberl.local as local
    low, high = local.listen_port_range()
    ports = [local.free_port() for _ in range(100)]
    assert len(set(ports)) == 100
    assert all(low <= p < high <= 65536 for p in ports)
    with socket.socket() as held:
        held.bind((local.LOOPBACK, 0))
        held.listen()
        taken = held.getsockname()[1]
        # Two ports to choose from, one listened on: only the other can come back.
        monkeypatch.setattr(local, "listen_port_range", lambda: (taken, taken + 2))
        assert local.free_port() == taken + 1


def test_free_ports_come_from_the_range_the_environment_names(monkeypatch):
    import kuberl.local as local
    from kuberl.config import ConfigError

    monkeypatch.setenv("KUBERL_LISTEN_PORTS", "21000-21009")
    assert local.listen_port_range() == (21000, 21010)
    ports = {local.free_port() for _ in range(5)}
    assert ports <= set(range(21000, 21010)) and len(ports) == 5
    for bad in ("21000", "a-b", "22000-21000", "80-90", "60000-70000"):
        monkeypatch.setenv("KUBERL_LISTEN_PORTS", bad)
        with pytest.raises(ConfigError, match="KUBERL_LISTEN_PORTS"):
            local.listen_port_range()
