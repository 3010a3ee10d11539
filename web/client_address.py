"""The client's address: the socket's peer, or the entry a trusted proxy appended to X-Forwarded-For.

Each proxy appends the address it received the request from to `X-Forwarded-For`, so the
header reads `<what the client wrote>, ..., <what our proxy saw>`. Only the entries on the
right, written by proxies we run behind, can be trusted: anything further left was sent by
the client and may be invented. (uvicorn's own proxy-header handling, with
`FORWARDED_ALLOW_IPS=*`, takes the left-most entry: a client that sends
`X-Forwarded-For: <random>, <real>` gets a fresh rate-limit bucket each time.)

With `trusted_hops` proxies in front of the app (FORWARDED_TRUSTED_HOPS; 1 behind a PaaS
router), the socket's peer is the last of them, and the client is the entry `trusted_hops`
from the right of [X-Forwarded-For entries..., peer]. With 0, the header is ignored.

An IPv6 client is counted by its /64, the prefix a single home or host is given (RFC 6177,
RFC 7421): within it the client chooses the low 64 bits freely, so one address each would be
a fresh rate-limit bucket per request. An IPv4-mapped IPv6 address counts as the IPv4 one.
"""

from __future__ import annotations

import ipaddress

from starlette.types import Scope

# A longer "address" is not one; bounding it also bounds the rate limiter's keys.
MAX_ADDRESS_CHARS = 64


def client_address(scope: Scope, trusted_hops: int) -> str:
    """The address to count a request against (rate limit). Never raises; "unknown" without a peer.

    Cost is bounded by `trusted_hops`, not by the header's length: the entries are split from
    the right, at most `trusted_hops` times.
    """
    client = scope.get("client")
    peer = client_key(client[0]) if client else "unknown"
    if trusted_hops <= 0:
        return peer
    values = [value for name, value in scope.get("headers", ()) if name == b"x-forwarded-for"]
    if not values:
        return peer  # not through the proxy (a direct connection, or a health check)
    # Repeated header lines are one list, in order (RFC 9110 5.3).
    entries = b",".join(values).decode("latin-1").rsplit(",", trusted_hops)
    # entries[-1] was appended by the proxy nearest to us, entries[-trusted_hops] by the farthest
    # trusted one. Fewer entries than hops: the left-most is all there is.
    chosen = entries[-trusted_hops] if len(entries) >= trusted_hops else entries[0]
    return client_key(chosen.strip()[:MAX_ADDRESS_CHARS]) or peer


def client_key(address: str) -> str:
    """The key an address is counted under: an IPv6 address as its /64 ("2001:db8:1:2::/64"),
    an IPv4-mapped one as its IPv4 address; anything else unchanged.

    Also read: "[2001:db8::1]" and "[2001:db8::1]:443", which some proxies write."""
    if ":" not in address:
        return address  # IPv4, a name, "unknown": nothing to group
    text = address
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    try:
        ip = ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))
