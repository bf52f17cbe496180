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
# Re-open saved results — the reference data in `data/` by default, or any results CSV — without
# running anything, and explore how the answers change with the SLA. Served with Voilà
# (`make dashboard`) this notebook is a stand-alone dashboard.

# %% tags=["parameters"]
backend = "local"  # where the machines are: local | ssh | gcp
profile = "quick"  # how much of the handout's grid to measure: full | quick | tiny
machine_type = "f1-micro"  # the servers' machine type (the handout's micro instance)
nodes = None  # node counts for the load-balancer sweeps, e.g. [1, 2, 3, 4, 5], or None for the profile's
concurrency = None  # concurrency levels (ab -c), e.g. [10, 100, 1000], or None for the profile's
requests = None  # requests per level (ab -n), or None for the profile's
results_csv = "../runs/lab.csv"  # results of notebooks 01-03 (one CSV, resumed, never overwritten)
charts_dir = "../runs/charts"  # where the PNG charts are saved
csv = None  # results to re-analyse, or None for data/reference.csv, else the newest report, else results_csv

# %%
from IPython.display import display

from labkit import (PART1_SLA, PART2_SLA, PART2_USERS, SlaExplorer, build_report, describe_results, format_report,
                    load_handout, mean_latency_chart, reanalysis_csv, tables_by_nodes)

# %% [markdown]
# ## The data
#
# Which CSV is read, and its rows for the handout's configuration (the chosen machine type,
# Flask development server): notebook 03's other machine types would otherwise be counted as
# repeats of the same points.

# %%
source = reanalysis_csv(csv, fallback=results_csv)
df = load_handout(source, machine_type)
print(describe_results(df, source))

# %% [markdown]
# ## The SLA explorer
#
# Switch each clause on or off, change its operator and bound, change the number of users:
# the answers, the pass/FAIL heatmap and the per-point table (green: meets the SLA; the darker
# row sets each node count's maximum concurrency; red: fails, with the reason) follow.
# It opens on the part-1 SLA and part 2's 2000 users.

# %%
SlaExplorer(df, sla=PART1_SLA, users=PART2_USERS)

# %% [markdown]
# ## The two report answers from this data

# %%
print(format_report(build_report(df, PART1_SLA)))

# %%
print(format_report(build_report(df, PART2_SLA, users=PART2_USERS)))

# %% [markdown]
# ## The handout's tables and the single chart

# %%
for n, table in tables_by_nodes(df).items():
    print(f"{n} node(s)")
    display(table)

# %%
mean_latency_chart(df, PART2_SLA)
