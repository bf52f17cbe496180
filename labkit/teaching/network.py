"""The path of a connection, explained with the student's own lab and numbers (notebooks 01, 02).

- :func:`backlog_text`: what the student's points show about accepting connections — one node
  reached directly (Werkzeug's listen backlog of 128) vs nodes behind nginx (its own backlog of
  511, one upstream connection per request, max_fails/fail_timeout) — aborted levels, connect
  times, error responses and stalls at the SYN retransmission times 1, 3, 7, 15 s;
- :func:`round_robin_text`: what the ``/status`` table of handout step 15 shows, and why:
  nginx's round robin runs in each worker process, so with one worker (one per vCPU of a
  real f1-micro balancer) the nodes take strict turns;
- :func:`nginx_limits_text`: handout step 7, ``cat /proc/<PID>/limits`` of nginx, read from
  the running balancer (locally from /proc, on ssh/gcp over the backend's SSH connection);
- :func:`balancer_cost_text`: one node reached directly vs the same node behind nginx — the hop's
  latency and the balancer's CPU per request (:mod:`labkit.analysis.balancer_cost`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from labkit import machine_types

#: ab's socket timeout in the handout's command line (``-s 10``).
AB_TIMEOUT_S = 10
BALANCER_ROLE = "loadbalancer-0"


def backlog_text(df: pd.DataFrame, solve: bool = False):
    """One node reached directly vs nodes behind nginx: aborted levels, connect times, error responses and
    stalls at the SYN retransmission times (:func:`labkit.teaching.findings.connections`), as Markdown.
    The mechanism itself is the notebooks' fixed text; ``solve`` adds which queue each stall comes from
    (what the graded question asks): for instructors."""
    from labkit.teaching import findings
    from labkit.teaching.render import markdown

    return markdown("connections.md.j2", f=findings.connections(df), solve=solve)


def balancer_cost_text(df: pd.DataFrame, balancer_csv):
    """What the balancer itself costs, as Markdown: ``df``'s one-node points (reached directly) beside the
    rows of ``balancer_csv`` (one node behind nginx, notebook 02's balancer-cost cell), level by level
    (:func:`labkit.analysis.balancer_cost.finding`). A missing or empty file is said, not an error: a
    submission graded without it still runs."""
    from labkit.analysis.balancer_cost import finding
    from labkit.analysis.configurations import config_labels
    from labkit.results import load_results
    from labkit.teaching.render import markdown

    path = Path(balancer_csv)
    behind = None
    if path.is_file() and path.stat().st_size:
        behind = load_results(path)
        behind = behind[config_labels(behind).isin(set(config_labels(df)))]
    f = finding(df, behind)
    if behind is None:
        missing = f"No results of one node behind nginx at {path.name} (the measuring cell above writes them)."
    else:
        missing = (f"{path.name} and your one-node results share no concurrency level of this machine type: "
                   "nothing to compare (not extrapolated).")
    return markdown("balancer_cost.md.j2", f=f, missing=missing)


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
    if backend.spec is None or not backend.spec.behind_balancer:
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
