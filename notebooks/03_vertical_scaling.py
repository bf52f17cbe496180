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
# # Lab 02 · Scaling — 03 Vertical scaling
#
# Instead of more servers, a **bigger** server: the same single node on machine types with more
# CPU, running either the Flask development server (what the handout uses) or gunicorn with
# several worker processes. The question: when does a bigger machine make the service faster?
#
# As in notebooks 01 and 02, every point goes to `results_csv`, which you hand in; when the lab is
# graded, the cells tagged `measure` are not run and the cells after them read your results.

# %% tags=["parameters"]
backend = "local"  # where the machines are: local | ssh | gcp
profile = "quick"  # how much of the handout's grid to measure: full | quick | tiny
requests = None  # requests per level (ab -n), or None for the profile's
results_csv = "../runs/lab.csv"  # results of notebooks 01-03 (one CSV, resumed, never overwritten)
charts_dir = "../runs/charts"  # where the PNG charts are saved
cloud = {}  # gcp: {"project": "my-project", "zone": "us-central1-a"}; ssh: {"hosts": "hosts.toml"}; {}: from `labkit lab` / LABKIT_*

# %%
from labkit import (get_profile, load_results, run_vertical, save_chart, use_table_format, vertical_backend,
                    vertical_chart, vertical_grids, vertical_table, vertical_text)

use_table_format()

# %% [markdown]
# ## What is compared
#
# The profile lists (machine type, server, workers) configurations, each measured on one node
# at a few concurrency levels. On the local backend every machine type's CPU share is enforced
# by a cgroup: an `f1-micro` gets 0.2 of a CPU, an `e2-medium` 1, an `e2-standard-2` 2.

# %%
grids = vertical_grids(profile, requests)
[(g.spec.machine_type, g.spec.server, g.spec.workers) for g in grids]

# %% [markdown]
# ## Measure each configuration
#
# The server is redeployed on each machine type and server, and each point is appended to the
# same `results_csv` (the configuration is part of every row, so nothing is mixed up and a
# re-run measures only what is missing).
#
# A benchmark must measure the server, not the tester: the handout's micro tester can serve fewer
# requests/s than a 2-vCPU gunicorn server. On the local backend the tester is therefore an
# `e2-standard-2` for this notebook (on ssh/gcp, use a tester host at least as big as the biggest
# server). A configuration notebook 01 already measured at these levels (the f1-micro Flask server)
# is not measured again: its rows keep the tester they were measured with, and the table below says
# which.

# %% tags=["measure"]
lab = vertical_backend(backend, **cloud)
run_vertical(lab, grids, results_csv)

# %% [markdown]
# ## Results
#
# Throughput (`rps@C`, requests per second) and mean request time (`mean_ms@C`) per
# configuration, at each concurrency level C, ordered by the machine's vCPUs.

# %%
results = load_results(results_csv)
vertical_table(results, concurrency=get_profile(profile).vertical_concurrency)

# %%
fig = vertical_chart(results, concurrency=get_profile(profile).vertical_concurrency)
save_chart(fig, charts_dir, "03_vertical_scaling.png")
fig

# %% [markdown]
# ## How each server uses the machine's cores
#
# The Flask development server is **one Python process**. Its threads share one interpreter,
# and CPython's global interpreter lock lets only one thread run Python code at a time — so
# however many cores the machine has, the server computes on at most one of them. Going from a
# fifth of a CPU (`f1-micro`) to a whole one helps, because the process was starved of that one
# core; beyond one vCPU the extra cores can only stay idle for its Python code (Werkzeug's threads
# still do some I/O and C work outside the lock).
#
# gunicorn starts several **worker processes**, each with its own interpreter and lock, and the
# operating system spreads them over the cores: on a machine with more than one vCPU its
# throughput can grow with the machine, until the CPU (or the tester, or the network) is the limit.
# It is also a leaner server than Werkzeug's development server, which is built for debugging,
# not for load — so compare the two on the *same* machine type in the table above before
# crediting the workers alone.
#
# So vertical scaling only pays when the software can use what the bigger machine adds; otherwise
# scale horizontally (notebook 02) — or change the server.
#
# Whether *your* numbers show this: per configuration at its highest concurrency, throughput, mean, how
# many cores the server kept busy (its CPU seconds per second of the run, measured) and the tester:

# %%
vertical_text(results, concurrency=get_profile(profile).vertical_concurrency)

# %% [markdown]
# ### Interpret your results
#
# Do *your* numbers show this? In two to four sentences, quote from your table the throughput of
# the Flask development server on the smallest and the largest machine type you measured, and the
# same for gunicorn (at the highest concurrency level). Say whether each scaled with the machine's
# vCPUs, and why — or, if your results disagree with the explanation above, what limited them.

# %% [markdown] nbgrader={"grade": true, "grade_id": "interpret_03_vertical", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# A full answer (2 points):
#
# - quotes the student's own rps for flask on the smallest and largest machine type and for gunicorn,
#   and states the ratios against the vCPU ratios; says what they show (flask gains from 0.2 to 1 vCPU,
#   starved of its one core; beyond one vCPU only if the student measured it) — 1 point;
# - explains it: one Python process with the GIL computes on at most one core, several worker
#   processes use several; and notes a confounder when the numbers show one (the tester's capacity,
#   gunicorn vs Werkzeug on the same machine type, noise between runs) — 1 point.
#
# Half credit for the explanation without the student's own numbers.

# %% [markdown]
# ## Clean up
#
# Stop every server, the balancer and the tester, and release their resources (on `gcp` this
# deletes the VMs — they cost money while they exist).

# %% tags=["measure"]
lab.down()
