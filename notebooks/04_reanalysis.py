# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 02 · Scaling — 04 Re-analysis
#
# Re-open saved results without running anything: by default your own latest results
# (`reports/*/results.csv`, or the CSV notebooks 01–03 wrote), the reference data in `data/` only when
# you have none. Overlay several CSVs (the reference vs yours vs a cloud run), choose the machine type
# and server, change the SLA — every percentile clause — and the number of users: the answers, the
# capacity model and its bottleneck follow. Served with Voilà (`make dashboard`) this notebook is a
# stand-alone dashboard.

# %% tags=["parameters"]
machine_type = "f1-micro"  # the servers' machine type (the handout's micro instance)
results_csv = "../runs/lab.csv"  # results of notebooks 01-03 (one CSV, resumed, never overwritten)
charts_dir = "../runs/charts"  # where the PNG charts (and the exported table) are saved
csv = None  # results to re-analyse, or None for your newest results, else data/reference.csv

# %%
from IPython.display import display

from labkit import (PART1_SLA, PART2_SLA, PART2_USERS, ReanalysisDashboard, build_report, describe_results,
                    format_report, load_handout, mean_latency_chart, provenance_text, reanalysis_csv,
                    deciding_table, role_utilisation_chart, tables_by_nodes, use_table_format)

use_table_format()

# %% [markdown]
# ## The dashboard
#
# **Results**: the CSV opened first is selected; ctrl/shift-click to overlay more (or add any path).
# **Answers for** picks the CSV the SLA answers and the capacity model are computed from; **machine
# type** and **server** filter every CSV (notebook 03's other machine types and gunicorn would otherwise
# count as repeats of the same points). Below the overlay chart, the SLA explorer: switch each clause
# on or off, change its operator and bound, change the number of users. The table shows each point's
# status, throughput, connect time, the Little's-law check X·R/N (≈ 1 for a sound measurement) and the
# busiest role. **Export** writes the filtered rows as CSV.

# %%
source = reanalysis_csv(csv, fallback=results_csv)
dashboard = ReanalysisDashboard(source, root="..", fallback=results_csv, sla=PART2_SLA, users=PART2_USERS,
                                machine_type=machine_type, export_dir=charts_dir)
dashboard

# %% [markdown]
# ## The data, and where it came from

# %%
df = load_handout(source, machine_type)
print(describe_results(df, source))
print(provenance_text(source))

# %% [markdown]
# ## The two report answers from this data
#
# Part 2 also gives the capacity model (labelled as one): Little's law N = X·R turns 2000 users at a
# mean under 300 ms into the throughput they need, the best throughput per server into the fewest
# servers that can deliver it, and — when the results have the per-role CPU columns — which machine
# caps first and which balancer the need requires.

# %%
print(format_report(build_report(df, PART1_SLA)))

# %%
print(format_report(build_report(df, PART2_SLA, users=PART2_USERS)))

# %% [markdown]
# ## Which machine is the bottleneck
#
# CPU utilisation of the servers, the balancer and the tester against concurrency, one panel per node
# count: the first line to reach 100 % limits the throughput.

# %%
role_utilisation_chart(df)  # shown, not saved: notebook 02 saves this chart of your own results

# %% [markdown]
# ## The handout's tables and the single chart

# %%
for n, table in tables_by_nodes(df).items():
    print(f"{n} node(s)")
    display(table)

# %% [markdown]
# The handout's tables average the runs of a repeated point; the SLA is decided by the **worst** run
# of each point (every run must meet it). Those deciding values, which the report above quotes:

# %%
deciding_table(df)

# %%
mean_latency_chart(df, PART2_SLA)
