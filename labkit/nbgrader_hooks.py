"""The nbgrader preprocessor that keeps autograding from measuring (design §13).

Configured in the course's ``nbgrader_config.py`` (:data:`labkit.grading.release.NBGRADER_CONFIG`)
ahead of nbgrader's own ``Execute``: every code cell tagged ``measure``
(:data:`labkit.grading.checks.MEASURE_TAG`: deploying, curl and ab runs, sweeps) is turned
into comments, so nothing is started or measured on the grading machine and the
cells after it read the student's submitted ``results_csv``. A notebook with no
graded cell (00_setup, 04_reanalysis as long as they have none) has nothing to
grade: all its code cells are commented out. The student's code stays readable in
the feedback, under a line saying why it did not run.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Unicode

NOTE = "# Not run when graded: this cell measures. The cells below read your results_csv.\n"
NOTE_UNGRADED = "# Not run when graded: this notebook has no graded cells.\n"


def _commented(source: str) -> str:
    return "\n".join(f"# {line}" if line else "#" for line in source.splitlines())


class SkipMeasuring(Preprocessor):
    """Comment out the measuring cells (tag :attr:`tag`) before nbgrader executes a notebook."""

    enabled = Bool(True, help="nbconvert runs only enabled preprocessors").tag(config=True)
    tag = Unicode("measure", help="cells with this tag are not run when autograding").tag(config=True)

    def preprocess(self, nb, resources):
        graded = any(cell.get("metadata", {}).get("nbgrader", {}).get("grade") for cell in nb.cells)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if not graded:
                cell.source = NOTE_UNGRADED + _commented(cell.source)
            elif self.tag in cell.get("metadata", {}).get("tags", []):
                cell.source = NOTE + _commented(cell.source)
        return nb, resources
