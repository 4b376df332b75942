"""The client address, believing ``X-Forwarded-For`` only from trusted proxies."""

from __future__ import annotations

import ipaddress
from functools import lru_cache


@lru_cache(maxsize=64)
def _networks(entries: tuple[str, ...]):
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return tuple(networks)


def _trusted(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(remote_addr: str | None, forwarded_for: str | None, trusted: list[str]) -> str:
    """Walk ``X-Forwarded-For`` from the right while the hop is a trusted proxy."""
    remote = remote_addr or "unknown"
    networks = _networks(tuple(trusted))
    if not forwarded_for or not networks or not _trusted(remote, networks):
        return remote
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, networks):
            return hop[:64]
    return hops[0][:64] if hops else remote
