"""One settings object reads the environment: values, defaults and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings


def test_environment_overrides_defaults() -> None:
    settings = Settings.from_env(
        {
            "TRACKBONE_MAX_BATCH_RECORDS": "500",
            "TRACKBONE_PARTITIONS": "12",
            "TRACKBONE_TOPIC_PREFIX": "t1.",
            "TRACKBONE_DATA_DIR": "~/tb",
            "TRACKBONE_ETA": "off",
            "TRACKBONE_SESSION_TIMEOUT_S": "",  # empty means unset
        }
    )
    assert settings.max_batch_records == 500
    assert settings.partitions == 12
    assert settings.topics.parcel_status == "t1.tracking.parcel-status"
    assert settings.data_dir == Path("~/tb").expanduser()
    assert settings.eta_enabled is False
    assert settings.session_timeout_s == Settings().session_timeout_s


def test_a_malformed_number_names_the_variable() -> None:
    with pytest.raises(
        ValueError, match=r"TRACKBONE_STUCK_AFTER_HOURS='soon' is not a valid float"
    ):
        Settings.from_env({"TRACKBONE_STUCK_AFTER_HOURS": "soon"})


def test_the_sink_service_port_has_its_own_variable() -> None:
    assert Settings().sink_web_port == 6067
    assert Settings().sink_web_port != Settings().web_port
    settings = Settings.from_env({"TRACKBONE_SINK_WEB_PORT": "7077", "TRACKBONE_WEB_PORT": "7066"})
    assert (settings.sink_web_port, settings.web_port) == (7077, 7066)
    with pytest.raises(ValueError, match=r"TRACKBONE_SINK_WEB_PORT='high' is not a valid int"):
        Settings.from_env({"TRACKBONE_SINK_WEB_PORT": "high"})


def test_secrets_never_show_in_the_settings_repr(tmp_path) -> None:
    from streams.settings import Settings

    secret_file = tmp_path / "pw"
    secret_file.write_text("file-secret\n")
    settings = Settings.from_env(
        {
            "TRACKBONE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "TRACKBONE_KAFKA_USER": "worker",
            "TRACKBONE_KAFKA_PASSWORD_FILE": str(secret_file),
            "TRACKBONE_CARRIER_KEY": "carrier-secret",
            "TRACKBONE_API_KEYS": "a" * 64,
            "TRACKBONE_CLICKHOUSE_DSN": "http://u:dsn-secret@host:8123/tracking",
        }
    )
    assert settings.kafka_password == "file-secret"
    assert settings.kafka_security_protocol == "SASL_SSL"
    shown = repr(settings)
    for secret in ("file-secret", "carrier-secret", "a" * 64, "dsn-secret"):
        assert secret not in shown
    assert "worker" in shown


def test_a_bad_security_protocol_or_key_digest_is_a_setting_error() -> None:
    import pytest

    from streams.settings import SettingError, Settings

    with pytest.raises(SettingError, match="SECURITY_PROTOCOL"):
        Settings.from_env({"TRACKBONE_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(SettingError, match="API_KEYS"):
        Settings.from_env({"TRACKBONE_API_KEYS": "plain-key"})
