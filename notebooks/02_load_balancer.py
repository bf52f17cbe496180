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

# %% tags=["parameters"]
backend = "local"  # where the machines are: local | ssh | gcp
profile = "quick"  # how much of the handout's grid to measure: full | quick | tiny
machine_type = "f1-micro"  # the servers' machine type (the handout's micro instance)
nodes = None  # node counts for the load-balancer sweeps, e.g. [1, 2, 3, 4, 5], or None for the profile's
concurrency = None  # concurrency levels (ab -c), e.g. [10, 100, 1000], or None for the profile's
requests = None  # requests per level (ab -n), or None for the profile's
results_csv = "../runs/lab.csv"  # results of notebooks 01-03 (one CSV, resumed, never overwritten)
charts_dir = "../runs/charts"  # where the PNG charts are saved

# %%
from IPython.display import display

from labkit import (PART2_SLA, PART2_USERS, UNANSWERED, answers, build_report, fibonacci, format_report,
                    get_backend, handout_spec, justify_part2, load_handout, mean_latency_chart, part2_from_report,
                    profiles_grid, require_answer, round_robin_table, run_sweep, save_chart, sla_heatmap,
                    tables_by_nodes, throughput_chart)

# %% [markdown]
# ## A second server and the balancer (handout steps 1–13)
#
# The handout creates `restserver-1` from the `lab02-restserver` image, creates
# `loadbalancer-0`, raises nginx's `worker_connections` to 4096 and its open-file limit to
# 65536, adds an `upstream fibonacci` block listing the servers with `proxy_pass
# http://fibonacci`, and reloads nginx. Here one call does the same; every new nginx
# configuration is checked with `nginx -t` before it is loaded, so a bad one never replaces
# a working one. The status now lists both servers and the balancer.

# %%
lab = get_backend(backend)
lab.up(handout_spec(machine_type, nodes=2))
lab.status()

# %% [markdown]
# The configuration nginx is running — compare it with the handout's step 11:

# %%
print(lab.balancer_config())

# %% [markdown]
# ## Test the balancer (step 14)
#
# The same curl request as before, now sent to the balancer's address.

# %%
answer = fibonacci(lab.url, 20)
assert answer == {"fibonacci_number": 20, "value": 6765}, answer
answer

# %% [markdown]
# ## Round robin, seen through `/status` (step 15)
#
# `curl http://<LOADBALANCER>/status`, several times. Each answer comes from whichever server
# nginx picked: the `node` column names it, and `requests` and `cache_length` are **that**
# server's own counters — which is why the output changes from call to call. With round robin
# the nodes take turns.

# %%
round_robin_table(lab.url, calls=3 * lab.spec.nodes)

# %% [markdown]
# ## Report 1–2: the sweep for 1–5 nodes
#
# For each node count the balancer is reconfigured (servers started or stopped, nginx's
# upstream list rewritten and reloaded) and every concurrency level measured. Points already
# in `results_csv` — notebook 01's single-server levels — are not measured again.

# %%
grid = profiles_grid(profile, handout_spec(machine_type), nodes, concurrency, requests)
run_sweep(lab, grid, results_csv, resume=True)

# %% [markdown]
# The handout's table, once per node count (1 node = notebook 01's server without a balancer):

# %%
df = load_handout(results_csv, machine_type)
for n, table in tables_by_nodes(df).items():
    print(f"{n} node(s)")
    display(table)

# %% [markdown]
# ## Report 3: the single chart
#
# Mean request time against concurrent users, one line per node count, with part 2's mean
# bound (300 ms) dashed.

# %%
fig = mean_latency_chart(df, PART2_SLA)
save_chart(fig, charts_dir, "02_mean_latency.png")
fig

# %% [markdown]
# Two more views of the same data: which (nodes, concurrency) points meet the part-2 SLA, and
# peak throughput against nodes with a Universal Scalability Law fit (how much each extra
# server adds, and where adding servers stops paying off).

# %%
fig = sla_heatmap(df, PART2_SLA)
save_chart(fig, charts_dir, "02_sla_heatmap.png")
fig

# %%
fig = throughput_chart(df)
save_chart(fig, charts_dir, "02_throughput.png")
fig

# %% [markdown]
# ## Report 4: how many nodes?
#
# > We expect our service to have a maximum number of 2000 concurrent users. With a Service Level
# > Agreement in which we tolerate a maximum response time up to 1 second, with an average of less
# > than 300 milliseconds, with requests 98% of the time less than 400 ms, how many nodes do you
# > need to provision?
#
# The SLA is `max<=1000 mean<300 p98<400` for 2000 users: the answer is the smallest tested node
# count whose maximum concurrency within the SLA reaches 2000. When no tested count does,
# the report extrapolates with a USL fit of throughput against nodes — an estimate, labelled as such.
#
# Set `part2_nodes` to your answer (an integer, or `None` when neither a measurement nor an
# extrapolation gives one) and `part2_why` to a sentence saying where the number comes from.
# `build_report` and `format_report` (in `labkit.report`) do the counting for you.

# %% nbgrader={"grade": false, "grade_id": "part2_answer", "locked": false, "schema_version": 3, "solution": true, "task": false}
part2_nodes = UNANSWERED
part2_why = UNANSWERED
### BEGIN SOLUTION
report = build_report(df, PART2_SLA, users=PART2_USERS)
print(format_report(report))
part2_nodes, part2_source = part2_from_report(report)
part2_why = justify_part2(report)
### END SOLUTION
print("part 2:", part2_nodes)
print(part2_why)

# %% nbgrader={"grade": true, "grade_id": "part2_answer_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
require_answer(part2_nodes)
expected = answers(results_csv, machine_type)["part2"]
assert part2_nodes == expected, "part2_nodes does not follow from your results (or from their USL extrapolation)"

# %% nbgrader={"grade": true, "grade_id": "part2_why_check", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
require_answer(part2_why)
assert isinstance(part2_why, str) and len(part2_why.split()) >= 8, "justify the answer in a full sentence"
