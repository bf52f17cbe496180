"""Shared test support: fixtures, test doubles and data builders (registered by tests/conftest.py).

Test modules import helpers from here (``from tests.support.ports import free_port``) and never
from another test module. The fixture names below are stable: other branches' tests use them.

Fixtures (every test can take them; conftest.py's ``pytest_plugins`` registers the modules)
------------------------------------------------------------------------------------------
``local_env``        (local.py) a test's own ``.labkit`` state folder and loopback /24 (127.S.N), in
                     the environment for CLI processes and as ``local_env["settings"]``; CPU limits
                     off unless the test is marked ``@pytest.mark.cgroups``; whatever it left up is
                     torn down. ``session_net(n)`` gives a fixture of its own /24 outside it.
``lab_report``       (lab.py, session) the whole lab run once with the tiny profile (five notebooks,
                     real servers, nginx, ab): ``{"dir", "root", "elapsed", "left_up", "settings"}``.
``service_app``      (service.py) factory: ``service_app({"LABKIT_NODE": "n"})`` is a Flask
                     ``test_client()`` of a fresh ``service/restserver.py`` import: the service's
                     answers without a process. Prefer it.
``service_proc``     (service.py) factory: ``service_proc("gunicorn", workers=2, env={...})`` starts
                     the real service on 127.0.0.1 and a free port, returns its URL, stops it after.
``sshd``             (sshd.py, session) a real OpenSSH sshd on 127.0.0.1 with its own keys:
                     :class:`~tests.support.sshd.SshdInfo` (host, port, user, key, known_hosts, ...).
``stub``             (compute_stub.py) a running :class:`~tests.support.compute_stub.ComputeStub`
                     (the Compute REST API on loopback, instances as records);
                     ``anonymous_compute(stub)`` is the real google-cloud-compute client aimed at it.
``release`` / ``release_dir``  (release.py, session) ``labkit release`` run once by the CLI:
                     its output, and the student notebooks folder (``.../lab02``). Read-only.

Helpers
-------
``ports.free_port(host)`` / ``ports.free_ports(n, host)``   the one free-port helper.
``processes.alive(pid)`` / ``processes.stop_process(proc)``  processes a test started.
``sshd.start_sshd(folder, address, port)``                    the one sshd launcher (keys in ``folder``).
``compute_stub.SshMachines``   stub instances that are real sshd "machines" on 127.S.N.k:22.
``backend_doubles``            ``NoMachinesBackend`` (a backend without machines), ``ScriptedBackend``
                               and ``replayed_ab(name)`` (real ab captures from tests/data/ab).
``analysis_data``              hand-made results rows/CSVs (``make_row``, ``grid_rows``, ``write_csv``).
``grading_data``               students' CSVs and filled-in notebooks for the grading tests.
``local.labkit_cgroups(state_dir)``  labkit cgroups left on this machine (for teardown checks).
``leftovers``                  the end-of-session check that nothing the suite started is left behind.

Markers and the fast suite (markers.py)
---------------------------------------
``nginx``, ``ab``, ``sshd``, ``browser``, ``kernel`` say what a test needs beyond Python; they are
set from the fixtures above (``local_env`` → nginx+ab, ``lab_report`` → nginx+ab+kernel,
``sshd`` → sshd, ``release``/``release_dir`` → kernel); a test that starts one of those programs
itself carries the marker. ``make test-fast`` deselects them all and fails a selected test that
starts one anyway. ``cgroups`` keeps CPU limits on in ``local_env``.
"""
