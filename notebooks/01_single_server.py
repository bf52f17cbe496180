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
# # Lab 02 · Scaling — 01 One server
#
# Deploy the Fibonacci REST service on one server, check it answers, benchmark it with
# ApacheBench at rising concurrency, fill in the handout's table and answer report part 1:
# how many concurrent users can **one** server support within the SLA?

# %% tags=["parameters"]
backend = "local"  # where the machines are: local | ssh | gcp
profile = "quick"  # how much of the handout's grid to measure: full | quick | tiny
machine_type = "f1-micro"  # the servers' machine type (the handout's micro instance)
nodes = None  # node counts for the load-balancer sweeps, e.g. [1, 2, 3, 4, 5], or None for the profile's
concurrency = None  # concurrency levels (ab -c), e.g. [10, 100, 1000], or None for the profile's
requests = None  # requests per level (ab -n), or None for the profile's
repeats = None  # rows per level (to check an outlier, e.g. 3), or None for the profile's (1)
refine = None  # SLA whose boundary to bisect after the levels, None for the profile's (quick: part 1's), "" for none
results_csv = "../runs/lab.csv"  # results of notebooks 01-03 (one CSV, resumed, never overwritten)
charts_dir = "../runs/charts"  # where the PNG charts are saved

# %%
import pandas as pd

from labkit import (PART1_SLA, UNANSWERED, AbCommand, Sla, fibonacci, get_backend, handout_spec,
                    justify_part1, load_handout, max_concurrency, measure, percentiles_chart, profiles_grid,
                    require_answer, run_sweep, save_chart, tables_by_nodes)

# %% [markdown]
# ## Deploy a simple web service (handout steps 1–5)
#
# The handout creates `restserver-0`, installs Flask, copies `restserver.py` to it and starts
# `flask run`. Here one call does all of it on the chosen backend: one server of the chosen
# machine type running the Flask development server (no load balancer yet). The status lists
# the machines, their addresses and the service's own `/status` counters.

# %% tags=["measure"]
lab = get_backend(backend)
lab.up(handout_spec(machine_type))
lab.status()

# %% [markdown]
# ## Test your service (step 6)
#
# The handout's
# `curl -X POST -H 'Content-Type: application/json' http://<ADDR>/fibonacci -d '{"fibonacci_number": 20}'`
# must print `{"fibonacci_number": 20, "value": 6765}`. The check fails loudly if it does not.

# %% tags=["measure"]
answer = fibonacci(lab.url, 20)
assert answer == {"fibonacci_number": 20, "value": 6765}, answer
answer

# %% [markdown]
# ## Measuring your instance performance: a first `ab` run (step 5)
#
# The handout's verification run: 10 requests, 10 at a time,
# `ab -p payload.json -T application/json -m POST -c 10 -n 10 -s 10 -r`. labkit runs `ab` on
# the tester with its open-file limit raised (the handout's `ulimit -n 10000`, step 6) and
# reads every field of the report into one results row.

# %% tags=["measure"]
first = AbCommand(lab.url, concurrency=10, requests=10, timeout_s=10)
print(" ".join(first.argv(payload="payload.json", percentiles="percentiles.csv", gnuplot="times.tsv")))
pd.Series(measure(lab, first, retries=1).to_json())

# %% [markdown]
# ## The concurrency sweep (step 7)
#
# Run `ab` at each concurrency level, with the profile's number of requests per level. Each
# level's row is appended to `results_csv` as soon as it is measured, so an interrupted sweep
# loses nothing: running this cell again measures only the levels still missing. `ab`'s
# `apr_pollset_poll ... (70007)` early exits (the handout's note) are retried, then recorded
# as *aborted* rows rather than skipped (a level above one that aborted in every attempt is
# tried once: it would abort again).
#
# The handout's levels jump from 20 to 50 users, and one micro server's limit lies between
# them, so a little machine noise flips the answer between 20 and 50. The quick profile
# therefore **refines** the boundary: after the levels, it bisects between the last level that
# met the part-1 SLA and the first that failed, measuring each probe three times (all must
# meet), until the bracket is within 10 % or 5 users. Probes are ordinary rows of the CSV.

# %% tags=["measure"]
grid = profiles_grid(profile, handout_spec(machine_type), nodes=[1], concurrency=concurrency, requests=requests,
                     repeats=repeats, refine=refine)
run_sweep(lab, grid, results_csv, resume=True)

# %% [markdown]
# ## The handout's table
#
# Mean request time, longest request and 98th percentile per concurrency level, in ms.
# "Mean request time" is the mean time one request takes (what the SLA bounds), not ab's
# `Time per request` across all concurrent requests. `Runs` counts a level's rows (repeats,
# refinement probes); `Status` says whether the level is a clean measurement (`ok`), had
# failed or non-2xx requests (`errors`), answered only errors (`refused`) or was `aborted`.

# %%
df = load_handout(results_csv, machine_type)
tables_by_nodes(df)[1]

# %% [markdown]
# ## A chart to substantiate the answer
#
# Mean, 98th percentile and longest request against concurrency, with the part-1 SLA's
# bounds as dashed lines: the answer is the last level before any line crosses its bound.

# %%
fig = percentiles_chart(df, PART1_SLA, nodes=1)
save_chart(fig, charts_dir, "01_latency_one_server.png")
fig

# %% [markdown]
# ## Report, part 1
#
# > If we want to have a Service Level Agreement in which we tolerate a maximum response time up
# > to 1.5 seconds, with an average request time less than 200 ms, with a response 98% of the time
# > within 300 ms, what is the maximum number of concurrent users that we can support with only
# > one server?
#
# The SLA is `max<=1500 mean<200 p98<=300` (ms). A level meets it when ab completed it without
# failed or non-2xx requests and every clause holds (with repeats: in every run). The answer is
# the largest tested level — refinement probes included — such that **every** tested level up to
# it meets the SLA (`None` if even the lowest fails).
#
# Set `part1_max_users` to your answer (an integer, or `None`) and `part1_why` to a sentence
# that justifies it with the numbers from the table and chart.

# %% nbgrader={"grade": false, "grade_id": "part1_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
part1_max_users = UNANSWERED
part1_why = UNANSWERED
### BEGIN SOLUTION
part1_max_users = max_concurrency(df[df["nodes"] == 1], Sla.parse(PART1_SLA))[1]
part1_why = justify_part1(df, part1_max_users)
### END SOLUTION
print("part 1:", part1_max_users)
print(part1_why)

# %% [markdown]
# The checks below compare your answer with what your own results CSV gives (when the lab is graded;
# the cells tagged `measure` are not run then: nothing is measured again, your `results_csv` is read).

# %% nbgrader={"grade": true, "grade_id": "part1_answer_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# part1_max_users against design §8's rule on the student's own results_csv
require_answer(part1_max_users)
### BEGIN HIDDEN TESTS
from labkit import check_part1

check_part1(part1_max_users, results_csv, machine_type)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "part1_why_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# part1_why is a sentence that quotes the answer
require_answer(part1_why)
assert isinstance(part1_why, str) and len(part1_why.split()) >= 8, "justify the answer in a full sentence"
assert part1_max_users is None or str(part1_max_users) in part1_why, "quote your answer in the justification"

# %% [markdown]
# The server stays up: notebook 02 adds servers and a load balancer in front of it.
