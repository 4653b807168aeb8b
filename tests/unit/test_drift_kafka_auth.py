"""kafka.security translated for the drift app's Faust clients: the same protocol, mechanism, user
and trust as the confluent clients, and an error (never a silent downgrade) for what it cannot do."""

from __future__ import annotations

import ssl

import faust
import pytest

from drift.kafka_auth import faust_credentials
from runtime.errors import DriftConfigError


def test_plaintext_needs_no_credentials() -> None:
    assert faust_credentials({}) is None
    assert faust_credentials({"security.protocol": "plaintext"}) is None


def test_sasl_ssl_carries_user_mechanism_and_a_verifying_context() -> None:
    credentials = faust_credentials(
        {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "rtml",
         "sasl.password": "pw"}
    )  # fmt: skip
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("rtml", "pw")
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.protocol.value == "SASL_SSL"
    assert credentials.ssl_context is not None
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED and credentials.ssl_context.check_hostname
    assert "pw" not in repr(credentials)


def test_sasl_plaintext_has_no_tls_and_defaults_to_plain() -> None:
    credentials = faust_credentials(
        {"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u", "sasl.password": "p"}
    )
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.ssl_context is None and credentials.mechanism.value == "PLAIN"


def test_ssl_only_and_the_verification_switches() -> None:
    credentials = faust_credentials(
        {"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "none"}
    )
    assert isinstance(credentials, faust.SSLCredentials)
    assert not credentials.context.check_hostname and credentials.context.verify_mode == ssl.CERT_REQUIRED
    unverified = faust_credentials(
        {"security.protocol": "SSL", "enable.ssl.certificate.verification": "false"}
    )
    assert isinstance(unverified, faust.SSLCredentials) and unverified.context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("security", "names"),
    [
        ({"security.protocol": "SASL_SSL", "sasl.mechanism": "GSSAPI"}, "GSSAPI"),
        ({"security.protocol": "KERBEROS"}, "KERBEROS"),
        ({"security.protocol": "SSL", "ssl.keystore.location": "/k.p12"}, "ssl.keystore.location"),
    ],
)
def test_what_the_drift_app_cannot_honour_is_refused_by_name(security: dict[str, str], names: str) -> None:
    with pytest.raises(DriftConfigError, match=names):
        faust_credentials(security)
