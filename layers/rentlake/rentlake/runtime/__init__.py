"""The light side of rentlake: what the prediction function runs.

Modules here (and :mod:`rentlake.legal.lookup`, :mod:`rentlake.contracts.ranges` they read) import only
the standard library, numpy, onnxruntime, pydantic, aws-lambda-powertools and (through
:mod:`rentlake.lake`) boto3. They never import pandas, scikit-learn, scipy, awswrangler, :mod:`rentlake.model`
or :mod:`rentlake.scoring`; ``tests/unit/test_runtime_light.py`` checks it.

From a request to its number:

* :mod:`rentlake.runtime.routes`: the API in Powertools' shape (one resolver, its routes, its error
  handlers) and ``CHAMPION``, the process's champion cache;
* :mod:`rentlake.runtime.estimator`: listings in, estimates out (one vectorised inference, warnings,
  verdicts, the legal part);
* :mod:`rentlake.runtime.champion`: the champion cache (pointer -> sha256-checked ONNX session, refreshed)
  and :class:`~rentlake.runtime.champion.LoadedModel`, which runs the inference.

Beside them:

* :mod:`rentlake.runtime.resolver`: the resolver's checks before routing (size, content type, JSON
  arrays), the request's log line and metrics, the security headers; the function's logger and metrics;
* :mod:`rentlake.runtime.schemas`: request and response models (pydantic, OpenAPI), the surface domain;
* :mod:`rentlake.runtime.errors`: the refusals and their JSON shape;
* :mod:`rentlake.runtime.describe`: what ``GET /model``, ``/quartiers`` and ``/plot-data`` answer;
* :mod:`rentlake.runtime.interval`: the interval read as a normal law (z, percentile, market verdict);
* :mod:`rentlake.runtime.page`: the tenant page at ``GET /`` (``static/index.html``, inline CSS and JS);
* :mod:`rentlake.runtime.events`: API Gateway HTTP API v2 events to and from plain HTTP (CLI, tests).
"""
