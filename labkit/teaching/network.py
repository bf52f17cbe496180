"""The path of a connection, explained with the student's own lab and numbers (notebooks 01, 02).

- :func:`backlog_text`: one node reached directly (Werkzeug's listen backlog of 128, SYN
  retransmissions at 1 s / 3 s, ab's ``-s 10`` timeout and its 70007 abort) vs nodes behind
  nginx (it accepts everything and queues; 502s when the upstreams are marked down), with
  the student's aborted levels and connect times;
- :func:`round_robin_text`: what the ``/status`` table of handout step 15 shows, and why:
  nginx's round robin runs in each worker process, so with one worker (one per vCPU of a
  real f1-micro balancer) the nodes take strict turns;
- :func:`nginx_limits_text`: handout step 7, ``cat /proc/<PID>/limits`` of nginx, read from
  the running balancer (locally from /proc, on ssh/gcp over the backend's SSH connection).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from labkit import machine_types
from labkit.teaching.interpret import _ms, _where, points

#: Werkzeug's listen backlog (``werkzeug.serving.LISTEN_QUEUE``): connections the kernel
#: holds for the Flask development server before it drops new SYNs.
WERKZEUG_BACKLOG = 128
#: nginx's default listen backlog on Linux (``NGX_LISTEN_BACKLOG``).
NGINX_BACKLOG = 511
#: ab's socket timeout in the handout's command line (``-s 10``).
AB_TIMEOUT_S = 10
BALANCER_ROLE = "loadbalancer-0"


def _aborted_levels(rows: pd.DataFrame) -> str:
    """The aborted levels of ``rows``, grouped by ab's message: "c=700, 1000 (apr_pollset_poll: ... (70007))"."""
    ab = rows[rows["aborted"].astype(bool)]
    if ab.empty:
        return ""
    reasons = ab["abort_reason"] if "abort_reason" in ab else pd.Series("", index=ab.index)
    groups: dict[str, list[str]] = {}
    for (n, c), g in ab.groupby(["nodes", "concurrency"], sort=True):
        reason = next((str(r) for r in reasons.loc[g.index].dropna() if str(r)), "")
        groups.setdefault(reason[:90], []).append(_where(int(n), int(c)))
    return "; ".join(", ".join(levels) + (f" ({reason})" if reason else "") for reason, levels in groups.items())


def _syn_marks(pts: pd.DataFrame) -> list[str]:
    from labkit.analysis.sla import _near_syn_retry

    out = []
    for r in pts.itertuples(index=False):
        cm, mx = r.connect_mean_ms, r.max_ms
        notes = []
        if not pd.isna(cm) and cm >= 100:
            notes.append(f"connect mean {_ms(cm)}")
        if (t := _near_syn_retry(mx)) is not None:
            notes.append(f"max {_ms(mx)} ≈ {t / 1000:g} s")
        elif not pd.isna(mx) and mx >= 2900 and not pd.isna(cm) and cm >= 100:
            notes.append(f"max {_ms(mx)}")
        if notes:
            out.append(f"{_where(r.nodes, r.concurrency)}: " + ", ".join(notes))
    return out


def backlog_text(df: pd.DataFrame) -> str:
    """One node reached directly vs nodes behind nginx: backlog, SYN retransmissions, 70007 and 502s."""
    pts = points(df)
    lines = [f"One node, reached directly: the Flask development server (Werkzeug) listens with a backlog of "
             f"{WERKZEUG_BACKLOG} connections. When more than that wait to be accepted, the kernel drops new SYNs and "
             "the client's kernel retransmits them after 1 s, then 2 s more (3 s): a connect time near 1,000 or "
             f"3,000 ms is a SYN retransmission, not slow code. ab gives each socket {AB_TIMEOUT_S} s (-s "
             f"{AB_TIMEOUT_S}); when one waits longer, ab stops the whole run with 'apr_pollset_poll: The timeout "
             "specified has expired (70007)' (the handout's note): an aborted row."]
    one = df[df["nodes"] == 1]
    if one.empty:
        lines.append("  Your results have no one-node rows.")
    else:
        p1 = pts[pts["nodes"] == 1]
        aborted = _aborted_levels(one)
        lines.append(f"  Your one-node levels: {', '.join(str(c) for c in p1['concurrency'])}; "
                     + (f"aborted: {aborted}." if aborted else "none aborted."))
        over = [int(c) for c in p1["concurrency"] if c > WERKZEUG_BACKLOG]
        marks = _syn_marks(p1)
        cm = p1["connect_mean_ms"].dropna()
        if len(cm):
            w = p1.loc[cm.idxmax()]
            lines.append(f"  Largest connect mean: {_ms(w['connect_mean_ms'])} at c={int(w['concurrency'])} "
                         f"(longest request there: {_ms(w['max_ms'])}).")
        if marks:
            lines.append("  SYN retransmission stalls in your data: " + "; ".join(marks) + ".")
        elif over:
            lines.append(f"  Levels above the backlog of {WERKZEUG_BACKLOG} ({', '.join(map(str, over))}) completed "
                         "without a connect stall: the server accepted fast enough.")
        else:
            lines.append(f"  No level exceeded the backlog of {WERKZEUG_BACKLOG} and no connect stall shows: "
                         "every connection was accepted at once.")
    lines.append("Behind nginx: the balancer accepts every connection at once (backlog "
                 f"{NGINX_BACKLOG}, 4096 worker_connections, an event loop that never blocks) and queues the requests "
                 "towards the servers over a few kept-alive connections, so the servers' backlogs rarely fill and "
                 "connect times stay small; the cost moves to the balancer. When a server does not answer in time, "
                 "nginx marks it down for 10 s (max_fails=1, fail_timeout=10s) and, with every server down, answers "
                 "502 at once: fast non-2xx responses (status 'refused' or 'errors'), not measurements of the service.")
    behind = df[df["nodes"] > 1]
    if behind.empty:
        lines.append("  Your results have no rows behind the balancer yet (notebook 02 measures them).")
    else:
        pb = pts[pts["nodes"] > 1]
        aborted = _aborted_levels(behind)
        lines.append("  Aborted behind the balancer: " + (aborted or "none") + ".")
        bad = pb[pb["status"].isin(["refused", "errors"])]
        if len(bad):
            nx = behind.groupby(["nodes", "concurrency"])["non_2xx"].sum()
            fl = behind.groupby(["nodes", "concurrency"])["failed"].sum()
            listed = [f"{_where(r.nodes, r.concurrency)} {r.status} ({int(nx.get((r.nodes, r.concurrency), 0) or 0)} "
                      f"non-2xx, {int(fl.get((r.nodes, r.concurrency), 0) or 0)} failed)"
                      for r in bad.itertuples(index=False)]
            lines.append(f"  Points with error responses ({len(listed)}): " + "; ".join(listed[:6])
                         + ("; …" if len(listed) > 6 else "") + ".")
        else:
            lines.append("  No point behind the balancer had non-2xx or failed responses.")
        cm = pb["connect_mean_ms"].dropna()
        if len(cm):
            w = pb.loc[cm.idxmax()]
            lines.append(f"  Largest connect mean behind the balancer: {_ms(w['connect_mean_ms'])} at "
                         f"{_where(int(w['nodes']), int(w['concurrency']))}.")
        marks = _syn_marks(pb)
        if marks:
            lines.append("  Stalls near the SYN retransmission times behind the balancer: " + "; ".join(marks) + ".")
    return "\n".join(lines)




# -- the balancer: its processes, round robin, open-file limit -----------------------------------------
def _balancer_pid(backend) -> int | None:
    """The nginx master's pid on the local backend (from its status), else None."""
    for m in (backend.status() or {}).get("machines", []) or []:
        if m.get("role") == BALANCER_ROLE and m.get("alive"):
            return int(m["pid"])
    return None


def _children(pid: int) -> list[int]:
    """Child pids of ``pid`` (nginx's workers of a master), from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(stat.parent.name))
    return sorted(kids)


def _remote(backend):
    """The ssh backend that reaches the hosts (the gcp backend's inner one), or None for local."""
    inner = backend.inner() if hasattr(backend, "inner") else None
    target = inner or backend
    return target if hasattr(target, "conn") and hasattr(target, "balancer") else None


def nginx_workers(backend) -> tuple[int | None, str]:
    """How many worker processes the balancer's nginx runs, and how that was found.

    Local: the master's children, counted in /proc (``worker_processes auto`` means one per
    CPU nginx sees: the host's, not the emulated machine type's quota). ssh/gcp: the config's
    ``worker_processes``; ``auto`` on a VM is one per vCPU of the balancer's machine type.
    """
    if getattr(backend, "name", "") == "local":
        pid = _balancer_pid(backend)
        if pid is None:
            return None, "no balancer is running"
        n = len(_children(pid))
        return n, f"counted: the nginx master (pid {pid}) has {n} worker process(es) on this machine"
    conf = backend.balancer_config()
    m = re.search(r"^\s*worker_processes\s+(\S+);", conf, re.M)
    value = m.group(1) if m else "auto"
    if value.isdigit():
        return int(value), f"worker_processes {value} in the balancer's nginx.conf"
    mt = backend.balancer_machine_type
    vcpu = machine_types.MACHINE_TYPES[mt].vcpu if mt in machine_types.MACHINE_TYPES else None
    if vcpu is None:
        return None, f"worker_processes {value}: one per CPU of the balancer (its machine type is not known here)"
    return max(1, round(vcpu)), f"worker_processes {value}: one per vCPU of the {mt} balancer ({vcpu:g} vCPU)"


def strictly_alternates(nodes: list, count: int) -> bool:
    """True when ``nodes`` cycles through ``count`` different nodes in a fixed order (a, b, a, b, …)."""
    first = nodes[:count]
    return (len(set(first)) == count == len(first)
            and all(nodes[i] == nodes[i - count] for i in range(count, len(nodes))))


def round_robin_text(table: pd.DataFrame, backend) -> str:
    """What the student's ``/status`` table shows (who answered, in which order), and why, from the
    nginx worker count of their balancer."""
    seq = [str(n) for n in table["node"]]
    count = backend.spec.nodes if backend.spec else len(set(seq))
    counts = pd.Series(seq).value_counts().sort_index()
    workers, how = nginx_workers(backend)
    strict = strictly_alternates(seq, count)
    lines = [f"Your {len(seq)} calls were answered by: {' → '.join(seq)}",
             "  per node: " + ", ".join(f"{n} {k}×" for n, k in counts.items())
             + f"; the nodes {'took strict turns' if strict else 'did not take strict turns'}.",
             f"  nginx's round robin lives in each worker process (no shared `zone` in the upstream block): each "
             f"worker sends its next request to the server after the one it used last. Your balancer runs "
             f"{workers if workers is not None else 'an unknown number of'} worker(s) ({how})."]
    if workers == 1:
        lines.append("  One worker sees every request, so the servers alternate strictly — what a real f1-micro "
                     "balancer (one vCPU, one worker) does.")
    elif workers:
        lines.append(f"  With {workers} workers, each new connection is accepted by whichever worker wakes first, "
                     "and each keeps its own turn, so a server may answer twice in a row"
                     + (" (as in your table)" if not strict else " (not in your table this time)")
                     + "; over many requests every server still gets its share. A real f1-micro balancer has one "
                     "vCPU, hence one worker, and alternates strictly.")
    lines.append("  `requests` is that server's own count of /fibonacci calls and `cache_length` that process's "
                 "cache: they differ between nodes because each node counts only what it served.")
    return "\n".join(lines)


#: What labkit's nginx.conf asks for (``worker_rlimit_nofile``) and the handout's systemd ``LimitNOFILE``.
NOFILE_WANTED = 65536


def _open_files(limits: str) -> tuple[str, int | None]:
    """The "Max open files" line of a /proc/<pid>/limits text, and its soft limit (None if unlimited/absent)."""
    line = next((ln for ln in limits.splitlines() if ln.startswith("Max open files")), "")
    m = re.match(r"Max open files\s+(\d+)", line)
    return (re.sub(r"\s{2,}", "  ", line.strip()) or "(no 'Max open files' line)"), (int(m.group(1)) if m else None)


def _verdict(soft: int | None) -> str:
    """What a worker's open-file limit means for the balancer."""
    if soft is None:
        return "unlimited"
    if soft >= NOFILE_WANTED:
        return f"≥ {NOFILE_WANTED:,}: the raised limit took effect"
    return (f"below the {NOFILE_WANTED:,} asked for: the machine's hard limit caps it (raising it needs root "
            f"or CAP_SYS_RESOURCE); {soft:,} descriptors still cover 4096 worker_connections × 2 per worker"
            if soft >= 2 * 4096 else
            f"below the {NOFILE_WANTED:,} asked for and below 2 × 4096 worker_connections: at high concurrency "
            "nginx will log 'Too many open files'")


def nginx_limits_text(backend) -> str:
    """Handout step 7: ``cat /proc/<PID>/limits`` of the balancer's nginx, with what to look for.

    The handout raises the limit with systemd's ``LimitNOFILE=65536``; labkit's nginx.conf does it
    with ``worker_rlimit_nofile 65536``, which nginx applies to its **workers** (the processes
    that hold the connections): their "Max open files" must read 65536.
    """
    head = ("Handout step 7: the balancer's open-file limit. Each connection is a file descriptor, and nginx "
            "holds two per proxied request (client and server side): the 'Max open files' of its worker "
            "processes must be at least 65536 (labkit sets worker_rlimit_nofile 65536; the handout sets "
            "LimitNOFILE=65536 in systemd).")
    if backend.spec is None or backend.spec.nodes == 1:
        return head + "\n  No balancer is running (one node: the tester talks to the server directly)."
    if getattr(backend, "name", "") == "local":
        pid = _balancer_pid(backend)
        if pid is None:
            return head + "\n  The balancer is not running."
        lines = [head]
        worker_soft = None
        for role, p in [("master", pid)] + [("worker", w) for w in _children(pid)]:
            try:
                limits = Path(f"/proc/{p}/limits").read_text()
            except OSError as exc:
                lines.append(f"  nginx {role} (pid {p}): /proc/{p}/limits unreadable ({exc.strerror})")
                continue
            line, soft = _open_files(limits)
            lines.append(f"  $ cat /proc/{p}/limits   # nginx {role}\n    {line}")
            if role == "worker":
                worker_soft = soft
        lines.append("  worker_rlimit_nofile applies to the workers (the processes holding the connections); the "
                     "master keeps the limit it was started with. Your workers' limit: "
                     + (_verdict(worker_soft) if worker_soft is not None or len(lines) > 2 else "not read") + ".")
        return "\n".join(lines)
    remote = _remote(backend)
    cmd = "cat /proc/$(pgrep -n -f 'nginx: worker')/limits"
    if remote is not None:
        try:
            res = remote.conn(remote.balancer).run(cmd, check=False, timeout=20)
            if res.ok:
                line, soft = _open_files(res.stdout)
                return f"{head}\n  {remote.balancer.name}$ {cmd}\n    {line}\n  Your workers' limit: {_verdict(soft)}."
            why = (res.stderr or res.stdout).strip()[:200]
        except Exception as exc:  # noqa: BLE001 - a read for display; the lab keeps running
            why = str(exc)[:200]
        host = remote.balancer.host
        return f"{head}\n  Could not read it over SSH ({why}). On {host}: `{cmd}`, line 'Max open files'."
    return f"{head}\n  On the balancer host: `{cmd}`, line 'Max open files'."
