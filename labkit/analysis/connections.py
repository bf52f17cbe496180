"""What Linux and nginx do with a new connection: the facts the model, the SLA reasons and the
findings share (one definition each).

A listen socket holds at most its backlog of connections the application has not accepted yet;
a SYN arriving at a full backlog is dropped, and the client retransmits it after 1 s, then
2, 4, 8 s more (Linux's initial RTO, doubling), so a request that needed the n-th retry
completes about 1, 3, 7 or 15 s after its first SYN. Open-source nginx has no upstream
request queue: it accepts into its own backlog and opens one upstream connection per request
(no ``keepalive`` is configured), so a full server backlog behind it shows up as nginx's own
SYN retries towards that server.
"""

from __future__ import annotations

import math

#: When a connection that waited for the n-th SYN retransmission completes (s after the first SYN).
SYN_RETRY_S = (1.0, 3.0, 7.0, 15.0)
SYN_RETRY_MS = tuple(1000.0 * s for s in SYN_RETRY_S)
#: The listen backlog of the Flask development server (``werkzeug.serving.LISTEN_QUEUE``); the kernel caps it too.
SERVER_BACKLOG = 128
#: nginx's default listen backlog on Linux (``NGX_LISTEN_BACKLOG``), and connections per worker (design §5).
NGINX_BACKLOG = 511
NGINX_WORKER_CONNECTIONS = 4096


def near_syn_retry(ms) -> float | None:
    """The SYN retransmission time (ms) that ``ms`` sits at (within -5 %/+20 %), or None."""
    if ms is None:
        return None
    try:
        ms = float(ms)
    except (TypeError, ValueError):
        return None
    if math.isnan(ms):
        return None
    for t in SYN_RETRY_MS:
        if 0.95 * t <= ms <= 1.2 * t:
            return t
    return None


#: A connect mean this long (ms) means the clients' own SYNs were retransmitted.
SLOW_CONNECT_MS = 100.0


def syn_retry_cause(nodes: int, concurrency: int, connect_mean_ms) -> str:
    """Where a stall at a SYN retransmission time can come from at this point, or ``""`` when the
    point's own numbers do not support SYN retries (then the stall has another cause):

    ``"client"``: ab's SYNs were dropped (a slow connect mean, or more users than the backlog
    ab connects to: the server's with one node, nginx's behind a balancer); ``"upstream"``:
    nginx's SYNs to a server were dropped (more users per server than a server's backlog).
    """
    try:
        cm = float(connect_mean_ms)
    except (TypeError, ValueError):
        cm = math.nan
    if not math.isnan(cm) and cm >= SLOW_CONNECT_MS:
        return "client"
    if nodes > 1 and concurrency / nodes > SERVER_BACKLOG:
        return "upstream"
    if concurrency > (SERVER_BACKLOG if nodes == 1 else NGINX_BACKLOG):
        return "client"
    return ""
