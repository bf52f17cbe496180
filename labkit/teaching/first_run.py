"""What the handout has the student do by hand, shown beside labkit's one-call steps (notebook 01).

- :func:`first_ab_run`: the handout's verification run (``ab ... -c 10 -n 10``), with ab's
  own report as ab printed it and the results row labkit reads from it;
- :func:`payload_text`: the ``payload.json`` ab posts (handout: ``echo '{"fibonacci_number":
  20}' > payload.json``);
- :func:`handout_bug_text`: the handout's ``restserver.py`` builds its JSON with
  ``str.format`` on a template with literal braces, which raises — run here — and the line
  ``service/restserver.py`` uses instead.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from labkit.ab import AbCommand

#: The handout's ``/status`` and ``/fibonacci`` response templates, verbatim.
HANDOUT_STATUS = '{"cache_length": {}, "requests": {}}'
HANDOUT_FIBONACCI = '{"fibonacci_number": {}, "value": {}}'


def first_ab_run(backend, command: AbCommand, timeout: float = 120.0):
    """Run ``command`` once on ``backend``; return ``(run, row)``: the :class:`~labkit.backends.base.AbRun`
    (``run.stdout`` is ab's report as ab printed it) and that report read into a results row (a Series
    with the column names of design §7; an aborted row when ab exited early)."""
    from labkit import ab_parse
    from labkit.ab import aborted_measurement, measurement
    from labkit.measure import abort_of

    run = backend.run_ab(command, timeout)
    abort = abort_of(run)
    if abort is not None:
        record = aborted_measurement(abort, command)
    else:
        pct = ab_parse.parse_percentiles(run.percentiles_csv) if run.percentiles_csv else None
        gp = ab_parse.parse_gnuplot(run.gnuplot_tsv) if run.gnuplot_tsv else None
        record = measurement(ab_parse.parse_report(run.stdout), pct, gp).replace(
            concurrency=command.concurrency, requests=command.requests, attempts=1)
    row = pd.Series(record.to_json())
    return run, row[row.notna()]


def payload_text(command: AbCommand | None = None) -> str:
    """The payload.json ab posts (``-p payload.json -T application/json``), as the file holds it."""
    payload = (command.payload if command is not None else AbCommand.payload).decode()
    return (f"$ cat payload.json\n{payload.rstrip()}\n"
            f"({len(command.payload if command is not None else AbCommand.payload)} bytes, the handout's "
            "`echo '{\"fibonacci_number\": 20}' > payload.json`; ab posts it with every request)")


def _our_line() -> str:
    """The line of service/restserver.py that builds every response body."""
    from labkit.service import SERVICE_DIR

    path = Path(SERVICE_DIR) / "restserver.py"
    try:
        for line in path.read_text().splitlines():
            if "Response(json.dumps(" in line:
                return line.strip()
    except OSError:
        pass
    return 'return Response(json.dumps(payload), status=status, mimetype="application/json")'


def handout_bug_text() -> str:
    """Run the handout's ``str.format`` template and show the error it raises, then the service's line."""
    try:
        HANDOUT_STATUS.format(2, 0)
        raised = "(no error?)"
    except (KeyError, IndexError, ValueError) as exc:
        raised = f"{type(exc).__name__}: {exc}"
    try:
        HANDOUT_FIBONACCI.format(20, 6765)
        raised_fib = "(no error?)"
    except (KeyError, IndexError, ValueError) as exc:
        raised_fib = f"{type(exc).__name__}: {exc}"
    return "\n".join([
        "The handout's restserver.py builds its answers with str.format:",
        f"  >>> '{HANDOUT_STATUS}'.format(len(fibonacci_numbers), call_count)",
        f"  {raised}",
        f"  >>> '{HANDOUT_FIBONACCI}'.format(number, calc_fibonacci(number))",
        f"  {raised_fib}",
        "str.format reads every {...} as a replacement field, so the JSON object's own braces make it look up a "
        "field named '\"cache_length\"' and raise: both endpoints answer HTTP 500 (literal braces would have to be "
        "doubled, {{ }}). The handout's expected output could never appear.",
        "service/restserver.py serialises a dict instead, byte for byte the handout's promised output:",
        f"  {_our_line()}",
    ])
