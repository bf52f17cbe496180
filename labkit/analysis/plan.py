"""The smallest plan that meets every clause for the users asked: servers, balancer, tester, cost. A model.

From a calibrated :class:`labkit.analysis.queueing.Network` (:mod:`labkit.analysis.holdout`):

- **balancer**: the cheapest machine type of the table whose vCPU carries, at ≤ 80 %, the
  balancer CPU of the throughput the planned servers deliver (:func:`sized`) (nginx runs one worker per vCPU, so a bigger type
  helps only because it gets more workers; the CPU per request measured on the student's
  balancer is assumed to hold on the bigger type). When no single machine does (the table
  stops at 16 vCPU), several balancers behind DNS round robin, and Compute Engine's managed
  load balancing as the alternative, priced and labelled;
- **tester**: sized the same way; ab is single-threaded, so the tester's CPU need is split into ab processes
  of at most one vCPU each (at ≤ 80 %), on the cheapest type with a vCPU per process, and
  more tester machines when one 16-vCPU machine is not enough;
- **servers**: the smallest count, at least the mean-only Little's-law bound, whose
  predicted mean (MVA), p98 and max (simulation, with the listen backlog and SYN retries)
  meet every clause with no failed request;
- **cost** per hour (:func:`labkit.pricing.plan_cost`).
"""

from __future__ import annotations

import math
from dataclasses import replace

from labkit import machine_types
from labkit.analysis.queueing import Network
from labkit.errors import ConfigError
from labkit.pricing import plan_cost

#: A planned machine runs at no more than this share of its vCPU.
MAX_UTILISATION = 0.8
#: ab's -n for a simulated plan point: the handout's.
PLAN_REQUESTS = 3000
#: Never search beyond this many servers.
MAX_SERVERS = 2000


def cheapest_type(vcpu_needed: float, min_vcpu: float = 0.0) -> str | None:
    """The cheapest machine type carrying ``vcpu_needed`` at ≤ 80 % (and with ≥ ``min_vcpu``); ``None`` if none."""
    fits = [m for m in machine_types.MACHINE_TYPES.values()
            if vcpu_needed <= MAX_UTILISATION * m.vcpu and m.vcpu >= min_vcpu]
    return min(fits, key=lambda m: (m.price_per_hour, -m.vcpu)).name if fits else None


def _largest() -> machine_types.MachineType:
    top = max(m.vcpu for m in machine_types.MACHINE_TYPES.values())
    return min((m for m in machine_types.MACHINE_TYPES.values() if m.vcpu == top), key=lambda m: m.price_per_hour)


def balancer_plan(rps: float, cpu_s: float) -> dict:
    """Balancer(s) for ``rps`` at ``cpu_s`` CPU seconds per request: type, count, nginx workers, kind."""
    vcpu = rps * cpu_s
    one = cheapest_type(vcpu)
    if one is not None:
        v = machine_types.get(one).vcpu
        return {"kind": "one nginx balancer", "machine_type": one, "count": 1, "workers": max(1, int(v)),
                "vcpu_needed": round(vcpu, 3), "managed_alternative": False}
    big = _largest()
    k = math.ceil(vcpu / (MAX_UTILISATION * big.vcpu))
    return {"kind": f"{k} nginx balancers behind DNS round robin (no single machine type carries "
                    f"{vcpu:.1f} vCPU at ≤ 80 %); or Compute Engine's managed load balancing instead",
            "machine_type": big.name, "count": k, "workers": int(big.vcpu), "vcpu_needed": round(vcpu, 3),
            "managed_alternative": True}


def tester_plan(rps: float, cpu_s: float) -> dict:
    """ab processes (≤ 1 vCPU each, at ≤ 80 %) and tester machines for ``rps``."""
    vcpu = rps * cpu_s
    processes = max(1, math.ceil(vcpu / MAX_UTILISATION - 1e-9))
    per_machine = int(_largest().vcpu)
    machines = math.ceil(processes / per_machine)
    on_each = math.ceil(processes / machines)
    mt = cheapest_type(vcpu / machines, min_vcpu=on_each if processes > 1 else 0.0) or _largest().name
    return {"processes": processes, "machines": machines, "machine_type": mt, "vcpu_needed": round(vcpu, 3),
            "note": "ab is single-threaded: one process uses at most one vCPU"}


def _meets(pred: dict, sla) -> bool:
    from labkit.analysis.sla import as_sla

    if pred.get("failed"):
        return False
    return all(c.holds_value(pred.get(c.column)) for c in as_sla(sla).clauses)


def evaluate(net: Network, users: int, sla, seed: int = 0) -> dict:
    """Predicted mean (MVA), mean/p98/max (simulation) and failures at ``users`` for ``net``; ``meets``."""
    from labkit.analysis.queueing import mva, simulate

    m = mva(net, users)
    s = simulate(net, users, max(PLAN_REQUESTS, 2 * users), seed=seed)
    pred = {"mean_ms": round(m["mean_ms"], 1), "mean_ms_sim": _r(s.get("mean_ms")), "p98_ms": _r(s.get("p98_ms")),
            "max_ms": _r(s.get("max_ms")), "rps": round(m["rps"], 1), "failed": s["failed"],
            "syn_retries": s["syn_retries"]}
    pred["meets"] = _meets(pred, sla)
    return pred


def _r(v):
    return None if v is None else round(float(v), 1)


def sized(net: Network, n: int, users: int) -> tuple[dict, dict, Network]:
    """Balancer and tester for ``n`` servers: sized to stay ≤ 80 % busy at the throughput n servers deliver
    to ``users`` (MVA with the balancer and tester taken out), and the network with them in."""
    from labkit.analysis.queueing import mva

    x = mva(replace(net, servers=n, balancer_cpu_s=0.0, tester_cpu_s=0.0), users)["rps"]
    bal = balancer_plan(x, net.balancer_cpu_s)
    tst = tester_plan(x, net.tester_cpu_s)
    planned = replace(net, servers=n, balancer_vcpu=machine_types.get(bal["machine_type"]).vcpu,
                      balancers=bal["count"], tester_vcpu=min(1.0, machine_types.get(tst["machine_type"]).vcpu),
                      testers=tst["processes"])
    bal["sized_for_rps"] = tst["sized_for_rps"] = round(x, 1)
    return bal, tst, planned


def search(net: Network, users: int, sla, need_rps: float, server_type: str, start: int = 1) -> dict:
    """The smallest plan meeting every clause of ``sla`` for ``users``; see the module docstring.

    ``net`` is calibrated on the student's machines; ``start`` is the first server count
    tried (the Little's-law lower bound, from ``need_rps``). For each server count n the
    balancer and tester are sized by :func:`sized`; counts grow by a quarter until the model
    meets every clause, then a bisection finds the smallest.
    """
    tried: dict[int, dict] = {}
    kit: dict[int, tuple] = {}

    def ok(n: int) -> bool:
        if n not in tried:
            kit[n] = sized(net, n, users)
            tried[n] = evaluate(kit[n][2], users, sla)
        return tried[n]["meets"]

    lo = n = max(2, int(start))
    while not ok(n):
        lo = n + 1
        n = max(n + 1, math.ceil(n * 1.25))
        if n > MAX_SERVERS:
            bal, tst, _ = kit[max(kit)]
            return {"servers": None, "balancer": bal, "tester": tst, "predicted": tried[max(tried)],
                    "tried": _tried(tried), "note": f"no server count up to {MAX_SERVERS} meets every clause in the model"}
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    bal, tst, _ = kit[hi]
    machines = [("server", server_type, hi), ("balancer", bal["machine_type"], bal["count"]),
                ("tester", tst["machine_type"], tst["machines"])]
    cost = plan_cost(machines)
    out = {"servers": hi, "server_machine_type": server_type, "balancer": bal, "tester": tst,
           "predicted": tried[hi], "tried": _tried(tried), "cost_per_hour": cost["cost_per_hour"], "cost": cost,
           "need_rps": round(need_rps, 1)}
    if bal["managed_alternative"]:
        alt = plan_cost([("server", server_type, hi), ("tester", tst["machine_type"], tst["machines"])],
                        managed_lb=True)
        out["managed_lb_alternative"] = {"cost_per_hour": alt["cost_per_hour"], "cost": alt,
                                         "label": "Compute Engine managed load balancing instead of nginx VMs"}
    return out


def _tried(tried: dict[int, dict]) -> list[dict]:
    return [{"servers": n, **{k: p[k] for k in ("mean_ms", "p98_ms", "max_ms", "failed", "meets")}}
            for n, p in sorted(tried.items())]


def check_users(users) -> int:
    if isinstance(users, bool) or not isinstance(users, int) or users < 1:
        raise ConfigError(f"users must be a positive integer, got {users!r}")
    return users
