"""A failure whose message says everything: Dagster shows it without a Python stack trace.

A revoked key, a full disk or a 429 storm fails the step with what to do (engine/failures.py's
guidance). As a plain `dagster.Failure`, Dagster's UI printed that message and then a "Stack
Trace" of its own execution frames and our `raise` line: noise under a message meant for an
operator, which reads like a bug. A `KnownFailure` is a `Failure` in every way Dagster treats
one (description, metadata, allow_retries, the step's failure data) and hands Dagster its
error already serialized, without frames: Dagster keeps a serialized error it is given as-is
(`serializable_error_info_from_exc_info`, for errors from another process). Anything else
that goes wrong keeps its full trace: that one is a bug to report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import Failure
from dagster._core.errors import DagsterUserCodeProcessError
from dagster._utils.error import SerializableErrorInfo


class _SerializedError(DagsterUserCodeProcessError):
    # Failure.__init__ hands on the description alone: the serialized error is set after.
    def __init__(self, *args: object) -> None:
        Exception.__init__(self, *args)


class KnownFailure(Failure, _SerializedError):
    def __init__(self, description: str, metadata: Mapping[str, Any] | None = None,
                 allow_retries: bool = False) -> None:
        super().__init__(description=description, metadata=metadata,
                         allow_retries=allow_retries)
        self.user_code_process_error_infos = [
            SerializableErrorInfo(message=description, stack=[], cls_name="Failure")]
