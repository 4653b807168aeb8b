"""``kafka.security`` (librdkafka properties) as Faust broker credentials for the drift app.

Every other rtml client is a confluent-kafka one and takes the properties as they are; Faust's
aiokafka clients (the partials producer, the detector agent, the table changelogs) need the same
protocol, mechanism, user and TLS trust expressed as a ``faust.*Credentials``. One settings key
therefore drives both, and a property this translation cannot honour is an error at start-up,
never a silently unauthenticated or unverified connection.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping

import faust
from faust.types.auth import CredentialsT

from runtime.errors import DriftConfigError

SASL_MECHANISMS = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
# Properties that only tune librdkafka (timeouts, buffers) and have no aiokafka meaning.
_IGNORED_PREFIXES = ("socket.", "client.", "ssl.endpoint.identification.algorithm")
_UNDERSTOOD = frozenset(
    {
        "security.protocol",
        "sasl.mechanism",
        "sasl.mechanisms",
        "sasl.username",
        "sasl.password",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.key.password",
        "enable.ssl.certificate.verification",
    }
)


def faust_credentials(security: Mapping[str, str]) -> CredentialsT | None:
    """Credentials for ``security``; None for PLAINTEXT (no property set)."""
    _refuse_unknown(security)
    protocol = security.get("security.protocol", "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(security))
    if protocol not in ("SASL_SSL", "SASL_PLAINTEXT"):
        raise DriftConfigError(
            f"kafka.security: security.protocol {protocol!r} is not one of "
            "PLAINTEXT, SSL, SASL_SSL, SASL_PLAINTEXT"
        )
    mechanism = (security.get("sasl.mechanism") or security.get("sasl.mechanisms") or "PLAIN").upper()
    if mechanism not in SASL_MECHANISMS:
        raise DriftConfigError(
            f"kafka.security: sasl.mechanism {mechanism!r} is not supported by the drift app "
            f"(supported: {', '.join(sorted(SASL_MECHANISMS))})"
        )
    context = ssl_context(security) if protocol == "SASL_SSL" else None
    return faust.SASLCredentials(
        username=security.get("sasl.username"),
        password=security.get("sasl.password"),
        ssl_context=context,
        mechanism=mechanism,
    )


def ssl_context(security: Mapping[str, str]) -> ssl.SSLContext:
    """A client context trusting ``ssl.ca.location`` (else the system store), with a client
    certificate when one is configured (mutual TLS)."""
    context = ssl.create_default_context(cafile=security.get("ssl.ca.location"))
    certificate = security.get("ssl.certificate.location")
    if certificate:
        context.load_cert_chain(
            certificate, security.get("ssl.key.location"), password=security.get("ssl.key.password")
        )
    if security.get("enable.ssl.certificate.verification", "true").lower() == "false":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif security.get("ssl.endpoint.identification.algorithm", "https").lower() == "none":
        context.check_hostname = False  # librdkafka's switch for "verify the chain, not the name"
    return context


def _refuse_unknown(security: Mapping[str, str]) -> None:
    unknown = sorted(k for k in security if k not in _UNDERSTOOD and not k.startswith(_IGNORED_PREFIXES))
    if unknown:
        raise DriftConfigError(
            f"kafka.security: the drift app cannot apply {', '.join(unknown)} to its Faust clients "
            f"(it understands {', '.join(sorted(_UNDERSTOOD))})"
        )
