"""Teaching: what the student's own data show, worded for the notebooks.

:mod:`~labkit.teaching.findings` computes frozen findings (numbers and flags, tested by value);
:mod:`~labkit.teaching.render` words them with the jinja2 Markdown templates in ``templates/``;
:mod:`~labkit.teaching.interpret` and :mod:`~labkit.teaching.network` are the notebook-facing
texts; :mod:`~labkit.teaching.steps` shows the handout's hands-on steps one by one;
:mod:`~labkit.teaching.consistency` checks an executed notebook's sentences against its tables.
"""
