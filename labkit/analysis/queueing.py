"""A queueing model of ab's closed loop: N users, no think time → (balancer →) n servers. A model, not a measurement.

Two solvers of the same network, each for what it can answer:

- :func:`mva` — exact mean value analysis (Reiser & Lavenberg) of the closed network:
  the tester (ab), the balancer and n identical servers as processor-sharing CPU
  stations, plus a fixed delay ``z_s`` (what a request spends off the CPUs). It gives the
  **mean** response time and the throughput for any N in microseconds.
- :func:`simulate` — a discrete-event simulation (:mod:`simpy`) of the same network
  for the **p98 and max**: each request draws its server CPU from the student's own
  per-request time distribution (:func:`service_shape`), the balancer and tester from
  theirs, and connects through a listen backlog. A server accepts at most
  ``admit`` connections at once (its threads in service plus its listen backlog, 128
  by default in the Flask development server and the kernel); a SYN that finds the queue full is
  dropped and retried by the client's kernel 1 s, 3 s, 7 s and 15 s after the first
  try — the 1 s / 3 s stalls the student sees in ``max`` and ``connect_mean_ms``. After
  the fifth try the request fails. nginx accepts up to ``workers × 4096 / 2`` client
  connections (each proxied request holds two) plus its backlog (511).

A station of ``vcpu`` CPUs shares them among the requests in it (processor sharing),
each request using at most one CPU (a request is one thread; nginx runs one worker per
vCPU). Parameters come from :mod:`labkit.analysis.demand` (CPU per request) and are
calibrated by :mod:`labkit.analysis.holdout` before any answer uses them.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from labkit.analysis.connections import NGINX_BACKLOG, NGINX_WORKER_CONNECTIONS, SYN_RETRY_S
from labkit.errors import ConfigError
from labkit.record import PERCENTILES

#: Quantiles of the per-request shape read from ab's percentile table (p100 is the max).
_SHAPE_P = (0.0, *(p / 100.0 for p in PERCENTILES), 1.0)


@dataclass(frozen=True)
class Network:
    """The closed network one ab run meets. CPU demands in seconds per request; vCPU per machine."""

    servers: int
    server_cpu_s: float
    server_vcpu: float
    balancer_cpu_s: float = 0.0
    balancer_vcpu: float = 1.0
    balancers: int = 1
    tester_cpu_s: float = 0.0
    tester_vcpu: float = 1.0
    testers: int = 1
    z_s: float = 0.0
    admit: float = math.inf
    shape: tuple = field(default=(1.0,) * len(_SHAPE_P), repr=False)

    @property
    def has_balancer(self) -> bool:
        return self.servers > 1


def service_shape(df: pd.DataFrame) -> tuple[tuple, str]:
    """The per-request time distribution, as quantiles of time / mean (0, p50 … p99, max), and its source.

    No per-request (``-g``) data is stored with a results CSV, so the shape is derived
    from ab's percentile table at the lowest concurrency measured on one node (the
    least-queued requests: their spread is the service's own, not a queue's), the
    median over its clean repeats. Returned with a sentence saying so.
    """
    from labkit.analysis.points import is_clean

    clean = df[is_clean(df)]
    if clean.empty:
        raise ConfigError("no clean row to read a per-request time distribution from")
    n0 = int(clean["nodes"].min())
    at = clean[clean["nodes"] == n0]
    c0 = int(at["concurrency"].min())
    rows = at[at["concurrency"] == c0]
    cols = [f"p{p}_ms" for p in PERCENTILES]
    mean = rows["mean_ms"].astype("float64")
    q = rows[cols].astype("float64").div(mean, axis=0).median()
    top = float((rows["max_ms"].astype("float64") / mean).median())
    vals = np.maximum.accumulate(np.array([0.0, *q.to_numpy(), top]))
    if not np.all(np.isfinite(vals)):
        raise ConfigError("the lowest-concurrency point lacks percentiles to read a per-request time distribution from")
    # scale so that the distribution's own mean is 1 (piecewise linear between the quantiles)
    m = float(np.trapezoid(vals, _SHAPE_P))
    vals = vals / m if m > 0 else np.ones_like(vals)
    src = (f"no per-request (-g) data is stored with the CSV: the per-request time distribution is derived from "
           f"ab's percentiles at {n0} node(s), c={c0} (the least-queued point), scaled to each role's mean CPU")
    return tuple(float(v) for v in vals), src


def _draw(rng: np.random.Generator, shape: tuple, size: int) -> np.ndarray:
    return np.interp(rng.random(size), _SHAPE_P, shape)


# -- mean value analysis --------------------------------------------------------------------------
def mva(net: Network, users: int) -> dict:
    """Exact MVA of ``net`` for ``users`` (no think time): ``mean_ms``, ``rps`` and each station's utilisation.

    Stations (per visit demand, in wall seconds at one CPU's speed divided by the CPUs a
    request can use): each ab process (``testers``), each balancer, n servers, each visited
    1/k of the time. A station with c ≥ 2 vCPU uses Seidmann's approximation (a queue of
    demand D/c plus a delay of D(c−1)/c).
    """
    if users < 1:
        raise ConfigError("users must be ≥ 1")
    stations = []  # (demand per request at this station, visit share, multiplicity)

    def add(cpu_s, vcpu, k):
        if cpu_s <= 0:
            return 0.0
        c = max(1.0, vcpu)
        wall = cpu_s / min(vcpu, 1.0) if vcpu < 1 else cpu_s / c
        stations.append((wall, k))
        return cpu_s * (c - 1) / c if c > 1 else 0.0

    delay = net.z_s
    delay += add(net.tester_cpu_s, net.tester_vcpu, net.testers)
    if net.has_balancer:
        delay += add(net.balancer_cpu_s, net.balancer_vcpu, net.balancers)
    delay += add(net.server_cpu_s, net.server_vcpu, net.servers)
    demand = [d / k for d, k in stations]  # per request, at one of the k identical stations
    mult = [float(k) for _, k in stations]
    q = [0.0] * len(stations)
    r = x = 0.0
    for n in range(1, int(users) + 1):  # plain floats: three stations, thousands of steps
        per = [d * (1.0 + qi) for d, qi in zip(demand, q)]
        r = delay + sum(p * m for p, m in zip(per, mult))
        x = n / r
        q = [x * p for p in per]
    return {"mean_ms": r * 1000.0, "rps": x,
            "utilisation": {"stations": [float(x * d) for d in demand]}}


# -- discrete-event simulation --------------------------------------------------------------------
class _PS:
    """A processor-sharing station: ``vcpu`` CPUs shared by the jobs in it, at most one CPU each.

    Virtual time ``v`` is the CPU each job present has received; a job needing ``w`` leaves when
    ``v`` reaches its arrival's ``v`` + ``w`` (a heap), so every event costs O(log k). The next
    departure is one simpy timeout whose callback is ignored once an arrival has moved it.
    """

    def __init__(self, env, vcpu: float):
        self.env, self.vcpu = env, float(vcpu)
        self.v = 0.0
        self.last = 0.0
        self.heap: list[tuple[float, int, object]] = []
        self.seq = 0
        self.token = 0

    def _rate(self) -> float:
        k = len(self.heap)
        return min(1.0, self.vcpu / k) if k else 0.0

    def _advance(self) -> None:
        now = self.env.now
        if self.heap:
            self.v += self._rate() * (now - self.last)
        self.last = now

    def serve(self, cpu_s: float):
        """An event that fires when ``cpu_s`` CPU seconds have been served to this job."""
        self._advance()
        done = self.env.event()
        self.seq += 1
        heapq.heappush(self.heap, (self.v + cpu_s, self.seq, done))
        self._schedule()
        return done

    def _schedule(self) -> None:
        self.token += 1
        if not self.heap:
            return
        wait = max(0.0, (self.heap[0][0] - self.v) / self._rate())
        token = self.token
        self.env.timeout(wait).callbacks.append(lambda _event: self._fire(token))

    def _fire(self, token: int) -> None:
        if token != self.token:  # an arrival or departure since has rescheduled
            return
        self._advance()
        while self.heap and self.heap[0][0] <= self.v + 1e-12:
            heapq.heappop(self.heap)[2].succeed()
        self._schedule()


class _Gate:
    """A listen backlog: at most ``limit`` connections at once; a full queue drops the SYN."""

    def __init__(self, limit: float):
        self.limit, self.count = limit, 0

    def try_enter(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1


def simulate(net: Network, users: int, requests: int, seed: int = 0) -> dict:
    """Simulate ab ``-c users -n requests`` against ``net``; ``mean_ms``, ``p50_ms`` … ``p99_ms``, ``max_ms``,
    ``rps``, ``failed`` (requests whose five SYNs were all dropped), ``syn_retries`` and ``connect_mean_ms``.

    ab starts ``users`` requests at once and starts a new one whenever one ends, until
    ``requests`` have started: the simulation does the same, so the start-up burst that
    fills a backlog is in it. A request visits the tester's CPU, the balancer's (its work
    both ways as one visit, for speed), then a server's.
    """
    import simpy

    if users < 1 or requests < 1:
        raise ConfigError("users and requests must be ≥ 1")
    rng = np.random.default_rng(seed)
    env = simpy.Environment()
    servers = [_PS(env, net.server_vcpu) for _ in range(net.servers)]
    server_gates = [_Gate(net.admit) for _ in range(net.servers)]
    bal = [_PS(env, net.balancer_vcpu) for _ in range(net.balancers)] if net.has_balancer else []
    workers = max(1, int(round(net.balancer_vcpu)))
    bal_gates = [_Gate(workers * NGINX_WORKER_CONNECTIONS / 2 + NGINX_BACKLOG) for _ in bal]
    testers = [_PS(env, min(1.0, net.tester_vcpu)) for _ in range(max(1, net.testers))]
    n = int(requests)
    s_cpu = net.server_cpu_s * _draw(rng, net.shape, n)
    b_cpu = net.balancer_cpu_s * _draw(rng, net.shape, n)
    t_cpu = net.tester_cpu_s * _draw(rng, net.shape, n)
    times = np.full(n, np.nan)
    connect = np.zeros(n)
    state = {"started": 0, "rr_server": 0, "rr_bal": 0, "failed": 0, "retries": 0}

    def connect_to(gates, i):
        t0 = env.now
        for k in range(len(SYN_RETRY_S) + 1):
            if gates[i].try_enter():
                connect_wait = env.now - t0
                return True, connect_wait
            if k == len(SYN_RETRY_S):
                return False, env.now - t0
            state["retries"] += 1
            yield_at = t0 + SYN_RETRY_S[k]
            yield env.timeout(yield_at - env.now)
        return False, env.now - t0

    def request(j, tester):
        t0 = env.now
        yield tester.serve(t_cpu[j])  # ab's work for the request (its send and receive as one visit)
        if bal:
            b = state["rr_bal"] % len(bal)
            state["rr_bal"] += 1
            ok, waited = yield from connect_to(bal_gates, b)
            connect[j] = waited
            if not ok:
                state["failed"] += 1
                return
            yield bal[b].serve(b_cpu[j])  # nginx's work both ways, as one visit
        i = state["rr_server"] % len(servers)
        state["rr_server"] += 1
        ok, waited = yield from connect_to(server_gates, i)
        if not bal:
            connect[j] = waited
        if not ok:
            if bal:
                bal_gates[b].leave()
            state["failed"] += 1
            return
        if net.z_s > 0:
            yield env.timeout(net.z_s)
        yield servers[i].serve(s_cpu[j])
        server_gates[i].leave()
        if bal:
            bal_gates[b].leave()
        times[j] = env.now - t0

    def client(c):
        tester = testers[c % len(testers)]
        while state["started"] < n:
            j = state["started"]
            state["started"] += 1
            yield from request(j, tester)

    for c in range(min(int(users), n)):
        env.process(client(c))
    env.run()
    done = times[np.isfinite(times)] * 1000.0
    out = {"requests": n, "complete": int(done.size), "failed": state["failed"], "syn_retries": state["retries"],
           "connect_mean_ms": float(connect.mean() * 1000.0), "rps": done.size / env.now if env.now > 0 else 0.0}
    if done.size:
        out["mean_ms"] = float(done.mean())
        for p in PERCENTILES:
            out[f"p{p}_ms"] = float(np.percentile(done, p))
        out["max_ms"] = float(done.max())
    return out


def with_(net: Network, **changes) -> Network:
    """``net`` with some fields changed (a plan's candidate)."""
    return replace(net, **changes)
