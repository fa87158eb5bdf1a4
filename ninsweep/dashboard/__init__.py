"""See a study in the browser: ``ninsweep dashboard`` and ``ninsweep report --html``.

- ``live``: an experiment followed as a sweep writes it (only new bytes of each result file
  are read), giving the analysis's ``Experiment``;
- ``views``: the page's data as JSON, from the analysis tables alone;
- ``server``: the read-only Starlette app and its uvicorn server (loopback by default, a
  token elsewhere);
- ``html``: the self-contained HTML report;
- ``assets`` and ``static/``: the page's template, script and style; plotly.js from the
  ``plotly`` package.

Neither Ray nor torch is imported here (a test checks it); starlette and uvicorn only when a
server starts.
"""
