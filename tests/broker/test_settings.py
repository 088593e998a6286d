from docex.broker.settings import BrokerSettings, amqp_url, redact_url


def test_amqp_url_quotes_vhost_user_and_password() -> None:
    url = amqp_url("unit a", "p@ss/word", "/")
    assert url == "amqp://unit%20a:p%40ss%2Fword@127.0.0.1:5672/%2F"
    settings = BrokerSettings(url)
    assert settings.vhost == "/"
    assert settings.user == "unit a"
    params = settings.parameters()
    assert params.virtual_host == "/"
    assert params.credentials.password == "p@ss/word"


def test_named_vhost_round_trips() -> None:
    settings = BrokerSettings(amqp_url("guest", "guest", "qingyuan/yangshan", "mq.local", 5673))
    assert settings.vhost == "qingyuan/yangshan"
    params = settings.parameters("docex:test")
    assert (params.host, params.port, params.virtual_host) == (
        "mq.local",
        5673,
        "qingyuan/yangshan",
    )
    assert params.heartbeat == 30
    assert params.client_properties == {"connection_name": "docex:test"}


def test_password_never_in_repr() -> None:
    settings = BrokerSettings(amqp_url("agent", "s3cret-pw", "v"), management_password="m-secret")
    assert "s3cret-pw" not in repr(settings)
    assert "m-secret" not in repr(settings)
    assert "s3cret-pw" not in str(settings)
    assert "***" in settings.safe_url
    assert redact_url("amqp://host/v") == "amqp://host/v"


def test_for_login_keeps_host_and_vhost() -> None:
    base = BrokerSettings(amqp_url("guest", "guest", "docex", "10.0.0.5", 5672), prefetch=8)
    other = base.for_login("unit", "pw")
    assert (other.user, other.vhost, other.prefetch) == ("unit", "docex", 8)
    assert other.parameters().host == "10.0.0.5"
    assert base.for_login("u", "p", vhost="x").vhost == "x"
