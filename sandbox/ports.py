"""Free loopback ports for the sandbox's servers."""

import random
import socket
from collections.abc import Collection
from pathlib import Path


def bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel considers free now (from the ephemeral range)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_free_on(addresses: list[str], avoid: Collection[int] = ()) -> int:
    """One port free on every address, so several sandboxes (or test meshes) can run side by side; not one of
    ``avoid`` (picked already, not bound yet)."""
    for _ in range(50):
        port = free_port(addresses[0])
        if port not in avoid and all(bindable(address, port) for address in addresses):
            return port
    raise OSError("found no port free on every address")


def stable_ports(host: str, count: int) -> list[int]:
    """Distinct ports free right now, below the kernel's ephemeral range: there, no outgoing connection
    (a kazoo client, a quorum link) can take a port while its server is down for a failover test."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    candidates = random.sample(range(10000, max(ephemeral_low, 10000 + 10 * count)), 10 * count)
    ports = [port for port in candidates if bindable(host, port)][:count]
    if len(ports) < count:
        raise OSError(f"no {count} free ports on {host}")
    return ports
