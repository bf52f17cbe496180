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
# # Lab 02 · Scaling — 00 Setup
#
# In this lab you deploy a small Flask REST service that computes Fibonacci numbers,
# benchmark it with ApacheBench (`ab`), scale it **vertically** (bigger machines) and
# **horizontally** (1–5 servers behind an nginx round-robin load balancer), and answer two
# Service Level Agreement (SLA) questions from your own measurements.
#
# | notebook | what you do |
# |---|---|
# | 00_setup (this one) | check the machine, choose where to run, see what a run costs |
# | 01_single_server | one server: curl test, a small `ab` run, the concurrency sweep, report part 1 |
# | 02_load_balancer | nginx round robin, sweeps for 1–5 nodes, the single chart, report part 2 |
# | 03_vertical_scaling | bigger machines, Flask's development server vs gunicorn workers |
# | 04_reanalysis | re-open saved results with the interactive SLA explorer |
#
# Each notebook's first code cell holds its parameters (where to run, how much to measure, where
# the results go). Change them there, or let `labkit lab` / papermill inject them — nothing else
# in the notebooks needs editing.

# %% tags=["parameters"]
backend = "local"  # where the machines are: local | ssh | gcp
profile = "quick"  # how much of the handout's grid to measure: full | quick | tiny
machine_type = "f1-micro"  # the servers' machine type (the handout's micro instance)
cloud = {}  # gcp: {"project": "my-project", "zone": "us-central1-a"}; ssh: {"hosts": "hosts.toml"}; {}: from `labkit lab` / LABKIT_*

# %%
import pandas as pd

from labkit import (MACHINE_TYPES, PRICES_AS_OF, cost_table, doctor_table, get_backend, get_profile,
                    profiles_table, require_healthy)

# %% [markdown]
# ## 1. Check the environment
#
# The handout installs Flask on the server, `apache2-utils` (for `ab`) on the tester and
# nginx on the balancer. Here one check lists what this machine has and, for anything
# missing, the exact command that installs it. Required rows must be `True` before you
# go on; optional ones only matter for the `ssh` and `gcp` backends or for grading.

# %%
doctor_table()

# %% [markdown]
# Stop here with a clear message if a tool the chosen backend needs is missing
# (run the `fix` command from the table above, or `make setup`).

# %%
require_healthy(backend)

# %% [markdown]
# ## 2. Choose a backend
#
# The same notebooks run in three places:
#
# - `local` — every server, the balancer and the tester are processes on this machine, each
#   on its own loopback address and held to its machine type's CPU share and memory by a
#   cgroup, so five `f1-micro` servers really behave like five small machines;
# - `ssh` — existing Linux hosts (a lab room, any cloud's VMs);
# - `gcp` — Compute Engine VMs created for you, as the handout does by hand.
#
# Attaching to the backend shows what is running now (nothing, on a fresh start).

# %%
lab = get_backend(backend, **cloud)
lab.status()

# %% [markdown]
# ## 3. Machine types
#
# The handout's "micro instance, 0.6 GB" is `f1-micro`: a fifth of one CPU. Notebook 03
# compares it with bigger types. Prices are on-demand list prices (USD per hour) as dated below.

# %%
print("prices as of", PRICES_AS_OF)
pd.DataFrame(MACHINE_TYPES.values())

# %% [markdown]
# ## 4. Profiles: how much of the handout to measure
#
# The handout asks for 13 concurrency levels × 10,000 requests for each of 1–5 nodes: that is
# the `full` profile, hours of measuring. `quick` measures a subset that still reaches both
# questions — levels below the knee (1, 2, 5 users), five requests per user at every level,
# part 2's 2,000 users at its largest node count — in about five minutes of lab time; what it
# skips is said under every table, and nothing skipped is extrapolated silently. `tiny` exists
# for the automated tests. Your choice (the `profile` parameter) is shown last.

# %%
profiles_table()

# %%
get_profile(profile)

# %% [markdown]
# ## 5. What a cloud run would cost
#
# On Compute Engine every VM is billed while it runs. The estimate below prices the largest
# cluster each profile needs (servers, balancer, tester and their disks) for the time its
# requests take at an *assumed* throughput per server, plus half an hour of setup — a rough
# upper bound computed without contacting the cloud. Delete your VMs when you are done
# (`labkit down`); the `gcp` backend labels them with an expiry so `labkit gc` can catch leftovers.

# %%
cost_table(machine_type)

# %% [markdown]
# The run you chose (the `profile` and `machine_type` parameters), priced from `labkit plan`
# before anything is created: machines, boot disks and the external IPv4 address every VM
# gets, each with the date of its price. On `gcp` set the project and zone with
# `labkit lab --project P --zone Z`, or `LABKIT_GCP_PROJECT` / `LABKIT_GCP_ZONE`;
# `labkit plan --nodes 5` shows every request it would send.

# %%
cost_table(machine_type, profile=profile)
