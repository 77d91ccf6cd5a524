"""Whether the intake service may listen on an address without TLS. Pure: strings in, reason out.

Case reports cross the wire in the clear without TLS, so plain HTTP is allowed only where no
other machine can reach it: a loopback address. Anything else (an interface address, 0.0.0.0,
::, a host name that is not ``localhost``) needs a certificate, or an explicit
``--insecure-no-tls`` from an operator who terminates TLS in front of the service.
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """True only for a loopback IP literal or ``localhost``; unknown names are not loopback."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def plain_http_refusal(host: str, *, cert: bool, key: bool, insecure_no_tls: bool) -> str | None:
    """Why serving on ``host`` with this TLS configuration is refused, or None if it may.

    Args:
        host: the address to bind.
        cert: a certificate file was given.
        key: a private key file was given.
        insecure_no_tls: the operator explicitly accepted plain HTTP off loopback.
    """
    if cert != key:
        return "TLS needs both --tls-cert and --tls-key"
    if cert or is_loopback(host) or insecure_no_tls:
        return None
    return (
        f"refusing to serve case reports over plain HTTP on {host}, which is not a loopback "
        "address: pass --tls-cert FILE --tls-key FILE, bind 127.0.0.1, or pass "
        "--insecure-no-tls if TLS is terminated in front of this service"
    )
