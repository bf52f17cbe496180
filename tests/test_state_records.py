"""Backend state files are typed records, checked when loaded, and written only under the lab lock.

Issue 21 items 3 and 5 (state files are not trusted), issue 22 (typed state; state.py does
files and locks only). Pure file tests: nothing is started.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import state
from labkit.backends.gcp.backend import GcpBackend, GcpState
from labkit.backends.local.backend import LocalBackend, LocalState
from labkit.backends.ssh.backend import SshBackend
from labkit.backends.salvage import salvage
from labkit.errors import LockError, StateError
from labkit.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_planted_files_left(tmp_path):
    """The planted state files stay planted (nothing may delete them); remove them afterwards, so the
    suite's leftovers check (which looks for .labkit/local*) sees nothing of these file-only tests."""
    yield
    for path in tmp_path.rglob(".labkit"):
        os.chmod(path, 0o755)
        for f in path.glob("*.json"):
            f.unlink()
        for d in path.glob("local-*"):  # a planted victim run folder (kept by the test, removed here)
            shutil.rmtree(d)


def _local_record(folder: Path, **change) -> dict:
    run = "20260101T000000-abcdef"
    data = {"backend": "local", "run_id": run, "net": "127.0.1", "run_dir": str(folder / f"local-{run}"),
            "cgroups": None, "cgroup_dirs": [], "processes": {}, "spec": None,
            "balancer_machine_type": "f1-micro", "tester_machine_type": "f1-micro"}
    data.update(change)
    return data


def _ssh_record(**change) -> dict:
    host = {"host": "127.0.0.1", "user": "root", "port": 22, "key_filename": None, "known_hosts": None,
            "host_key": None, "address": None}
    data = {"backend": "ssh", "servers": [{**host, "name": "restserver-0"}], "balancer": {**host, "name": "lb"},
            "tester": {**host, "name": "tester-0"}, "options": {"root": "/opt/restserver"}, "running": {},
            "nginx": None, "spec": None, "hosts_file": None}
    data.update(change)
    return data


def _plant(folder: Path, name: str, data) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    (folder / f"{name}.json").write_text(json.dumps(data))


@pytest.mark.parametrize("backend, data, says", [
    (LocalBackend, "local:processes=5", "processes must be an object"),
    (LocalBackend, "local:pid", "processes.restserver-0.pid must be an integer"),
    (LocalBackend, "local:spec", "spec: nodes must be between 1 and 16"),
    (SshBackend, "ssh:no servers", "servers: the list is empty"),
    (SshBackend, "ssh:name", "name 'x;reboot'"),
    (GcpBackend, "gcp:no project", "key missing: project"),
])
def test_a_state_file_with_wrong_types_is_one_line(tmp_path, backend, data, says):
    folder = tmp_path / ".labkit"
    kind, what = data.split(":")
    record = {
        "local:processes=5": lambda: _local_record(folder, processes=5),
        "local:pid": lambda: _local_record(folder, processes={"restserver-0": {
            "role": "restserver-0", "pid": "1; rm", "start_time": 1, "argv": []}}),
        "local:spec": lambda: _local_record(folder, spec={"nodes": 99}),
        "ssh:no servers": lambda: _ssh_record(servers=[]),
        "ssh:name": lambda: _ssh_record(tester={"host": "127.0.0.1", "name": "x;reboot"}),
        "gcp:no project": lambda: {"backend": "gcp", "zones": ["z"], "run_id": "ra", "expires": "1",
                                   "key_dir": str(folder / "gcp"), "created": {}, "images": [], "firewalls": []},
    }[data]()
    _plant(folder, kind, record)
    with pytest.raises(StateError) as err:
        backend(Settings(state_dir=folder, gcp_project="p-project"))
    assert says in str(err.value) and "\n" not in str(err.value)
    assert json.loads((folder / f"{kind}.json").read_text()) == record  # nothing changed


def test_a_planted_run_dir_is_refused_and_the_victim_kept(tmp_path):
    """Item 3: `down` in a folder whose state names another folder as run_dir deletes nothing."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.tex").write_text("years of work")
    folder = tmp_path / "shared" / ".labkit"
    _plant(folder, "local", _local_record(folder, run_dir=str(victim)))
    with pytest.raises(StateError, match="run_dir"):
        LocalBackend(Settings(state_dir=folder, cgroups="off"))
    assert (victim / "thesis.tex").read_text() == "years of work"


def test_a_planted_gcp_key_dir_outside_the_folder_is_refused(tmp_path):
    keep = tmp_path / "keys"
    keep.mkdir()
    (keep / "id_ed25519").write_text("mine")
    folder = tmp_path / ".labkit"
    _plant(folder, "gcp", {"backend": "gcp", "project": "p-project", "zones": ["z"], "run_id": "ra",
                           "expires": "1", "key_dir": str(keep), "created": {}, "images": [], "firewalls": []})
    with pytest.raises(StateError, match="key_dir"):
        GcpBackend(Settings(state_dir=folder, gcp_project="p-project"))
    # a run id that is a path is refused by its pattern too
    _plant(folder, "gcp", {"backend": "gcp", "project": "p-project", "zones": ["z"], "run_id": ".",
                           "expires": "1", "key_dir": str(folder / "gcp"), "created": {}, "images": [],
                           "firewalls": []})
    with pytest.raises(StateError, match="run id"):
        GcpBackend(Settings(state_dir=folder, gcp_project="p-project"))
    assert (keep / "id_ed25519").read_text() == "mine"


def test_a_state_folder_others_may_write_is_refused(tmp_path):
    folder = tmp_path / ".labkit"
    _plant(folder, "local", _local_record(folder))
    os.chmod(folder, 0o777)
    with pytest.raises(StateError, match="others may write"):
        state.load(folder, "local")
    os.chmod(folder, 0o755)
    assert state.load(folder, "local")["run_id"] == "20260101T000000-abcdef"


def test_a_state_folder_another_user_owns_is_refused_and_nothing_is_deleted(tmp_path, monkeypatch):
    """A planted folder owned by someone else is not obeyed: `down` would delete its run_dir."""
    folder = tmp_path / ".labkit"
    _plant(folder, "local", _local_record(folder))
    victim = folder / "local-20260101T000000-abcdef"
    victim.mkdir(exist_ok=True)
    (victim / "keep.txt").write_text("mine")
    me = os.geteuid()
    if me == 0:  # root can give the folder away for real
        os.chown(folder, 65534, 65534)
    else:  # otherwise the folder is ours and we pretend to be another user
        monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(StateError, match="belongs to uid"):
        state.load(folder, "local")
    assert (victim / "keep.txt").read_text() == "mine"
    if me == 0:
        os.chown(folder, 0, 0)
    else:
        monkeypatch.setattr(os, "geteuid", lambda: me)
    assert state.load(folder, "local")["run_id"] == "20260101T000000-abcdef"


def test_the_search_for_a_state_folder_stops_at_the_project_root(tmp_path, monkeypatch):
    """A `.labkit` planted above the project (or above $HOME) is not picked up."""
    (tmp_path / ".labkit").mkdir()
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    assert Settings().state_folder(create=False) == project / "sub" / ".labkit"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "work").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "home" / "work")
    assert Settings().state_folder(create=False) == tmp_path / "home" / "work" / ".labkit"


def test_records_round_trip(tmp_path):
    folder = tmp_path / ".labkit"
    record = LocalState.from_json(_local_record(folder, spec={"nodes": 2, "machine_type": "f1-micro",
                                                              "server": "flask", "workers": 1, "port": 8080,
                                                              "fib_max": 10000}))
    assert record.spec.nodes == 2
    assert LocalState.from_json(record.to_json()) == record
    gcp = GcpState.from_json({"project": "p-project", "zones": ["z"], "run_id": "ra", "expires": "1",
                              "key_dir": "/k", "created": {"a": "z"}, "images": [], "firewalls": [],
                              "ssh": _ssh_record()})
    assert gcp.ssh.servers[0].name == "restserver-0"
    assert GcpState.from_json(gcp.to_json()) == gcp


def test_every_state_write_takes_the_lab_lock(tmp_path):
    """Item 5: a Python `up`/save while another process holds the lab's lock is refused, nothing written;
    inside a command holding it (same process) the save goes through."""
    folder = tmp_path / ".labkit"
    folder.mkdir()
    settings = Settings(state_dir=folder, cgroups="off")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from labkit import state\n"
         f"with state.lab_locked(Path({str(folder)!r}), 'labkit sweep'):\n"
         "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        b = LocalBackend(settings)
        with pytest.raises(LockError, match="labkit sweep"):
            b._save()
        assert not (folder / "local.json").exists()
    finally:
        holder.kill()
        holder.wait()
    with state.lab_locked(settings, "labkit up"):  # re-entrant within the holder
        b._save()
    assert state.load(settings, "local")["run_id"] == b.run_id


def test_salvage_of_an_unreadable_file_moves_it_aside(tmp_path):
    folder = tmp_path / ".labkit"
    _plant(folder, "ssh", "not a record")
    out = salvage(Settings(state_dir=folder), "ssh")
    assert out["stopped"] == [] and "stop them by hand" in out["left"][0]
    assert not (folder / "ssh.json").exists() and Path(out["moved_to"]).exists()


def test_state_imports_no_backend():
    """state.py does files and locks only: it imports no labkit.backends module (the state <-> backends cycle)."""
    tree = ast.parse((ROOT / "labkit" / "state.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "labkit.errors" in imported
    assert not {m for m in imported if m.startswith("labkit.backends")}
