"""The ``labkit`` command line: the same operations the notebooks call.

Every expected failure (a :class:`~labkit.errors.LabkitError`) ends as one line
on stderr and exit status 2; Ctrl-C ends with 130 after tearing down whatever
the command itself brought up. ``--help`` on each command lists its flags.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import click

from labkit import profiles
from labkit.errors import ConfigError, LabkitError, StateError
from labkit.processes import sigterm_as_interrupt
from labkit.settings import Settings
from labkit.state import lab_locked
from labkit.backends.salvage import salvage

log = logging.getLogger("labkit")


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, like 1,2,3 (got {text!r})") from None
    if not values:
        raise ConfigError(f"{what} must list at least one integer")
    return values


def _echo_json(data) -> None:
    """The JSON edge of every command: ``json.dumps`` writes node-count keys as strings."""
    click.echo(json.dumps(data, indent=2, default=str))


def _show(data: dict, as_json: bool) -> None:
    """``data`` as JSON, or as ``key: value`` lines (values that are not text as JSON)."""
    if as_json:
        _echo_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key}: {value if isinstance(value, str) else json.dumps(value, default=str)}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """labkit: run Lab No. 02 (Scaling) - deploy, benchmark, scale and answer the SLA questions."""
    level = logging.WARNING - 10 * verbose if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(message)s", stream=sys.stderr)
    if verbose < 2:  # paramiko logs every connection at INFO; keep errors one line
        logging.getLogger("paramiko").setLevel(logging.WARNING)
    ctx.obj = Settings.from_env()  # the one read of LABKIT_*; flags override it, see _override


def _settings() -> Settings:
    """The settings of this invocation: the environment's, with --hosts/--project/--zone applied."""
    ctx = click.get_current_context(silent=True)
    return ctx.obj if ctx is not None and isinstance(ctx.obj, Settings) else Settings.from_env()


# -- cluster life cycle -------------------------------------------------------------------
# --hosts/--project/--zone -> the Settings field each one overrides
_FLAG_SETTINGS = {"hosts": "ssh_hosts", "project": "gcp_project", "zone": "gcp_zone"}


def _override(ctx: click.Context, param: click.Parameter, value):
    """Apply --hosts/--project/--zone to this command's settings (``ctx.obj``)."""
    if value:
        if param.name == "hosts":
            value = os.path.abspath(value)  # `labkit lab` hands it to kernels running elsewhere
        base = ctx.obj if isinstance(ctx.obj, Settings) else Settings.from_env()
        ctx.obj = base.replace(**{_FLAG_SETTINGS[param.name]: value})
    return value


def _override_settings(**fields) -> None:
    """Change this invocation's settings (``ctx.obj``), e.g. ``gcp_ssh_source`` from --ssh-source."""
    ctx = click.get_current_context()
    ctx.obj = _settings().replace(**fields)


def _backend(name: str, attach_only: bool = False, **options):
    """The backend ``name`` with this invocation's settings; None if ``attach_only`` and nothing is up."""
    from labkit import state
    from labkit.backends import get_backend

    settings = _settings()
    if attach_only and name != "local" and state.load(settings, name) is None:
        return None
    return get_backend(name, settings=settings, **options)


def _spec(nodes: int, machine_type: str, server: str, workers: int, port: int, balanced: bool = False):
    from labkit.backends.base import ClusterSpec

    return ClusterSpec(nodes=nodes, machine_type=machine_type, server=server, workers=workers, port=port,
                       balanced=balanced)


_balanced_option = click.option("--balanced", is_flag=True,
                                 help="Put the nginx balancer in front of a single node too (the point that "
                                      "separates the balancer's cost; with more nodes it always is).")


_backend_choice = click.option("--backend", default="local", show_default=True,
                               type=click.Choice(["local", "ssh", "gcp"]), help="Where the machines are.")
_hosts_option = click.option("--hosts", type=click.Path(dir_okay=False), expose_value=False, callback=_override,
                             help="ssh: the hosts file (TOML; see README) [env LABKIT_SSH_HOSTS].")
_project_option = click.option("--project", expose_value=False, callback=_override,
                               help="gcp: the project id [env LABKIT_GCP_PROJECT].")
_zone_option = click.option("--zone", expose_value=False, callback=_override,
                            help="gcp: zone, or comma-separated zones tried in order on stock-outs "
                                 "[env LABKIT_GCP_ZONE; default us-central1-a,-b,-c,-f].")


def backend_option(f):
    """--backend plus the options the ssh and gcp backends need."""
    for option in (_zone_option, _project_option, _hosts_option, _backend_choice):
        f = option(f)
    return f

machine_option = click.option("--machine-type", default="f1-micro", show_default=True,
                              help="Server machine type (see machine_types.py).")
server_option = click.option("--server", default="flask", show_default=True,
                             type=click.Choice(["flask", "gunicorn"]), help="Flask dev server or gunicorn.")
workers_option = click.option("--workers", default=1, show_default=True, help="gunicorn workers per node.")
port_option = click.option("--port", default=8080, show_default=True, help="Port of servers and balancer.")


def _host_options(f):
    """--calibrate and --no-burst: how the local backend's CPU quotas are set (labkit/calibration.py)."""
    f = click.option("--no-burst", "no_burst", is_flag=True,
                     help="local: no shared-core bursting (CFS burst) for f1-micro, g1-small, "
                          "e2-micro/small/medium.")(f)
    return click.option("--calibrate", type=click.Choice(["reference"]), default=None,
                        help="local: scale every role's CPU quota by this host's CPU cost per request / the "
                             "reference host's, so a machine type answers as fast as on the reference host.")(f)


def _host_kwargs(backend: str, calibrate: str | None, no_burst: bool) -> dict:
    """The local backend's ``burst``/``cpu_scale`` options from --no-burst/--calibrate (refused elsewhere)."""
    if backend != "local":
        if calibrate or no_burst:
            raise ConfigError("--calibrate and --no-burst apply to the local backend only (other backends run "
                              "on real machines)")
        return {}
    # no flag keeps what a running lab has (a new lab: burst on, quotas x 1)
    options: dict = {"burst": False} if no_burst else {}
    if calibrate == "reference":
        from labkit.calibration import host_calibration, match_reference, reference_scale

        cal = host_calibration(_settings())
        matched = match_reference(reference_scale(cal), _settings())
        options.update(cpu_scale=matched["cpu_scale"], calibrated=matched)
        log.info("--calibrate reference: CPU quotas x %.3f (this host %.3f CPU ms per request, the reference %.2f)",
                 options["cpu_scale"], cal.cpu_ms_per_request, cal.reference_cpu_ms_per_request)
    return options


@cli.command()
@backend_option
@click.option("--nodes", default=1, show_default=True, help="Servers behind the balancer.")
@_balanced_option
@machine_option
@server_option
@workers_option
@port_option
@click.option("--ssh-source", help="gcp: who may SSH to the VMs, comma-separated CIDRs (default: this machine's "
              "public address when it has one, else anywhere, with a warning).")
@_host_options
def up(backend, nodes, balanced, machine_type, server, workers, port, ssh_source, calibrate, no_burst):
    """Start the servers (and the balancer when nodes > 1, or with --balanced)."""
    options = _host_kwargs(backend, calibrate, no_burst)
    with lab_locked(_settings(), "labkit up"):  # one command changes the lab at a time (a sweep holds it too)
        b = _backend(backend, **options, **({"ssh_source_ranges": ssh_source} if backend == "gcp" and ssh_source
                                             else {}))
        b.up(_spec(nodes, machine_type, server, workers, port, balanced))
    shown = {"url": b.url, "nodes": nodes, "balanced": b.spec.behind_balancer, "cpu_limited": b.cpu_limited}
    if backend == "local":
        shown.update(burst=b.burst, cpu_scale=b.cpu_scale)
    _echo_json(shown)


@cli.command()
@backend_option
@click.argument("nodes", type=int)
def scale(backend, nodes):
    """Change the number of servers behind the balancer."""
    with lab_locked(_settings(), "labkit scale"):
        b = _backend(backend)
        b.scale(nodes)
    _echo_json({"url": b.url, "nodes": nodes})


@cli.command()
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (what status always prints; accepted like "
              "report's --json).")
def status(backend, as_json):
    """What is running: machines, addresses, pids, each server's /status (as JSON)."""
    b = _backend(backend, attach_only=True)
    _echo_json(b.status() if b else {"backend": backend, "up": False})


@cli.command()
@backend_option
def down(backend):
    """Stop everything the lab started (processes, cgroups, temp files, cloud resources)."""
    with lab_locked(_settings(), "labkit down"):
        try:
            b = _backend(backend, attach_only=True)
        except StateError:  # unreadable state: stop what can be found without it, then say so
            _echo_json(salvage(_settings(), backend))
            raise
        _echo_json(b.down() if b else {"backend": backend, "down": "nothing was up"})


# -- measuring ------------------------------------------------------------------------------
@cli.command()
@backend_option
@click.option("-c", "--concurrency", default=10, show_default=True, help="ab -c")
@click.option("-n", "--requests", default=100, show_default=True, help="ab -n")
@click.option("-s", "--timeout", "timeout_s", default=10, show_default=True, help="ab -s")
@click.option("--retries", default=2, show_default=True, help="Re-runs after an early exit.")
@click.option("--testers", default=1, show_default=True, type=click.IntRange(1, 16),
              help="ab processes started together, each its share of -c and -n (locally one per core, "
                   "remotely one per tester machine); the row is their exact merge.")
def bench(backend, concurrency, requests, timeout_s, retries, testers):
    """Run one ab benchmark against the running lab and print its row as JSON."""
    from labkit.ab import AbCommand
    from labkit.measure import measure

    b = _backend(backend)
    if b.spec is None:
        raise ConfigError("nothing is up: run `labkit up` first")
    spec = b.spec
    command = AbCommand(b.url, concurrency, requests, timeout_s=timeout_s)
    if testers > 1:
        b.ensure_testers(testers)
    host = {}
    if b.name == "local":  # how fast this host is, as in a sweep's rows (labkit/calibration.py)
        from labkit.calibration import host_calibration

        host = {"host_cpu_ms_per_request": host_calibration(b.settings).cpu_ms_per_request, "burst": b.burst,
                "cpu_scale": b.cpu_scale}
    from labkit.calibration import cpu_times, steal_pct

    before = cpu_times()
    row = measure(b, command, retries=retries, testers=testers)
    row = row.replace(backend=b.name, machine_type=spec.machine_type, server=spec.server, workers=spec.workers,
                      nodes=spec.nodes, cpu_limited=b.cpu_limited, steal_pct=steal_pct(before, cpu_times()), **host)
    _echo_json(row.to_json())


@cli.command()
@backend_option
@click.option("--profile", default=None, type=click.Choice(list(profiles.PROFILES)),
              help="Take nodes, levels, requests from a profile (flags still override).")
@click.option("--nodes", default=None, help="Node counts, e.g. 1,2,3,4,5.")
@click.option("--concurrency", default=None, help="Concurrency levels, e.g. 10,100,1000.")
@click.option("--requests", default=None, type=int, help="ab -n per point.")
@click.option("--timeout", "timeout_s", default=None, type=int, help="ab -s per request.")
@machine_option
@server_option
@workers_option
@port_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Results CSV.")
@click.option("--resume", is_flag=True, help="Measure only the points --out does not hold yet.")
@click.option("--repeats", default=None, metavar="R",
              help="Measure each point R times, one row each (default: the profile's, 1).")
@click.option("--refine", "refine_sla", default=None, metavar="SLA",
              help='After the grid, bisect this SLA\'s boundary at every node count, e.g. "mean<200" '
                   "(default: the profile's; quick refines part 1 at one node on its own levels).")
@click.option("--testers", default=1, show_default=True, type=click.IntRange(1, 16),
              help="ab processes per point, started together and merged exactly (one per core locally, "
                   "one per tester machine on ssh/gcp).")
@click.option("--keep-up", is_flag=True, help="Leave the lab running afterwards.")
@click.option("--balanced", is_flag=True, help="Measure one node behind nginx too (the balancer's cost; write "
              "these rows to a CSV of their own: the analysis does not pool them with direct one-node rows).")
@click.option("--ssh-source", help="gcp: who may SSH to the VMs, comma-separated CIDRs (as for `up`).")
@_host_options
def sweep(backend, profile, nodes, concurrency, requests, timeout_s, machine_type, server, workers, port,
          out, resume, repeats, refine_sla, testers, keep_up, balanced, ssh_source, calibrate, no_burst):
    """Measure a grid of node counts x concurrency levels into a results CSV."""
    from labkit.sweep import check_repeats, folder_locked, run_sweep, scale_grids

    # the profile's grids: its part-1 levels at one node, its other levels at more, 2,000 users at the largest
    grids = scale_grids(profile or "quick", _spec(1, machine_type, server, workers, port, balanced),
                        nodes=_ints(nodes, "--nodes") if nodes else None,
                        concurrency=_ints(concurrency, "--concurrency") if concurrency else None,
                        requests=requests, repeats=None if repeats is None else check_repeats(repeats),
                        refine=refine_sla, testers=testers)
    if timeout_s is not None:  # --timeout 0 is refused by the grid, not ignored
        grids = [dataclasses.replace(g, timeout_s=timeout_s) for g in grids]
    options = _host_kwargs(backend, calibrate, no_burst)
    if ssh_source:
        _override_settings(gcp_ssh_source=ssh_source)
    with folder_locked(_settings()):  # before attaching: a second sweep in this folder must not touch the lab
        b = _backend(backend, **options)
        # the grid's largest lab must fit (e.g. ssh: no more nodes than the hosts file has servers), before
        # anything starts
        b._check(dataclasses.replace(grids[0].spec, nodes=max(max(g.nodes) for g in grids)))
        was_up = b.spec is not None
        try:
            for i, grid in enumerate(grids):  # the grids after the first append to the same CSV
                run_sweep(b, grid, out, resume=resume or i > 0)
        finally:
            if not was_up and not keep_up:
                b.down()
    click.echo(f"wrote {out}", err=True)


@cli.command("parse-ab")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--percentiles", type=click.Path(exists=True, dir_okay=False), help="ab's -e CSV file.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the default is key: value lines).")
def parse_ab(file, percentiles, as_json):
    """Parse a saved ab report into the results-CSV fields."""
    from labkit.ab import parse_file

    try:
        _show(parse_file(file, percentiles).to_json(), as_json)
    except UnicodeDecodeError:
        raise ConfigError(f"{percentiles or file} is not a text file (ab's output or its -e CSV)") from None


@cli.command()
@click.argument("csv", nargs=-1, required=True)
@click.option("--sla", "sla_text", required=True, help='SLA clauses, e.g. "max<=1500 mean<200 p98<=300".')
@click.option("--users", type=int, default=None, help="Expected concurrent users (for nodes_needed).")
@click.option("--json", "as_json", is_flag=True, help="Print the answers as JSON.")
@click.option("--charts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also write the PNG charts into this folder.")
@click.option("--machine-type", default=None,
              help="Analyse this server machine type's rows (default: the only one, or the one behind the balancer).")
@click.option("--server", type=click.Choice(["flask", "gunicorn"]), default=None,
              help="Analyse this server's rows (default: as for --machine-type).")
def report(csv, sla_text, users, as_json, charts, machine_type, server):
    """Answer the SLA questions from results CSVs (files or globs), one configuration at a time."""
    from labkit.analysis.configurations import select
    from labkit.analysis.report import build_report, format_report
    from labkit.results import load_results
    from labkit.analysis.sla import Sla

    sla = Sla.parse(sla_text)
    df, left_out = select(load_results(list(csv)), machine_type, server)
    answers = build_report(df, sla, users)
    if left_out:
        answers["notes"].insert(0, left_out)
    if charts:
        from labkit.analysis.plots import save_all

        answers["charts"] = [str(p) for p in save_all(df, sla, charts)]
    if as_json:
        _echo_json(answers)
    else:
        click.echo(format_report(answers))


def _project() -> str:
    """The gcp project of this invocation (--project or $LABKIT_GCP_PROJECT); an error without one."""
    project = _settings().gcp_project
    if not project:
        raise ConfigError("a gcp project is needed: --project P (or $LABKIT_GCP_PROJECT)")
    return project


@cli.command()
@click.option("--backend", default="gcp", show_default=True, type=click.Choice(["gcp"]))
@_project_option
@click.option("--zone", expose_value=False, callback=_override,
              help="Zone (the first of a comma-separated list) [env LABKIT_GCP_ZONE; default us-central1-a].")
@click.option("--nodes", default=5, show_default=True, help="Servers to create.")
@_balanced_option
@machine_option
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--ssh-source", help="Who may SSH to the VMs, comma-separated CIDRs (as for `up`).")
@click.option("--testers", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Tester machines (tester-0..k-1), one ab process each.")
def plan(backend, nodes, balanced, machine_type, as_json, ssh_source, testers):
    """What a cloud run would create and cost per hour - without touching the cloud."""
    from labkit.backends.gcp.api_requests import plan as make_plan
    from labkit.backends.gcp.api_requests import ssh_source_ranges

    zone = (_settings().gcp_zone or "us-central1-a").split(",")[0].strip()
    _show(make_plan(project=_project(), zone=zone, nodes=nodes, machine_type=machine_type,
                    ssh_source_ranges=ssh_source_ranges(ssh_source), testers=testers, balanced=balanced), as_json)


@cli.command()
@_project_option
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def gc(dry_run, as_json):
    """Delete every labkit-labelled instance, image and firewall rule whose expiry has passed (any run)."""
    from labkit.backends.gcp.compute import gc as collect

    project = _project()
    found = collect(project, dry_run=dry_run, endpoint=_settings().gcp_api_endpoint)
    verb = "would delete" if dry_run else "deleted"
    if as_json:
        _echo_json({"project": project, "dry_run": dry_run, "deleted": [] if dry_run else found,
                    "would_delete": found if dry_run else []})
        return
    click.echo("".join(f"{verb} {what}\n" for what in found), nl=False)
    click.echo(f"{verb} {len(found)} expired resource(s) in {project}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json):
    """Check this machine: tools, cgroups, limits, packages, credentials - and how to fix what is missing."""
    from labkit.doctor import healthy, run_checks

    checks = run_checks(_settings())
    if as_json:
        _echo_json([dataclasses.asdict(c) for c in checks])
    else:
        for c in checks:
            mark = "ok " if c.ok else ("MISSING" if c.required else "optional")
            click.echo(f"{mark:8} {c.name:28} {c.detail}" + (f"   -> {c.fix}" if c.fix and not c.ok else ""))
    if not healthy(checks):
        raise ConfigError("required tools are missing (see above); `make setup` installs them")


# -- the notebooks ---------------------------------------------------------------------------
@cli.command()
@click.option("--profile", default="quick", show_default=True, type=click.Choice(list(profiles.PROFILES)),
              help="How much of the handout's grid to measure.")
@backend_option
@machine_option
@click.option("--out", "out_root", default="reports", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Reports folder (a <timestamp>/ is made in it).")
@click.option("--notebooks", "notebooks_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the five notebooks (default: the project's notebooks/).")
@click.option("--ssh-source", help="gcp: who may SSH to the VMs, comma-separated CIDRs (as for `up`).")
def lab(profile, backend, machine_type, out_root, notebooks_dir, ssh_source):
    """Run all five notebooks headless (papermill) into OUT/<timestamp>/ and print the SLA answers."""
    from labkit.lab import format_summary, run_lab

    if ssh_source:  # the notebooks' kernels get it with the settings (LABKIT_GCP_SSH_SOURCE)
        _override_settings(gcp_ssh_source=ssh_source)

    report_dir = run_lab(profile, backend=backend, out_root=out_root, notebooks_dir=notebooks_dir,
                         machine_type=machine_type, settings=_settings())
    click.echo(format_summary(report_dir, json.loads((report_dir / "summary.json").read_text())))


@cli.command()
@click.option("--out", default="release", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the student versions (written to OUT/lab02/).")
@click.option("--notebooks", "notebooks_dir", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding the source notebooks (default: the project's notebooks/).")
def release(out, notebooks_dir):
    """Build the student notebooks with nbgrader (solutions removed, autograded checks locked)."""
    from labkit.grading.release import build_release

    for path in build_release(out, notebooks_dir=notebooks_dir):
        click.echo(str(path))


@cli.command()
@click.argument("submitted", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", default="grading", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="The grading course nbgrader works in (gradebook, autograded/, feedback/); replaced each run.")
@click.option("--json", "as_json", is_flag=True, help='Print {"<student>": {"score", "max_score", "flags", ...}}.')
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Submissions graded at once, each in its own sandbox [default: the cores].")
def grade(submitted, out, as_json, jobs):
    """nbgrader autograde + feedback over SUBMITTED/<student>/lab02/ (notebooks + results.csv), each in a
    bubblewrap sandbox; never measures."""
    from labkit.grading.grade import format_grades, grade as grade_all

    grades = grade_all(submitted, out, jobs=jobs)
    if as_json:
        _echo_json(grades)
    else:
        click.echo(format_grades(grades, out.resolve()), nl=False)


@cli.command()
@click.option("--port", default=8866, show_default=True, help="Port Voila listens on (127.0.0.1).")
def dashboard(port):
    """Serve notebooks/04_reanalysis as a stand-alone Voila dashboard (code hidden)."""
    import subprocess

    from labkit.lab import NOTEBOOKS_DIR

    import secrets

    token = secrets.token_urlsafe(24)  # anyone on this machine could otherwise open it (and its kernel)
    argv = [sys.executable, "-m", "voila", str(NOTEBOOKS_DIR / "04_reanalysis.ipynb"), f"--port={port}",
            "--no-browser", "--Voila.ip=127.0.0.1", f"--Voila.token={token}"]
    click.echo(f"dashboard on http://127.0.0.1:{port}/?token={token} (Ctrl-C stops it)", err=True)
    sys.exit(subprocess.call(argv))


def main() -> None:
    """Entry point: run the CLI, turning LabkitErrors into one line and exit 2."""
    sigterm_as_interrupt()  # SIGTERM tears down like Ctrl-C
    try:
        rc = cli.main(standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("labkit: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("labkit: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LabkitError as exc:
        click.echo(f"labkit: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a full disk, a read-only or missing folder: the file and the reason
        click.echo(f"labkit: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
