"""Free TCP ports on loopback: the one helper every test that listens uses.

Ports are picked at random below Linux's ephemeral range (32768+) and checked by binding them,
so the client sockets of a test's own load (ab, requests) can never take one between the check
and the server's bind; ``count`` > 1 gives consecutive ports (the ssh backend puts its second
server on the next port).
"""

from __future__ import annotations

import random
import socket

_rng = random.Random()


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``count`` consecutive ports on ``host`` that nobody listens on right now."""
    for _ in range(500):
        base = _rng.randrange(20000, 32000 - count)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind((host, port))
            return list(range(base, base + count))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError(f"no {count} free consecutive ports on {host}")


def free_port(host: str = "127.0.0.1") -> int:
    """One port on ``host`` that nobody listens on right now."""
    return free_ports(1, host)[0]
