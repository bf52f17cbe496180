"""The handout's hands-on steps that labkit's one-call ``up`` performs, each shown on its own (notebooks 01, 02).

- :func:`image_step`: part 1 steps 7-8, stop ``restserver-0`` and make the ``lab02-restserver``
  image — what the gcp backend did (its image), and what stands in for it on local and ssh;
- :func:`internal_ip_test`: part 2 step 2, each server answers on its internal address,
  tested from the tester (one ab request to each server directly, not through nginx);
- :func:`step14_curls`: part 2 step 14, the balancer answers from the tester (internal and
  external address) and from the workstation (this notebook);
- :func:`nginx_change`: part 2 steps 8-11, the site configuration before the change (the
  handout's default) and after it (the balancer's running config), as a diff.

Each returns a small DataFrame or text; nothing here changes the lab.
"""

from __future__ import annotations

import difflib

import pandas as pd

from labkit.ab import AbCommand

#: The handout's /etc/nginx/sites-available/default before step 9 (Ubuntu's nginx package), abridged.
DEFAULT_SITE = """\
server {
    listen 80 default_server;
    listen [::]:80 default_server;

    root /var/www/html;
    index index.html index.htm index.nginx-debian.html;

    server_name _;

    location / {
        try_files $uri $uri/ =404;
    }
}
"""


def _servers(backend) -> list[tuple[str, str]]:
    """(name, base URL) of every running server, read from the backend's status."""
    st = backend.status() or {}
    spec = backend.spec
    out = []
    if "machines" in st:  # local
        for m in st["machines"]:
            if m["role"].startswith("restserver-") and m.get("alive") and spec is not None:
                out.append((m["role"], f"http://{m['address']}:{spec.port}"))
        return out
    ssh = st.get("ssh", st)  # gcp wraps the ssh backend's status
    for s in ssh.get("servers", []) or []:
        port = s.get("port") or (spec.port if spec is not None else 80)
        out.append((s["name"], f"http://{s['address']}:{port}"))
    return out


def _one_request(backend, url: str) -> dict:
    """One POST of the handout's payload from the tester to ``url`` (ab -c 1 -n 1): what came back."""
    from labkit import ab_parse

    run = backend.run_ab(AbCommand(url, 1, 1, timeout_s=10), 60)
    try:
        rep = ab_parse.parse_report(run.stdout)
    except Exception as exc:  # noqa: BLE001 - shown in the table: the step failed
        return {"answered": False, "non_2xx": None, "bytes": None, "detail": str(exc)[:120]}
    non2xx = int(rep.get("non_2xx") or 0)
    complete = int(rep.get("complete") or 0)
    return {"answered": complete == 1 and non2xx == 0 and not rep.get("failed"), "non_2xx": non2xx,
            "bytes": rep.get("document_length"), "detail": f"ab exit {run.exit_code}"}


def image_step(backend) -> str:
    """What stands for steps 7-8 (stop restserver-0, image its disk as lab02-restserver) on ``backend``."""
    name = getattr(backend, "name", "")
    if name == "gcp":
        images = (backend.status() or {}).get("images") or []
        if images:
            return (f"gcp: restserver-0 was stopped and its disk imaged as {', '.join(images)}; every further "
                    "server is created from that image (as the handout's 'lab02-restserver').")
        return "gcp: no image made yet (it is made when the lab first grows past one server)."
    if name == "ssh":
        return ("ssh: no image — the hosts in hosts.toml are existing machines; labkit copies the same "
                "restserver.py and its Python environment to each (what the image would carry).")
    return ("local: no image — a 'machine' is a process group, and every server runs the same "
            "service/restserver.py from this checkout (what the image would carry); nothing is stopped.")


def internal_ip_test(backend) -> pd.DataFrame:
    """Each server, reached directly on its own address from the tester (not through the balancer)."""
    rows = []
    for role, url in _servers(backend):
        rows.append({"server": role, "address": url, "from": "tester-0", **_one_request(backend, url)})
    return _typed(pd.DataFrame(rows, columns=["server", "address", "from", "answered", "non_2xx", "bytes", "detail"]))


def step14_curls(backend) -> pd.DataFrame:
    """The balancer answers: from the tester on its internal and external address, and from this notebook."""
    from labkit.client import fibonacci

    url = backend.url
    st = backend.status() or {}
    ssh = st.get("ssh", st)
    external = None
    bal = ssh.get("balancer") if isinstance(ssh, dict) else None
    if isinstance(bal, dict) and bal.get("host") and bal.get("host") != bal.get("address"):
        external = f"http://{bal['host']}:{bal.get('port') or 80}"
    rows = [{"from": "tester-0", "to": "internal address", "url": url, **_one_request(backend, url)}]
    if external:
        rows.append({"from": "tester-0", "to": "external address", "url": external, **_one_request(backend, external)})
    else:
        rows.append({"from": "tester-0", "to": "external address", "url": url, "answered": None, "non_2xx": None,
                     "bytes": None, "detail": "one address here: internal and external are the same"})
    try:
        body = fibonacci(url, 20)
        ws = {"answered": body == {"fibonacci_number": 20, "value": 6765}, "non_2xx": 0, "bytes": None,
              "detail": str(body)}
    except OSError as exc:
        ws = {"answered": False, "non_2xx": None, "bytes": None, "detail": str(exc)[:120]}
    rows.append({"from": "workstation (this notebook)", "to": "balancer", "url": url, **ws})
    return _typed(pd.DataFrame(rows, columns=["from", "to", "url", "answered", "non_2xx", "bytes", "detail"]))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Counts as integers with gaps (not 0.00 / 39.0), ``answered`` as a nullable boolean."""
    for col in ("non_2xx", "bytes"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("Int64")
    table["answered"] = table["answered"].astype("boolean")
    return table


def nginx_change(after: str, before: str = DEFAULT_SITE) -> str:
    """A unified diff from the handout's default site (before step 9) to the balancer's config (after step 11)."""
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), "before (default site)",
                                "after (the balancer's nginx.conf)", lineterm="", n=1)
    return "\n".join(diff)
