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
concurrency = None  # concurrency levels (ab -c), e.g. [10, 100, 1000], or None for the profile's
requests = None  # requests per level (ab -n), or None for the profile's
repeats = None  # rows per level (to check an outlier, e.g. 3), or None for the profile's (1)
refine = None  # SLA whose boundary to bisect after the levels, None for the profile's (quick: part 1's), "" for none
results_csv = "../runs/lab.csv"  # results of notebooks 01-03 (one CSV, resumed, never overwritten)
charts_dir = "../runs/charts"  # where the PNG charts are saved
cloud = {}  # gcp: {"project": "my-project", "zone": "us-central1-a"}; ssh: {"hosts": "hosts.toml"}; {}: from `labkit lab` / LABKIT_*

# %%
from IPython.display import display

from labkit import (PART1_SLA, UNANSWERED, AbCommand, Sla, backlog_text, fibonacci, first_ab_run, get_backend,
                    handout_bug_text, handout_spec, image_step, justify_part1, littles_law_text, load_handout,
                    max_concurrency, noise_text, payload_text, percentiles_chart, profiles_grid, require_answer,
                    run_sweep, save_chart, skipped_text, tables_by_nodes, use_table_format)

use_table_format()

# %% [markdown]
# ## Deploy a simple web service (handout steps 1–5)
#
# The handout creates `restserver-0`, installs Flask, copies `restserver.py` to it and starts
# `flask run`. Here one call does all of it on the chosen backend: one server of the chosen
# machine type running the Flask development server (no load balancer yet). The status lists
# the machines, their addresses and the service's own `/status` counters. On `gcp` or `ssh`, the
# `cloud` parameter says where (or `labkit lab --backend gcp` / the `LABKIT_*` settings do).

# %% tags=["measure"]
lab = get_backend(backend, **cloud)
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
# With the handout's own `restserver.py` (step 4) that output never appears: its responses are built
# with `str.format` on a JSON template, and the template's own braces break it. Run here, the handout's
# line raises; the service labkit deploys (`service/restserver.py`) builds the same bytes with
# `json.dumps` instead:

# %%
print(handout_bug_text())

# %% [markdown]
# ## Measuring your instance performance: a first `ab` run (step 5)
#
# The handout's verification run: 10 requests, 10 at a time,
# `ab -p payload.json -T application/json -m POST -c 10 -n 10 -s 10 -r`. labkit runs `ab` on
# the tester with its open-file limit raised (the handout's `ulimit -n 10000`, step 6) and
# reads every field of the report into one results row.
#
# First the handout's `payload.json` (step 4 on the tester), the body ab posts with every request:

# %%
print(payload_text())

# %% [markdown]
# The command, and ab's report exactly as ab printed it on the tester — compare it with the
# handout's sample output (yours has `Percentage of the requests served within a certain time` too):

# %% tags=["measure"]
first = AbCommand(lab.url, concurrency=10, requests=10, timeout_s=10)
print(first)
run, first_row = first_ab_run(lab, first)
print(run.stdout)

# %% [markdown]
# The same report read into one results row (the columns every sweep below appends to `results_csv`;
# `mean_ms` is the mean time one request took, `ab_mean_ms` ab's `Time per request`):

# %% tags=["measure"]
first_row

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
# The handout's levels jump (10, 20, 50, 100 …): when the answer lies between two of them, a
# little machine noise can move it from one to the other. The quick profile therefore
# **refines** the boundary: after the levels, it bisects between the last level that met the
# part-1 SLA and the first that failed, measuring each probe three times (all must meet),
# until the bracket is within 10 % or 5 users. Probes are ordinary rows of the CSV. It also
# measures 1, 2 and 5 users, below the handout's levels, to show the server before it is busy,
# and sends five requests per user at each level (at least 500).

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
display(tables_by_nodes(df)[1])
skipped_text(profile, 1)

# %% [markdown]
# ## Interpret your results
#
# Below each question, the evidence from **your** `results_csv`: your points and flags, not the answer.
# Compare it with your table, and answer each question in your own words, quoting your numbers
# (these answers are graded by hand).
#
# **Little's law.** ab keeps N = concurrency requests in flight and sends the next one as soon as one
# returns (a closed loop without think time), so throughput X (req/s) times the mean response time R (s)
# equals N. Your clean points (⚠ marks a point where X·R is far from N: fewer requests were in flight
# than ab was asked for — a short run's ramp-up, connect stalls, fast failures or a busy tester):

# %%
littles_law_text(df, nodes=1, k=20)

# %% [markdown]
# ### Interpret your results
#
# Little's law: using two of your points, show that concurrency ≈ throughput × mean request time
# (N = X·R), and explain with your numbers why, once throughput stops growing, each additional user
# adds waiting time instead of throughput. At which concurrency did your server saturate?

# %% [markdown] nbgrader={"grade": true, "grade_id": "interpret_01_littles_law", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# A full answer (2 points):
#
# - computes X·R for at least two of the student's own points and compares it with the concurrency
#   (X in req/s × R in s ≈ N, with the student's own numbers), noting a ratio far from 1 where the
#   evidence flags one — 1 point;
# - names the level from which throughput stays flat (the server is busy all the time, about
#   X_max rps) and explains R = N / X_max: more users only lengthen the queue, so the mean grows in
#   proportion to the users — with the student's own numbers — 1 point.
#
# Half credit for the explanation without the student's own numbers.

# %% [markdown]
# **One node, reached directly.** The Flask development server (Werkzeug) listens with a backlog of 128
# connections. When more than that wait to be accepted, the kernel drops new SYNs; the client's kernel
# retransmits a dropped SYN after 1 s, then after 2, 4 and 8 s more, so a connection that had to wait
# completes about 1, 3, 7 or 15 s after it started. ab gives each socket 10 s (`-s 10`); when one waits
# longer, ab stops the whole run with `apr_pollset_poll: The timeout specified has expired (70007)` (the
# handout's note): an aborted row, not a latency. A long request at a level *under* the backlog, with a
# small connect time, is not a SYN retransmission: the connection was accepted at once.
#
# Your one-node evidence:

# %%
backlog_text(df[df["nodes"] == 1])

# %% [markdown]
# ### Interpret your results
#
# Backlog, SYN retries and 70007: which of your levels aborted, or showed a connect time or longest
# request near 1, 3, 7 or 15 s? For each, say whether the level was above the listen backlog (128) and
# whether the connect time shows the wait. Explain what happens to a connection when more clients than
# the backlog are waiting, and why ab then aborts the run with 70007 instead of counting failed requests.

# %% [markdown] nbgrader={"grade": true, "grade_id": "interpret_01_backlog", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# A full answer (2 points):
#
# - quotes the student's aborted levels (or that none aborted) and their largest connect mean, and any
#   connect time or max near 1, 3, 7 or 15 s with its level, from the evidence or the table — 1 point;
# - explains the chain: above 128 waiting connections Werkzeug's listen backlog is full, the kernel
#   drops new SYNs, the client retransmits them (a connection completes about 1, 3, 7 or 15 s late),
#   and a socket that waits longer than ab's `-s 10` makes ab stop the whole run with 70007 — so the
#   row is aborted, not a measurement of latency. A long max at a level under 128 with a small connect
#   mean is *not* attributed to SYN retries (the request itself was slow); when nothing aborted and no
#   level exceeded 128, says the backlog never filled at the levels measured — 1 point.
#
# Half credit for the mechanism without the student's own levels.

# %% [markdown]
# **Noise.** `max` is the single slowest request of a run (one out of `requests`): one request delayed by
# a SYN retransmission, a garbage collection or another process decides it, while p99 describes the
# slowest 1 %. A clause on `max` is the noisiest of the SLA. Your evidence — max against p99, repeated
# points, and every clause within 10 % of its bound:

# %%
noise_text(df[df["nodes"] == 1], PART1_SLA)

# %% [markdown]
# ### Interpret your results
#
# `max` and repeats: the part-1 SLA bounds the longest request. In one or two sentences, say from
# your results how far `max` is from p99 at your answer's level and the next, and whether a repeat
# could change your part-1 answer (a borderline point, or the spread of repeated points).

# %% [markdown] nbgrader={"grade": true, "grade_id": "interpret_01_noise", "locked": false, "points": 1, "schema_version": 3, "solution": true, "task": false}
# A full answer (1 point): states that `max` is a single request out of thousands (p99 describes
# the slowest 1 %), quotes max vs p99 at the student's deciding levels, and uses the printout's
# clauses within 10 % of their bound or repeats (or their absence) to say whether the part-1 answer
# could flip on a repeat. Half credit without the student's own numbers.

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
# ## A chart to substantiate the answer
#
# Mean, 98th percentile and longest request against concurrency, with the part-1 SLA's
# bounds as dashed lines (ticked on the log latency axis). Your answer `part1_max_users` is the
# solid vertical line, with the levels up to it shaded: every line must stay under its bound
# there.

# %%
fig = percentiles_chart(df, PART1_SLA, nodes=1, answer=part1_max_users if isinstance(part1_max_users, int) else None)
save_chart(fig, charts_dir, "01_latency_one_server.png")
fig

# %% [markdown]
# The checks below compare your answer with what your own results CSV gives (when the lab is graded;
# the cells tagged `measure` are not run then: nothing is measured again, your `results_csv` is read).

# %% nbgrader={"grade": true, "grade_id": "part1_answer_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# part1_max_users against the rule above (report part 1), on the student's own results_csv
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
# ## Save the server as an image (steps 7–8)
#
# The handout stops `restserver-0` and makes the `lab02-restserver` image from its disk, so that every
# further server is a clone. What that step is on your backend:

# %% tags=["measure"]
image_step(lab)

# %% [markdown]
# The server stays up: notebook 02 adds servers and a load balancer in front of it.
