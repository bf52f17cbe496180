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
# # Lab 02 · Scaling — 02 Adding a load balancer
#
# Scale the service horizontally: clone the server, put an nginx load balancer in front of the
# servers (round robin), watch the balancer spread requests, then repeat the benchmark with
# 1–5 servers and answer report part 2: how many nodes do 2000 concurrent users need?
#
# Your measurements go to `results_csv` (in the handed-out assignment: `results.csv` beside this
# notebook), and you hand that file in with the notebooks. When the lab is graded, the cells tagged
# `measure` are not run: nothing is deployed or measured again, the cells after them read your
# `results_csv`, and your answers are checked against *your* numbers.

# %% tags=["parameters"]
backend = "local"  # where the machines are: local | ssh | gcp
profile = "quick"  # how much of the handout's grid to measure: full | quick | tiny
machine_type = "f1-micro"  # the servers' machine type (the handout's micro instance)
nodes = None  # node counts to measure, e.g. [1, 2, 3, 4, 5], or None for the profile's
concurrency = None  # concurrency levels (ab -c), e.g. [10, 100, 1000], or None for the profile's
requests = None  # requests per level (ab -n), or None for the profile's
results_csv = "../runs/lab.csv"  # results of notebooks 01-03 (one CSV, resumed, never overwritten)
balancer_csv = "../runs/balancer.csv"  # one node behind nginx (the balancer's cost; kept apart from results_csv)
charts_dir = "../runs/charts"  # where the PNG charts are saved
cloud = {}  # gcp: {"project": "my-project", "zone": "us-central1-a"}; ssh: {"hosts": "hosts.toml"}; {}: from `labkit lab` / LABKIT_*

# %%
from IPython.display import Markdown, display

from labkit import (PART2_SLA, PART2_USERS, UNANSWERED, backlog_text, balancer_cost_text, balancer_grid,
                    bottleneck_text, build_report, format_report, get_backend, handout_spec,
                    internal_ip_test, justify_part2,
                    littles_law_text, load_handout, mean_latency_chart, nginx_change,
                    nginx_limits_text, noise_text, part2_answer, require_answer,
                    role_utilisation_chart, round_robin_table, round_robin_text, run_sweep,
                    save_chart, scale_grids, skipped_text, sla_heatmap, step14_curls,
                    tables_by_nodes, throughput_chart, use_table_format)

use_table_format()

# %% [markdown]
# ## A second server and the balancer (handout steps 1–13)
#
# The handout creates `restserver-1` from the `lab02-restserver` image, creates
# `loadbalancer-0`, raises nginx's `worker_connections` to 4096 and its open-file limit to
# 65536, adds an `upstream fibonacci` block listing the servers with `proxy_pass
# http://fibonacci`, and reloads nginx. Here one call does the same; every new nginx
# configuration is checked with `nginx -t` before it is loaded, so a bad one never replaces
# a working one. The status now lists both servers and the balancer.

# %% tags=["measure"]
lab = get_backend(backend, **cloud)
lab.up(handout_spec(machine_type, nodes=2))
lab.status()

# %% [markdown]
# ### restserver-1 answers on its internal address (step 2)
#
# Before the balancer is trusted, each server is tested directly, from the tester, on its own
# (internal) address — one request of the handout's payload each:

# %% tags=["measure"]
internal_ip_test(lab)

# %% [markdown]
# ### The nginx configuration change (steps 8–11)
#
# The handout edits the default site: the `location /` that served files becomes a `proxy_pass` to an
# `upstream fibonacci` block listing the servers. The change, from the default site (before) to the
# configuration your balancer runs (after) — labkit writes a whole standalone nginx.conf, so the
# `events`/`http` lines of steps 5–6 are in it too:

# %% tags=["measure"]
print(nginx_change(lab.balancer_config()))

# %% [markdown]
# Handout step 7's check of the balancer's open-file limit, `cat /proc/<PID>/limits` (the PID from
# `ps | grep nginx`), read from the running balancer's nginx processes:

# %% tags=["measure"]
print(nginx_limits_text(lab))

# %% [markdown]
# ## Test the balancer (step 14)
#
# The same request as before, now sent to the balancer: from the tester on the balancer's internal and
# external addresses, and from your workstation (this notebook).

# %% tags=["measure"]
curls = step14_curls(lab)
assert curls["answered"].dropna().all(), curls
curls

# %% [markdown]
# ## Round robin, seen through `/status` (step 15)
#
# `curl http://<LOADBALANCER>/status`, several times. Each answer comes from whichever server
# nginx picked: the `node` column names it, and `requests` and `cache_length` are **that**
# server's own counters — which is why the output changes from call to call. With round robin
# the nodes take turns; how strictly depends on how many worker processes nginx runs (each keeps
# its own turn), which the text under the table reads from your balancer.

# %% tags=["measure"]
rr = round_robin_table(lab.url, calls=3 * lab.spec.nodes)
print(round_robin_text(rr, lab))
rr

# %% [markdown]
# ## Report 1–2: the sweep for 1–5 nodes
#
# For each node count the balancer is reconfigured (servers started or stopped, nginx's
# upstream list rewritten and reloaded) and every concurrency level measured. Points already
# in `results_csv` — notebook 01's single-server levels — are not measured again. The quick
# profile measures part 2's 2,000 users at its largest node count only; the line under each
# table says which of the handout's levels and node counts it did not measure.

# %% tags=["measure"]
for grid in scale_grids(profile, handout_spec(machine_type), nodes, concurrency, requests):
    run_sweep(lab, grid, results_csv, resume=True)

# %% [markdown]
# The handout's table, once per node count (1 node = notebook 01's server without a balancer):

# %%
df = load_handout(results_csv, machine_type)
for n, table in tables_by_nodes(df).items():
    display(Markdown(f"**{n} node(s)**"), table, Markdown(skipped_text(profile, n)))

# %% [markdown]
# ## Report 3: the single chart
#
# Mean request time against concurrent users, one line per node count, with part 2's mean
# bound (300 ms) dashed; the latency axis is logarithmic so that the points near 300 ms and the
# seconds-long overloaded ones are both readable.

# %%
fig = mean_latency_chart(df, PART2_SLA)
save_chart(fig, charts_dir, "02_mean_latency.png")
fig

# %% [markdown]
# Two more views of the same data: which (nodes, concurrency) points meet the part-2 SLA (grey:
# not tested), and peak throughput against nodes beside what 2000 users need — the throughput
# Little's law asks for, each role's cap, and the capacity model's line to its answer (all
# models, labelled) — with a Universal Scalability Law fit when it explains your peaks.

# %%
fig = sla_heatmap(df, PART2_SLA)
save_chart(fig, charts_dir, "02_sla_heatmap.png")
fig

# %%
fig = throughput_chart(df, PART2_SLA, PART2_USERS)
save_chart(fig, charts_dir, "02_throughput.png")
fig

# %% [markdown]
# ## Interpret your results
#
# Below each question, the evidence from **your** `results_csv`; answer in your own words, quoting your
# numbers (graded by hand).
#
# **Direct vs through the balancer.** One node is reached directly: the tester's connections wait in
# Werkzeug's listen backlog of 128 (notebook 01). Two or more sit behind nginx, and open-source nginx
# works like this:
#
# - the tester connects to **nginx**, which accepts from its own listen backlog (511 by default) with up
#   to 4096 connections per worker process;
# - nginx has **no queue of requests** towards the servers: for every request it takes a connection to
#   the next server in turn — an idle one kept open for reuse when the `upstream` block says `keepalive`
#   (labkit's nginx.conf keeps up to 64 per worker; the handout's configuration has none, so it opens a
#   new connection per request) or a new one. With N users in flight, each server holds about
#   N / nodes connections; above 128 per server, *nginx's own* connects are dropped and retried after
#   1, 3, 7, 15 s — long requests while the tester's connect time stays small;
# - a server that refuses or times out counts towards `max_fails` (1 by default) and is then skipped for
#   `fail_timeout` (10 s by default); with every server skipped, nginx answers 502 at once — fast non-2xx
#   responses (status `refused` or `errors`), not measurements of the service.
#
# Your evidence, one node and behind nginx:

# %%
backlog_text(df)

# %% [markdown]
# ### Interpret your results
#
# Direct vs through the balancer: compare how your one-node runs and your runs behind nginx failed
# at high concurrency (aborted levels, connect times, non-2xx responses). Explain the difference from
# what accepts the connections in each case.

# %% [markdown] nbgrader={"grade": true, "grade_id": "interpret_02_balancer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# A full answer (2 points):
#
# - quotes the student's own evidence on both sides: aborted levels (70007) and connect means or
#   maxima near 1, 3, 7, 15 s at one node; behind nginx the aborted levels, the (small) connect times,
#   long maxima with their users per server, and any `errors`/`refused` points with their non-2xx
#   counts — 1 point;
# - explains it: directly, Werkzeug's backlog of 128 fills, the tester's SYNs are dropped and
#   retransmitted, and a socket waiting past ab's `-s 10` aborts the run (70007). Behind nginx the
#   tester's connects are accepted by nginx (its own backlog of 511), but nginx does not queue requests:
#   each request holds one upstream connection (new, or a kept-alive idle one), so above ~128 users per
#   server nginx's own connects to a server stall on SYN retries (long requests, small client connect
#   times); a server that fails or times out is skipped for `fail_timeout` after `max_fails`, and with
#   none left nginx answers 502 at once (fast non-2xx, not measurements). An answer saying nginx
#   "queues the requests towards the servers" gets no credit for the mechanism — 1 point.
#
# Half credit for the mechanism without the student's own numbers.

# %% [markdown]
# ## What the balancer itself costs: one node behind nginx
#
# Every point behind nginx above also has more servers, so it mixes what the balancer costs with what
# the servers add. One server measured both ways — directly (your one-node rows) and behind nginx, at
# the same users — holds everything but the balancer fixed. The balancer is reconfigured with a single
# upstream server; these rows go to `balancer_csv`, apart from `results_csv`, because they are not the
# handout's single server (and the analysis refuses to pool the two).

# %% tags=["measure"]
run_sweep(lab, balancer_grid(profile, handout_spec(machine_type)), balancer_csv, resume=True)

# %% [markdown]
# Below the knee, the difference of the means is what the extra hop (tester → nginx → server) adds to
# every request; where the server is saturated, the difference of the throughputs is what the balancer
# takes from one server, and its CPU per request is the balancer's demand, which grows with the requests
# of every server behind it (the capacity model reads the same demand from your rows at 2+ nodes).
#
# How a direct request ends matters here. ab (without `-k`) counts a request as done when the server
# closes the connection, and the Flask development server closes it only after waiting up to 10 ms for
# more request data (Werkzeug's `select(timeout=0.01)` after every response). nginx reads the response
# by its `Content-Length`, answers ab and closes ab's connection at once, so that wait no longer delays
# the response. If your one node answers *faster* behind nginx, this is why — and the table shows
# whether the server also spent less CPU per request:

# %%
balancer_cost_text(df, balancer_csv)

# %% [markdown]
# **The bottleneck.** The bottleneck is the machine that is busy all the time first. Utilisation = CPU
# seconds the role used / (time taken × vCPU × machines of the role), measured around every ab run; the
# role near 100 % caps throughput, and adding machines of another role does not help. The CPU each role
# (servers, balancer, tester) used during every ab run, as a share of what its machine type has — one
# panel per node count:

# %%
fig = role_utilisation_chart(df)
save_chart(fig, charts_dir, "role_utilisation.png")
fig

# %%
bottleneck_text(df, PART2_SLA, PART2_USERS)

# %% [markdown]
# ### Interpret your results
#
# The bottleneck: from your utilisation chart and the printout, which role limited throughput at one
# node and at your largest node count? What does the USL fit say about adding servers, and what
# would limit 2000 users first if you only added servers?

# %% [markdown] nbgrader={"grade": true, "grade_id": "interpret_02_bottleneck", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# A full answer (2 points):
#
# - names the busiest role at one node (the server, near 100 % of its 0.2 vCPU) and at the largest
#   node count measured, with the student's utilisation percentages or CPU ms per request — 1 point;
# - states what the USL fit says when it explains the peaks (R² ≥ 0.5: linear, sub-linear or where it
#   peaks) or that it explains too little to say anything, and, from the CPU per request, which role
#   would cap throughput first as servers are added (the role whose vCPU / CPU-per-request is lowest,
#   compared with the throughput 2000 users under a 300 ms mean need by Little's law) — labelled as a
#   model — 1 point.
#
# Without per-role CPU columns in the student's results: full credit for reasoning from throughput
# per server and the USL fit, saying the bottleneck cannot be measured from those results.

# %% [markdown]
# ## Report 4: how many nodes?
#
# > We expect our service to have a maximum number of 2000 concurrent users. With a Service Level
# > Agreement in which we tolerate a maximum response time up to 1 second, with an average of less
# > than 300 milliseconds, with requests 98% of the time less than 400 ms, how many nodes do you
# > need to provision?
#
# The SLA is `max<=1000 mean<300 p98<400` for 2000 users. `build_report` and `format_report` do the
# counting for you:
#
# - when a tested node count meets it, the answer is the **smallest such count** (measured);
# - when none does, measuring cannot give the answer: the report's *capacity* section gives a
#   **model's plan** (labelled as such): the servers, the balancer and the tester that meet all three
#   clauses in a queueing model driven by your own measurements, with the model's error on node
#   counts you measured but held out. Beside it, `servers_min` (Little's law on the mean clause alone)
#   is a **lower bound**, not an answer: fewer servers cannot work, but the max and p98 clauses may
#   need more. Your answer is a server count from `servers_min` to the plan's; when your results
#   measure the balancer's CPU, name the balancer machine type it needs in `part2_balancer`
#   (otherwise leave it `None`).
#
# Set `part2_nodes` to your answer (an integer) and `part2_why` to a sentence saying where the
# number comes from (measured, or the capacity answer and its numbers).

# %% nbgrader={"grade": false, "grade_id": "part2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
part2_nodes = UNANSWERED
part2_why = UNANSWERED
part2_balancer = None
### BEGIN SOLUTION
report = build_report(df, PART2_SLA, users=PART2_USERS)
print(format_report(report))
answer = part2_answer(report)  # the answer summary.txt and the autograder give: measured, else the model's plan
part2_nodes = answer["nodes"]
if answer["source"] == "model plan":
    part2_balancer = answer["balancer"]["machine_type"]
part2_why = justify_part2(report)
### END SOLUTION
print("part 2:", part2_nodes, "nodes", f"and a {part2_balancer} balancer" if part2_balancer else "")
print(part2_why)

# %% [markdown]
# The checks below compare your answer with what your own results CSV gives (when the lab is graded).

# %% nbgrader={"grade": true, "grade_id": "part2_answer_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# part2_nodes (and part2_balancer) against the rule above (report 4), on the student's own results_csv
require_answer(part2_nodes)
### BEGIN HIDDEN TESTS
from labkit import check_part2

check_part2(part2_nodes, results_csv, machine_type, part2_balancer)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "part2_why_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# part2_why is a sentence that quotes the answer
require_answer(part2_why)
assert isinstance(part2_why, str) and len(part2_why.split()) >= 8, "justify the answer in a full sentence"
assert str(part2_nodes) in part2_why, "quote your answer in the justification"

# %% [markdown]
# **Little's law and noise across node counts.** N = X·R at a few points per node count, where
# throughput stopped growing, how far `max` sits from p99, and which points are borderline under
# part 2's SLA:

# %%
display(littles_law_text(df[df["nodes"] > 1], k=6), noise_text(df, PART2_SLA))

# %% [markdown]
# ### Interpret your results
#
# In two to four sentences: how did throughput and the mean request time change from one node to
# the most nodes you measured, and was the gain per added server constant? Name the point (nodes,
# concurrency) where your results stop scaling, and what in them (status, errors, Little's-law
# ratio, throughput per server) shows it.

# %% [markdown] nbgrader={"grade": true, "grade_id": "interpret_02_scaling", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# A full answer (2 points):
#
# - quotes peak throughput at 1 node and at the largest node count measured (from the student's
#   tables), and says how close the gain is to linear (req/s added per added server) — 1 point;
# - names where scaling stops or degrades (a concurrency at which errors, aborted runs or a
#   Little's-law ratio well below 1 appear, or extra servers that add little) and ties it to a
#   cause (the single-process server's CPU share, the balancer, the tester, SYN retransmissions
#   when the listen backlog fills) — 1 point.
#
# Half credit for a correct description without numbers from the student's own table.
