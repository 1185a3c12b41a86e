"""The active and previous model ARNs, kept in SSM parameters.

The active ARN is read on every detection, so a registry caches it for at most MODEL_CACHE_SECONDS
(Detect builds one registry per container): a promotion reaches every warm container within that time.
The parameter value `none` means no model has been trained yet (cold start).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from labelloop_core.adapters import aws_errors
from labelloop_core.adapters.clients import LazyClient
from labelloop_core.config import ConfigError

NO_MODEL = "none"


class SsmModelRegistry:
    def __init__(
        self,
        active_parameter: str,
        previous_parameter: str | None = None,
        cache_seconds: int = 60,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.active_parameter = active_parameter
        self.previous_parameter = previous_parameter
        self.cache_seconds = cache_seconds
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[str, float]] = {}  # parameter -> (value, monotonic time read)

    client = LazyClient("ssm")

    def active_model_arn(self) -> str | None:
        """The ARN detections use, or None while no model exists (parameter value `none`)."""
        return _as_arn(self._cached(self.active_parameter))

    def previous_model_arn(self) -> str | None:
        """The ARN active before the last promotion (never cached: only rollbacks read it)."""
        return _as_arn(self._read(self._previous()))

    def switch_active(self, new_arn: str) -> str | None:
        """Make `new_arn` active and keep the old one as previous; returns the old ARN."""
        old = self._read(self.active_parameter)
        self._write(self._previous(), old)
        self._write(self.active_parameter, new_arn)
        with self._lock:
            self._cache[self.active_parameter] = (new_arn, self._clock())
        return _as_arn(old)

    def _previous(self) -> str:
        if self.previous_parameter is None:
            raise ConfigError("PREVIOUS_MODEL_PARAMETER", "is required to read or switch the previous model")
        return self.previous_parameter

    def _cached(self, name: str) -> str:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and now - hit[1] < self.cache_seconds:
            return hit[0]
        value = self._read(name)
        with self._lock:
            self._cache[name] = (value, now)
        return value

    def _read(self, name: str) -> str:
        variable = "ACTIVE_MODEL_PARAMETER" if name == self.active_parameter else "PREVIOUS_MODEL_PARAMETER"
        try:
            response = self.client.get_parameter(Name=name)
        except Exception as error:
            if aws_errors.error_code(error) == aws_errors.PARAMETER_NOT_FOUND:
                raise ConfigError(variable, f"SSM parameter {name} does not exist") from error
            raise _translate(error, name) from error
        return str(response["Parameter"]["Value"]).strip()

    def _write(self, name: str, value: str) -> None:
        try:
            self.client.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
        except Exception as error:
            raise _translate(error, name) from error


def _translate(error: Exception, name: str) -> Exception:
    if aws_errors.is_retryable(error):
        return aws_errors.retry_later(
            error, f"SSM is throttling or failing on {name}: {aws_errors.error_code(error)}"
        )
    return error


def _as_arn(value: str) -> str | None:
    return None if not value or value.lower() == NO_MODEL else value
