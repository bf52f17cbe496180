"""Notebooks 01 and 02 end to end on ``backend="gcp"`` and ``backend="ssh"`` without any cloud.

The gcp run drives the real google-cloud-compute client against the Compute stub
(``LABKIT_GCP_API_ENDPOINT``), where every instance is a real sshd on its own loopback
address with its host key published as a guest attribute; the real paramiko deploy,
the real service, nginx and ab then run on those "machines". The test brings up the
first node itself only to choose the login and install folder the stub's machines need
(root, one shared file system); notebook 02 then grows the lab the handout's way
(balancer, image, restserver-1) and sweeps. The ssh run uses a hosts file naming such
machines. Teardown must leave nothing in the stub and nothing running on the addresses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from labkit.backends.gcp.backend import GcpBackend
from labkit.backends.ssh.backend import SshBackend
from labkit.handout import handout_spec
from labkit.lab import NOTEBOOKS_DIR, _execute, kernel_environment, notebook_parameters
from labkit.results import load_results
from labkit.settings import Settings
from tests.support.compute_stub import ComputeStub, SshMachines
from tests.support.sshd import SSHD

pytestmark = [pytest.mark.sshd, pytest.mark.nginx, pytest.mark.ab,
              pytest.mark.skipif(not (os.path.exists(SSHD) and shutil.which("nginx") and shutil.which("ab")
                                      and os.geteuid() == 0),
                                 reason="sshd, nginx and ab as root are needed (make test installs them)")]

PROJECT, ZONE = "lab-project", "us-central1-a"
NOTEBOOKS = ("01_single_server", "02_load_balancer")


def _run_notebooks(settings: Settings, backend: str, out: Path, names=NOTEBOOKS) -> None:
    env = kernel_environment(settings)
    for name in names:
        params = notebook_parameters(name, out, "tiny", backend, "f1-micro")
        _execute(NOTEBOOKS_DIR / f"{name}.ipynb", out / f"{name}.ipynb", params, out, 600, env)


def _check_outputs(out: Path, names=NOTEBOOKS) -> None:
    for name in names:
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o["output_type"] == "error"]
        assert errors == [], name
    df = load_results(out / "results.csv")
    assert sorted(set(df["nodes"])) == [1, 2]
    assert (df["complete"] == df["requests"]).all()


@pytest.mark.kernel
def test_notebooks_on_gcp_against_the_compute_stub(tmp_path):
    machines = SshMachines()
    with ComputeStub(machines=machines) as stub:
        settings = Settings(state_dir=tmp_path / ".labkit", gcp_project=PROJECT, gcp_zone=ZONE,
                            gcp_api_endpoint=stub.endpoint, cgroups="off")
        root = tmp_path / "labkit-root"
        out = tmp_path / "report"
        out.mkdir()
        started = time.monotonic()
        first = GcpBackend(settings, ssh_user="root", timeout=60,
                           ssh_options={"root": str(root), "python": sys.executable})
        first.up(handout_spec("f1-micro"))  # restserver-0 and tester-0 only
        assert sorted(stub.instances) == ["restserver-0", "tester-0"]
        try:
            _run_notebooks(settings, "gcp", out)
            grown = sorted(stub.instances)
            images = sorted(stub.images)
        finally:
            down = GcpBackend(settings).down()
        elapsed = time.monotonic() - started
        calls = stub.count()
        print(f"\ngcp end to end (create -> deploy -> 01 + 02 sweeps -> down): {elapsed:.0f} s, "
              f"{calls} Compute API calls")
        (tmp_path.parent / "gcp_e2e.json").write_text(json.dumps({"seconds": round(elapsed, 1), "calls": calls}))
        assert grown == ["loadbalancer-0", "restserver-0", "restserver-1", "tester-0"]
        assert images == ["lab02-restserver-" + first.run_id]
        assert "instance loadbalancer-0" in down["stopped"]
        assert stub.empty(), "teardown leaves nothing in the stub"
        assert machines.leftovers() == {}, "nothing runs on the machines' addresses"
        assert not (tmp_path / ".labkit" / "gcp.json").exists()
    _check_outputs(out)


def _root_login_key(tmp_path):
    """A client key and the instance metadata that lets it log in as root (what GCE's ssh-keys item does)."""
    key = tmp_path / "client_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, capture_output=True)
    return key, {"items": [{"key": "ssh-keys", "value": "root:" + key.with_suffix(".pub").read_text().strip()}]}


@pytest.mark.kernel
def test_notebooks_on_ssh_hosts(tmp_path):
    machines = SshMachines()
    try:
        key, meta = _root_login_key(tmp_path)
        hosts = {name: machines.start(name, meta) for name in
                 ("restserver-0", "restserver-1", "loadbalancer-0", "tester-0")}

        def table(name):
            return f'host = "{hosts[name]["ip"]}"\nname = "{name}"\nhost_key = "{hosts[name]["host_key"]}"\n'

        hosts_file = tmp_path / "hosts.toml"
        hosts_file.write_text(
            f'[defaults]\nuser = "root"\nkey_filename = "{key}"\n\n'
            + "".join(f"[[servers]]\n{table(f'restserver-{i}')}\n" for i in range(2))
            + f"[balancer]\n{table('loadbalancer-0')}\n[tester]\n{table('tester-0')}\n"
            + f'[options]\nroot = "{tmp_path / "labkit-root"}"\npython = "{sys.executable}"\n')
        settings = Settings(state_dir=tmp_path / ".labkit", ssh_hosts=str(hosts_file), cgroups="off")
        out = tmp_path / "report"
        out.mkdir()
        started = time.monotonic()
        try:
            _run_notebooks(settings, "ssh", out)
        finally:
            SshBackend(settings).down()
        print(f"\nssh end to end (01 + 02): {time.monotonic() - started:.0f} s")
        _check_outputs(out)
        assert not (tmp_path / ".labkit" / "ssh.json").exists()
        up = machines.leftovers(allow={m["pid"] for m in machines.machines.values()})
        assert up == {}, f"only sshd is left on the hosts: {up}"
    finally:
        machines.close()


@pytest.mark.parametrize("case", ["changed host key", "unreachable host"])
def test_a_bad_hosts_file_is_one_line_and_starts_nothing(tmp_path, case):
    from labkit.errors import LabkitError

    machines = SshMachines()
    try:
        key, meta = _root_login_key(tmp_path)
        server, tester = machines.start("restserver-0", meta), machines.start("tester-0", meta)
        host, host_key = server["ip"], server["host_key"]
        if case == "changed host key":
            host_key = tester["host_key"]  # what the file trusts is not what the host offers
        else:
            host = f"127.{machines.octet}.{machines.net}.60"  # nothing listens there
        hosts_file = tmp_path / "hosts.toml"
        hosts_file.write_text(
            f'[defaults]\nuser = "root"\nkey_filename = "{key}"\n'
            f'[[servers]]\nhost = "{host}"\nhost_key = "{host_key}"\n'
            f'[balancer]\nhost = "{server["ip"]}"\nhost_key = "{server["host_key"]}"\n'
            f'[tester]\nhost = "{tester["ip"]}"\nhost_key = "{tester["host_key"]}"\n'
            f'[options]\nroot = "{tmp_path / "labkit-root"}"\npython = "{sys.executable}"\n')
        settings = Settings(state_dir=tmp_path / ".labkit", ssh_hosts=str(hosts_file), cgroups="off")
        with pytest.raises(LabkitError) as err:
            SshBackend(settings).up(handout_spec("f1-micro"))
        assert "\n" not in str(err.value) and host in str(err.value)
        assert ("host key" in str(err.value)) == (case == "changed host key")
        sshds = {m["pid"] for m in machines.machines.values()}
        assert machines.leftovers(allow=sshds) == {}, "nothing but sshd runs"
        assert not SshBackend(settings).record.running
    finally:
        machines.close()
