"""What every batch function's handler shares: settings, the lake, JSON logs with a correlation id, metrics.

A batch handler in ``functions/<name>/app.py`` reads as "event → stage → response"::

    FUNCTION = BatchFunction("clean")

    @FUNCTION.handler
    def handler(event, context):
        request = parse_clean(event)
        result = clean.run(FUNCTION.lake(), request, FUNCTION.settings)
        FUNCTION.count("RowsClean", result.rows_clean)
        return result.to_dict()

The wrapper adds, in Powertools' own shape, the Lambda context and a correlation id to every log line
(``inject_lambda_context``) and flushes the metrics once per invocation (``log_metrics``). A malformed event
(:class:`~rentlake.events.BadEvent`) is logged as one line naming the problem and re-raised: the invocation
fails, as it must for Lambda's retries and the state machine's error branch, without a stack trace in the log.
Too little data for a stage (:class:`~rentlake.model.InsufficientDataError`) is an answer, not a failure, for
the functions that say so (``insufficient=``): explore and train then answer that answer with the reason.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rentlake.config import Settings, load, open_lake
from rentlake.events import BadEvent
from rentlake.lake import Lake, is_s3_address
from rentlake.model import InsufficientDataError
from rentlake.observability import logger, metrics

if TYPE_CHECKING:  # pragma: no cover
    import boto3

Handler = Callable[[dict[str, Any], Any], Any]

# Where a batch event carries an id worth following across functions: the state machine passes its
# execution's name as ``correlation_id``; S3 notifications carry the request id of the upload; EventBridge
# events their own id. JMESPath's ``||`` takes the first that is present.
BATCH_CORRELATION_PATH = 'correlation_id || Records[0].responseElements."x-amz-request-id" || id'


class BatchFunction:
    """One batch Lambda function: its settings, logger, metrics and lake.

    Parameters
    ----------
    service
        The function's name (``ingest``, ``clean``...): the logger's and the metrics' service.
    settings
        The deployment's settings; read from the environment once, at cold start, when omitted.
    insufficient
        The answer when the stage finds too little data (``InsufficientDataError``), with ``"reason"``
        added; None: the invocation fails.
    catalog
        Whether the function writes or reads the zone tables (Glue, awswrangler): made ready at cold
        start with the S3 client. False for a function that must stay light.
    """

    def __init__(
        self,
        service: str,
        settings: Settings | None = None,
        *,
        insufficient: Mapping[str, Any] | None = None,
        catalog: bool = True,
    ) -> None:
        self.service = service
        self.settings = settings if settings is not None else load()
        self.insufficient = None if insufficient is None else dict(insufficient)
        self.log = logger(service)
        self.metrics = metrics(service)
        # One boto3 session for the container: each invocation's lake makes its clients from it in a few
        # ms, where a new session reads the service models again (50-75 ms for S3, 25 for Glue, on every
        # invocation). The clients and libraries are made once, here, at cold start.
        self.session: boto3.Session | None = None
        if is_s3_address(self.settings.lake):
            import boto3  # here: a function on a local lake does without it (100 ms to import)

            self.session = boto3.Session()
            self.lake().warm_up(catalog=catalog)

    def lake(self) -> Lake:
        """The deployment's lake (one place that knows how a function opens it): a new one per invocation,
        on the container's session."""
        return open_lake(self.settings, boto3_session=self.session)

    def count(self, name: str, value: float, unit: str = "Count") -> None:
        """Add one data point to this invocation's metrics (flushed when the handler returns)."""
        self.metrics.add_metric(name=name, unit=unit, value=value)

    def handler(self, fn: Handler) -> Handler:
        """Wrap ``fn`` as the function's Lambda entry point (logs, correlation id, metrics, bad events)."""

        @functools.wraps(fn)
        def body(event: dict[str, Any], context: Any) -> Any:
            try:
                return fn(event, context)
            except BadEvent as exc:
                self.log.error("malformed event: %s", exc)
                raise
            except InsufficientDataError as exc:
                if self.insufficient is None:
                    raise
                self.log.warning("%s: too little data: %s", self.service, exc)
                return {**self.insufficient, "reason": str(exc)}

        logged = self.log.inject_lambda_context(correlation_id_path=BATCH_CORRELATION_PATH)(body)
        return self.metrics.log_metrics(logged)
