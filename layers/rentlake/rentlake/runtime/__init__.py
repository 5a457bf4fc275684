"""The light side of rentlake: what the prediction function runs.

Modules here import only the standard library, numpy, onnxruntime, pydantic, aws-lambda-powertools and
(through :mod:`rentlake.lake`) boto3. They never import pandas, scikit-learn, scipy, awswrangler,
:mod:`rentlake.model` or :mod:`rentlake.scoring`; ``tests/unit/test_runtime_light.py`` checks it.

* :mod:`rentlake.runtime.model`: the champion cache (pointer -> sha256-checked ONNX session, refreshed).
* :mod:`rentlake.runtime.estimate`: listings in, answers out (vectorised inference, warnings, verdicts).
* :mod:`rentlake.runtime.api`: the HTTP API (Powertools resolver, pydantic models, OpenAPI).
* :mod:`rentlake.runtime.events`: API Gateway HTTP API v2 events to and from plain HTTP.
* :mod:`rentlake.runtime.legal`: the legal reference rent lookup (standard library only), loaded with the
  champion.
* :mod:`rentlake.runtime.page`: the tenant page at ``GET /`` (``static/index.html``, inline CSS and JS).
"""
