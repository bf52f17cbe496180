"""Universal Scalability Law fits, and the labelled extrapolation of ``nodes_needed``.

Gunther's USL models throughput at "size" N (node count, or concurrency on one
node) as::

    X(N) = λ·N / (1 + σ·(N − 1) + κ·N·(N − 1))

λ is the throughput of one unit, σ the contention (serial fraction: the
curve flattens), κ the coherency cost (the curve turns down). Throughput
peaks at N* = sqrt((1 − σ)/κ). We fit it with :func:`scipy.optimize.curve_fit`
(σ in [0, 1], κ ≥ 0, λ > 0) so the report can say how far more nodes would
help when no measured node count meets the SLA — always as an extrapolation,
never as a measurement.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from labkit.errors import ConfigError
from labkit.analysis.sla import _check_users, is_ok, max_concurrency

log = logging.getLogger("labkit")

MIN_POINTS = 3
#: A fit with a lower R² explains too little of the measured throughput to be drawn, described or extrapolated.
MIN_R2 = 0.5
EXTRAPOLATION_LABEL = "extrapolation (USL fit) — not measured"


def usl(n, sigma: float, kappa: float, lam: float):
    """X(N) of the Universal Scalability Law (vectorised over ``n``)."""
    n = np.asarray(n, dtype="float64")
    return lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))


@dataclass(frozen=True)
class UslFit:
    """A fitted USL curve. ``peak_n``/``peak_x`` are ``math.inf`` when κ = 0 (no peak)."""

    sigma: float
    kappa: float
    lam: float
    peak_n: float
    peak_x: float
    r2: float
    n_points: int = 0

    def predict(self, n):
        """Fitted throughput at ``n`` (scalar or array)."""
        return usl(n, self.sigma, self.kappa, self.lam)

    def reaches(self, level: float, start: float = 1.0, end: float = 1000.0) -> float | None:
        """The smallest N in [``start``, ``end``] (to 0.1) where the fitted throughput reaches ``level``, or None."""
        ns = np.arange(start, end + 0.05, 0.1)
        hit = np.flatnonzero(self.predict(ns) >= level)
        return float(round(ns[hit[0]], 1)) if hit.size else None

    @classmethod
    def from_dict(cls, d: dict) -> "UslFit":
        """The fit :meth:`to_dict` wrote (a report's ``usl``)."""
        inf = lambda v: math.inf if v is None else float(v)  # noqa: E731
        return cls(float(d["sigma"]), float(d["kappa"]), float(d["lambda"]), inf(d.get("peak_n")),
                   inf(d.get("peak_throughput")), float(d["r2"]), int(d.get("points") or 0))

    def to_dict(self, what: str = "nodes") -> dict:
        """JSON-ready: infinities become ``None``; ``summary`` says in words what the fit means."""
        d = self._numbers()
        return {**d, "summary": describe_fit(d, what)}

    def _numbers(self) -> dict:
        fin = lambda v: None if not math.isfinite(v) else float(v)  # noqa: E731
        return {"sigma": float(self.sigma), "kappa": float(self.kappa), "lambda": float(self.lam),
                "peak_n": fin(self.peak_n), "peak_throughput": fin(self.peak_x),
                "r2": float(self.r2), "points": int(self.n_points)}


#: σ and κ below these are no contention / no coherency cost measured (fit noise, not a finding).
NEGLIGIBLE_SIGMA = 1e-3
NEGLIGIBLE_KAPPA = 1e-6


def describe_fit(fit, what: str = "nodes") -> str:
    """What a USL fit means, in words: "linear so far: no contention measured", "peaks at N nodes", …

    ``fit`` is a :class:`UslFit` or its :meth:`~UslFit.to_dict`; ``what`` names the size
    axis ("nodes" or "concurrency"). Never prints σ = 3.781e-18: a parameter that small
    is reported as not measured.
    """
    d = fit._numbers() if isinstance(fit, UslFit) else fit
    sigma, kappa, lam = d["sigma"], d["kappa"], d["lambda"]
    unit = "node" if what == "nodes" else "user"
    each = f"{lam:,.0f} req/s per {unit}"
    quality = f" (R² {d['r2']:.2f}, {d['points']} points)"
    if not d["r2"] >= MIN_R2:
        return (f"no usable fit: the USL curve explains too little of the measured throughput{quality} "
                f"to say anything about contention or a peak")
    if d["peak_n"] is not None and d["peak_n"] < 1:
        # the fit's peak lies below one unit: throughput is already at its ceiling at the smallest size
        return (f"saturated from the start: about {d['peak_throughput']:,.0f} req/s at every {unit} count "
                f"tested, and each added {unit} only adds coordination (coherency κ {kappa:.2g})" + quality)
    if d["peak_n"] is not None:
        at = f"{d['peak_n']:.1f} {what}" if what == "nodes" else f"concurrency {d['peak_n']:.0f}"
        return (f"peaks at {at} ({d['peak_throughput']:,.0f} req/s), then falls: each added {unit} costs "
                f"coordination (coherency κ {kappa:.2g}); {each} alone" + quality)
    if sigma < NEGLIGIBLE_SIGMA and kappa < NEGLIGIBLE_KAPPA:
        return f"linear so far: no contention measured ({each})" + quality
    ceiling = d["peak_throughput"]
    tail = f", levelling off towards {ceiling:,.0f} req/s" if ceiling is not None else ""
    return (f"sub-linear: {sigma:.0%} of the work is serialised (contention){tail}; no peak within reach "
            f"({each})" + quality)


def fit_usl(n, x) -> UslFit:
    """Fit σ, κ, λ to throughputs ``x`` measured at sizes ``n`` (repeats allowed).

    Refuses with :class:`~labkit.errors.ConfigError` when fewer than three
    distinct sizes were measured: three parameters cannot be told apart with
    fewer, and a curve through two points would be a guess presented as a fit.
    """
    n = np.asarray(n, dtype="float64").ravel()
    x = np.asarray(x, dtype="float64").ravel()
    if n.shape != x.shape:
        raise ConfigError(f"USL fit: {n.size} sizes but {x.size} throughputs")
    keep = np.isfinite(n) & np.isfinite(x)
    n, x = n[keep], x[keep]
    if np.any(n <= 0) or np.any(x < 0):
        raise ConfigError("USL fit: sizes must be > 0 and throughputs >= 0")
    distinct = np.unique(n).size
    if distinct < MIN_POINTS:
        raise ConfigError(f"USL fit needs throughput at {MIN_POINTS} or more distinct sizes "
                          f"(node counts or concurrency levels); got {distinct}")
    from scipy.optimize import OptimizeWarning, curve_fit

    scale = float(x.max()) or 1.0
    y = x / scale
    lam0 = float(np.max(y[n == n.min()]) / n.min())
    best = None
    # A few starting points for κ: its natural size differs by orders of
    # magnitude between node counts (~1e-2) and concurrency levels (~1e-6).
    for kappa0 in (1e-1, 1e-3, 1e-5, 1e-7):
        try:
            with warnings.catch_warnings():  # covariance is unused; its warning is noise
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(usl, n, y, p0=(0.05, kappa0, lam0),
                                      bounds=([0.0, 0.0, 1e-12], [1.0, np.inf, np.inf]),
                                      method="trf", maxfev=20000)
        except (RuntimeError, ValueError) as exc:  # no convergence from this start
            log.debug("USL fit from kappa0=%g failed: %s", kappa0, exc)
            continue
        sse = float(np.sum((usl(n, *params) - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, params)
    if best is None:
        raise ConfigError("USL fit did not converge on this data")
    sse, (sigma, kappa, lam) = best
    lam *= scale
    # Float dust is not a finding: σ = 3.8e-18 means "no contention measured", κ likewise.
    sigma = 0.0 if sigma < 1e-9 else sigma
    kappa = 0.0 if kappa < 1e-12 else kappa
    sst = float(np.sum((y - y.mean()) ** 2))
    # y is scaled to a maximum of 1: a flat series (no variance to explain) that the curve follows
    # within 0.1 % is a perfect fit, not R² 0
    if sst > 1e-12 * float(np.sum(y ** 2)):
        r2 = 1.0 - sse / sst
    else:
        r2 = 1.0 if math.sqrt(sse / y.size) <= 1e-3 else 0.0
    peak_n = math.sqrt((1.0 - sigma) / kappa) if kappa > 0 and sigma < 1.0 else math.inf
    # A peak ten thousand times beyond the data is numerical dust on κ = 0.
    if peak_n <= 1e4 * float(n.max()):
        peak_x = float(usl(peak_n, sigma, kappa, lam))
    else:
        peak_n = math.inf
        # No retrograde peak: the ceiling is the Amdahl asymptote λ/σ, unless that is
        # over a thousand times the best measured throughput (σ fitted as ~0).
        ceiling = lam / sigma if sigma > 0 else math.inf
        peak_x = ceiling if ceiling <= 1e3 * float(np.max(x)) else math.inf
    fit = UslFit(float(sigma), float(kappa), float(lam), peak_n, peak_x, float(r2), int(n.size))
    log.debug("USL fit: %s", fit)
    return fit


def _clean(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose throughput means something: :func:`~labkit.analysis.sla.is_ok` and a measured rps."""
    return df[is_ok(df) & df["rps"].notna()]


def throughput_by_nodes(df: pd.DataFrame) -> pd.DataFrame:
    """Peak clean throughput per node count: columns ``nodes``, ``rps``.

    The peak over concurrency levels is the capacity of that many nodes, which
    is what the USL models. Rows with errors are left out (fast error
    responses inflate requests per second).
    """
    clean = _clean(df)
    out = clean.groupby("nodes", sort=True)["rps"].max().reset_index()
    return out.astype({"nodes": "int64", "rps": "float64"})


def throughput_by_concurrency(df: pd.DataFrame, nodes: int = 1) -> pd.DataFrame:
    """Mean clean throughput per concurrency level at one node count: ``concurrency``, ``rps``."""
    clean = _clean(df[df["nodes"] == nodes])
    out = clean.groupby("concurrency", sort=True)["rps"].mean().reset_index()
    return out.astype({"concurrency": "int64", "rps": "float64"})


def fit_nodes(df: pd.DataFrame) -> UslFit:
    """USL fit of peak throughput against node count (see :func:`throughput_by_nodes`)."""
    t = throughput_by_nodes(df)
    return fit_usl(t["nodes"], t["rps"])


def fit_concurrency(df: pd.DataFrame, nodes: int = 1) -> UslFit:
    """USL fit of throughput against concurrency at one node count (the handout's part 1)."""
    t = throughput_by_concurrency(df, nodes)
    return fit_usl(t["concurrency"], t["rps"])


@dataclass(frozen=True)
class Extrapolation:
    """A predicted node count for a user level no measured node count supports.

    ``nodes`` is ``None`` when the fitted curve never gets there (throughput
    peaks first, or more than ``max_nodes`` would be needed); ``note`` says why.
    """

    nodes: int | None
    users: int
    reference_nodes: int
    reference_max_concurrency: int
    fit: UslFit
    method: str
    note: str = ""
    label: str = EXTRAPOLATION_LABEL

    def to_dict(self) -> dict:
        """JSON-ready form used by the report."""
        return {"label": self.label, "nodes": self.nodes, "users": self.users,
                "reference_nodes": self.reference_nodes,
                "reference_max_concurrency": self.reference_max_concurrency,
                "method": self.method, "note": self.note}


def predict_nodes(df: pd.DataFrame, sla, users: int, fit: UslFit | None = None,
                  max_nodes: int = 1000) -> Extrapolation:
    """Extrapolate how many nodes ``users`` would need under ``sla``. Not a measurement.

    Method: assume the concurrency a deployment sustains within the SLA grows
    in proportion to its throughput, ``max_conc(N) ≈ max_conc(R)·X(N)/X(R)``,
    with X the USL fit of throughput vs nodes and R the largest tested node
    count that meets the SLA at some level (the measurement closest to the
    target). The answer is the smallest N above every tested node count for
    which that estimate reaches ``users`` — below them the measurements
    already said no.

    Raises :class:`~labkit.errors.ConfigError` when there is nothing to scale
    from: fewer than three node counts with clean throughput, or no node count
    meeting the SLA at any level.
    """
    users = _check_users(users)
    fit = fit or fit_nodes(df)
    if not fit.r2 >= MIN_R2:
        raise ConfigError(f"cannot extrapolate: {describe_fit(fit, 'nodes')}")
    mc = max_concurrency(df, sla)
    refs = {n: c for n, c in mc.items() if c is not None}
    if not refs:
        raise ConfigError("cannot extrapolate: no tested node count meets the SLA even at its "
                          "lowest concurrency, so there is no capacity to scale from")
    ref_n = max(refs)
    ref_c = refs[ref_n]
    method = (f"max_conc(N) ≈ {ref_c}·X(N)/X({ref_n}), X = USL fit of peak throughput vs nodes — "
              f"{describe_fit(fit, 'nodes')}")
    x_ref = float(fit.predict(ref_n))
    start = max(mc) + 1
    limit = max_nodes if not math.isfinite(fit.peak_n) else min(max_nodes, max(start, math.ceil(fit.peak_n) + 1))
    ns = np.arange(start, max(start, limit) + 1)
    est = ref_c * fit.predict(ns) / x_ref if x_ref > 0 else np.zeros(ns.size)
    hit = np.flatnonzero(est >= users)
    if hit.size:
        nodes = int(ns[hit[0]])
        note = f"about {est[hit[0]]:.0f} concurrent users estimated within the SLA at {nodes} nodes"
        return Extrapolation(nodes, users, ref_n, ref_c, fit, method, note)
    best = float(est.max()) if est.size else float(ref_c)
    if math.isfinite(fit.peak_n) and fit.peak_n < max_nodes:
        note = (f"the fit peaks at about {fit.peak_n:.1f} nodes ({fit.peak_x:.0f} req/s), "
                f"supporting about {best:.0f} users: adding nodes does not reach {users}")
    else:
        note = f"more than {max_nodes} nodes would be needed (about {best:.0f} users at {max_nodes})"
    return Extrapolation(None, users, ref_n, ref_c, fit, method, note)
