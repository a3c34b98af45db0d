"""SQLite-only details of the metrics store: URLs and files. Behaviour shared with MySQL is
tested on both backends in tests/integration/test_analytics_backends.py."""

import pytest

from kuberl.analytics.core import Point, Query, open_store, redact_url
from kuberl.analytics.mysql import MySQLSettings


def points(exp="exp", metric="loss", steps=range(5), node=""):
    return [Point(exp, metric, float(s) / 2, s, timestamp=1000.0 + s, node_name=node) for s in steps]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_open_store_in_memory(url):
    store = open_store(url)
    store.write("n", "t", points(steps=[1, 2]))
    assert store.query(Query("exp", "loss"))[1] == 2
    store.close()
    assert open_store(url).query(Query("exp", "loss")) == ([], 0)  # nothing persisted


def test_open_store_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///rel/m.db")
    store.write("n", "t", points(steps=[1]))
    store.close()
    assert (tmp_path / "rel" / "m.db").exists()
    absolute = tmp_path / "abs" / "m.db"  # sqlite:////abs/path, as local.py builds it
    open_store(f"sqlite:///{absolute}").close()
    assert absolute.exists()


@pytest.mark.parametrize("url", ["postgres://x", "", "sqlite:/x.db", "mysql://host/db", "mysql://u@/db",
                                 "mysql://u@h/bad-name", "mysql://u@h:port/db"])
def test_open_store_refuses_bad_urls(url):
    with pytest.raises(ValueError, match="database URL"):
        open_store(url)


def test_passwords_never_show_in_urls_or_settings(tmp_path):
    assert redact_url("mysql://bob:s3cret@db:3306/x") == "mysql://bob:***@db:3306/x"
    assert redact_url("mysql://bob@db/x") == "mysql://bob@db/x"
    secret = tmp_path / "password"
    secret.write_text("from-a-secret\n")
    settings = MySQLSettings.from_url("mysql://bob@db:3307/rl_analytics",
                                      {"KUBERL_DATABASE_PASSWORD_FILE": str(secret)})
    assert (settings.host, settings.port, settings.user, settings.database) == ("db", 3307, "bob", "rl_analytics")
    assert settings.password == "from-a-secret"
    assert "from-a-secret" not in repr(settings)
    from_env = MySQLSettings.from_url("mysql://bob@db/x", {"KUBERL_DATABASE_PASSWORD": "pw"})
    assert from_env.password == "pw" and from_env.port == 3306
    with pytest.raises(ValueError, match="no password in the URL"):
        MySQLSettings.from_url("mysql://bob:s3cret@db/x", {})


def test_tls_to_mysql_is_off_on_loopback_and_required_elsewhere_unless_the_url_says():
    assert MySQLSettings.from_url("mysql://u@127.0.0.1/x", {}).tls == "off"
    assert MySQLSettings.from_url("mysql://u@localhost/x", {}).tls == "off"
    assert MySQLSettings.from_url("mysql://u@db.example.com/x", {}).tls == "required"
    assert MySQLSettings.from_url("mysql://u@db/x?tls=off", {}).ssl_context() is None
    verify = MySQLSettings.from_url("mysql://u@db/x?tls=verify&ca=/etc/ssl/certs/ca-certificates.crt", {})
    assert verify.ssl_context().check_hostname
    for bad, message in (("mysql://u@db/x?tls=maybe", "tls='maybe'"), ("mysql://u@db/x?tls=verify", "needs ca=")):
        with pytest.raises(ValueError, match=message):
            MySQLSettings.from_url(bad, {})
