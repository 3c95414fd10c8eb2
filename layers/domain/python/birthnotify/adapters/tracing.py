"""X-Ray tracing of a handler, without the X-Ray SDK's import cost when tracing is off.

Powertools' ``Tracer()`` imports ``aws_xray_sdk`` (about 80 ms of a cold start) even when tracing is
disabled; a handler decorated here only builds a Tracer when traces would be sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from aws_lambda_powertools.shared.functions import strtobool

Handler = TypeVar("Handler", bound=Callable[..., Any])


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Powertools' own rule (tests hold it to the pinned version's): off when POWERTOOLS_TRACE_DISABLED is
    true, outside Lambda (no LAMBDA_TASK_ROOT), and under SAM local or Chalice."""
    if strtobool(environ.get("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    if not environ.get("LAMBDA_TASK_ROOT"):
        return False
    return not (environ.get("AWS_SAM_LOCAL") or environ.get("AWS_CHALICE_CLI_MODE"))


def traced_lambda_handler(handler: Handler) -> Handler:
    """``Tracer().capture_lambda_handler(handler)`` when tracing is on; the handler itself otherwise."""
    if not tracing_enabled():
        return handler
    from aws_lambda_powertools import Tracer

    return cast(Handler, Tracer().capture_lambda_handler(handler))
