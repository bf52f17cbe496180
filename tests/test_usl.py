"""USL fit against synthetic data from known σ, κ, λ; the labelled nodes extrapolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.support.analysis_data import make_row, write_csv
from labkit.errors import ConfigError
from labkit.results import load_results
from labkit.analysis.usl import (EXTRAPOLATION_LABEL, fit_concurrency, fit_nodes, fit_usl, predict_nodes,
                        throughput_by_nodes, usl)


def test_recovers_known_parameters_nodes():
    n = np.arange(1, 6)
    fit = fit_usl(n, usl(n, 0.05, 0.02, 1000.0))
    assert fit.sigma == pytest.approx(0.05, abs=1e-4)
    assert fit.kappa == pytest.approx(0.02, abs=1e-4)
    assert fit.lam == pytest.approx(1000.0, rel=1e-4)
    assert fit.peak_n == pytest.approx(math.sqrt(0.95 / 0.02), rel=1e-3)  # 6.89
    assert fit.peak_x == pytest.approx(usl(fit.peak_n, 0.05, 0.02, 1000.0), rel=1e-3)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.predict(8) == pytest.approx(usl(8, 0.05, 0.02, 1000.0), rel=1e-3)


def test_recovers_known_parameters_concurrency_with_noise_and_repeats():
    c = np.array([10, 20, 50, 100, 200, 500, 700, 1000, 1200, 1500, 2000, 2500, 3000])
    rng = np.random.default_rng(42)
    x = np.repeat(usl(c, 0.02, 1e-5, 20.0), 3) * (1 + 0.01 * rng.standard_normal(3 * c.size))
    fit = fit_usl(np.repeat(c, 3), x)
    assert fit.sigma == pytest.approx(0.02, rel=0.1)
    assert fit.kappa == pytest.approx(1e-5, rel=0.1)
    assert fit.lam == pytest.approx(20.0, rel=0.05)
    assert fit.r2 > 0.99
    assert fit.n_points == 39


def test_linear_contention_only_has_no_peak():
    n = np.arange(1, 6)
    fit = fit_usl(n, usl(n, 0.1, 0.0, 500.0))
    assert fit.sigma == pytest.approx(0.1, abs=1e-4)
    assert fit.kappa == pytest.approx(0.0, abs=1e-6)
    assert math.isinf(fit.peak_n)
    assert fit.peak_x == pytest.approx(5000.0, rel=1e-2)  # λ/σ asymptote
    assert fit.to_dict()["peak_n"] is None


@pytest.mark.parametrize("n,x", [([1, 2], [100, 190]), ([1, 1, 2, 2], [100, 101, 190, 191]), ([], [])])
def test_refuses_too_few_distinct_points(n, x):
    with pytest.raises(ConfigError, match="3 or more distinct sizes"):
        fit_usl(n, x)


def _sweep(tmp_path, nodes, sigma=0.05, kappa=0.02, lam=1000.0, base_max=200):
    """Rows whose peak rps follows USL(nodes) and whose SLA limit scales with it."""
    rows = []
    for n in nodes:
        x = float(usl(n, sigma, kappa, lam))
        limit = base_max * x / lam  # concurrency at which mean reaches 100 ms
        for c in (50, 100, 200, 400, 800, 1600):
            mean = 100.0 * c / limit
            rows.append(make_row(n, c, mean=mean, p98=mean, max_ms=mean, rps=x * min(1.0, c / 100)))
    rows.append(make_row(1, 1600, failed=5, rps=999999.0))  # errors: ignored for throughput
    return load_results(write_csv(tmp_path / "r.csv", rows))


def test_throughput_by_nodes_uses_clean_peak(tmp_path):
    df = _sweep(tmp_path, (1, 2, 3))
    t = throughput_by_nodes(df)
    assert t["nodes"].tolist() == [1, 2, 3]
    assert t["rps"].tolist() == pytest.approx([usl(n, 0.05, 0.02, 1000.0) for n in (1, 2, 3)], rel=1e-3)
    fit = fit_nodes(df)
    assert fit.sigma == pytest.approx(0.05, abs=1e-3) and fit.kappa == pytest.approx(0.02, abs=1e-3)


def test_fit_concurrency_on_one_node(tmp_path):
    levels = (10, 20, 50, 100, 200, 500, 1000, 2000)
    rows = [make_row(1, c, rps=float(usl(c, 0.02, 1e-5, 20.0))) for c in levels]
    rows += [make_row(2, c, rps=1.0) for c in levels]  # other node counts are not mixed in
    rows.append(make_row(1, 3000, aborted=True))
    fit = fit_concurrency(load_results(write_csv(tmp_path / "c.csv", rows)), nodes=1)
    assert fit.n_points == len(levels)
    assert fit.sigma == pytest.approx(0.02, rel=1e-2)
    assert fit.kappa == pytest.approx(1e-5, rel=1e-2)
    assert fit.lam == pytest.approx(20.0, rel=1e-2)


def test_predict_nodes_extrapolates_and_is_labelled(tmp_path):
    # No contention/coherency: X(N) = 1000 N. Limit: mean<=100 up to c = 200 N (levels x2).
    df = _sweep(tmp_path, (1, 2, 3), sigma=0.0, kappa=0.0)
    sla = "mean<=100"
    from labkit.analysis.sla import max_concurrency
    assert max_concurrency(df, sla) == {1: 200, 2: 400, 3: 400}
    ex = predict_nodes(df, sla, 1000)
    # reference: 3 nodes at 400 -> 400·N/3 >= 1000 -> N = 8
    assert ex.nodes == 8
    assert (ex.reference_nodes, ex.reference_max_concurrency) == (3, 400)
    assert ex.label == EXTRAPOLATION_LABEL and ex.label.startswith("extrapolation (USL fit)")
    assert ex.to_dict()["nodes"] == 8 and "X(N)/X(3)" in ex.method


def test_predict_nodes_unreachable_past_the_peak(tmp_path):
    df = _sweep(tmp_path, (1, 2, 3, 4, 5))
    ex = predict_nodes(df, "mean<=100", 100000)
    assert ex.nodes is None
    assert "peaks at about 6.9 nodes" in ex.note


def test_predict_nodes_refusals(tmp_path):
    two = _sweep(tmp_path, (1, 2))
    with pytest.raises(ConfigError, match="3 or more distinct sizes"):
        predict_nodes(two, "mean<=100", 5000)
    three = _sweep(tmp_path, (1, 2, 3))
    with pytest.raises(ConfigError, match="no tested node count meets the SLA"):
        predict_nodes(three, "mean<1", 5000)


def test_perfectly_linear_scaling_has_neither_peak_nor_ceiling():
    """σ = κ = 0: no peak and no Amdahl ceiling (not λ/σ with σ at float dust)."""
    fit = fit_usl([1, 2, 3, 4, 5], [300.0, 600.0, 900.0, 1200.0, 1500.0])
    assert fit.sigma < 1e-3 and fit.kappa < 1e-6
    assert math.isinf(fit.peak_n) and math.isinf(fit.peak_x)
    assert fit.to_dict()["peak_throughput"] is None and fit.to_dict()["peak_n"] is None
    assert fit.lam == pytest.approx(300.0, rel=1e-3)


def test_the_fit_is_described_in_words_never_as_float_dust():
    from labkit.analysis.usl import describe_fit

    linear = fit_usl([1, 2, 3, 4, 5], [300.0, 600.0, 900.0, 1200.0, 1500.0])
    assert linear.sigma == 0.0 or linear.sigma >= 1e-9  # no 3.781e-18: dust is snapped to 0
    text = describe_fit(linear, "nodes")
    assert text.startswith("linear so far: no contention measured (300 req/s per node)")
    assert "e-" not in text and "σ" not in text
    assert linear.to_dict()["summary"] == text
    n = np.arange(1, 6)
    peaked = fit_usl(n, usl(n, 0.05, 0.02, 1000.0))
    assert describe_fit(peaked).startswith("peaks at 6.9 nodes (")
    flat = fit_usl(n, usl(n, 0.1, 0.0, 500.0))
    assert describe_fit(flat).startswith("sub-linear: 10% of the work is serialised (contention), "
                                         "levelling off towards 5,000 req/s")
    c = np.array([10, 20, 50, 100, 200, 500, 1000])
    assert describe_fit(fit_usl(c, usl(c, 0.02, 1e-5, 20.0)), "concurrency").startswith("peaks at concurrency 313 (762 req/s)")
    # one f1-micro at c = 10..200 (the 2026-11-29 reference): flat, no "peaks at concurrency 0"
    one = fit_usl([10, 20, 50, 100, 200], [186.1, 167.9, 155.5, 150.6, 170.4])
    text = describe_fit(one, "concurrency")
    # ... whose R² (0.06) is too low for any description: said so, with no peak and no contention claim
    assert text == ("no usable fit: the USL curve explains too little of the measured throughput (R² 0.06, "
                    "5 points) to say anything about contention or a peak")


def test_a_fit_that_explains_nothing_is_not_extrapolated(tmp_path):
    rows = []
    for n, x in ((1, 100.0), (2, 60.0), (3, 110.0), (4, 70.0), (5, 105.0)):
        rows += [make_row(n, c, mean=1000.0 * c / x, rps=x) for c in (10, 50)]
    df = load_results(write_csv(tmp_path / "r.csv", rows))
    fit = fit_nodes(df)
    assert fit.r2 < 0.5
    with pytest.raises(ConfigError, match="cannot extrapolate: no usable fit"):
        predict_nodes(df, "mean<=1000", 1000)


def test_extrapolation_method_is_in_words(tmp_path):
    df = _sweep(tmp_path, (1, 2, 3), sigma=0.0, kappa=0.0)
    ex = predict_nodes(df, "mean<=100", 1000)
    assert "linear so far: no contention measured" in ex.method and "σ=" not in ex.method


def test_reaches_and_from_dict_round_trip():
    from labkit.analysis.usl import UslFit

    fit = UslFit(sigma=0.0, kappa=0.0, lam=227.0, peak_n=math.inf, peak_x=math.inf, r2=0.94, n_points=4)
    assert fit.reaches(1593.0) == 7.1 and fit.reaches(227.0) == 1.0
    assert fit.reaches(1e9, end=100.0) is None
    assert UslFit.from_dict(fit.to_dict()) == fit
