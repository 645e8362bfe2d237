"""
Test controls of the emulator: injected faults and the request log.
"""
from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from . import errors


@dataclasses.dataclass
class Fault:
    """Make the next `times` requests matching (verb, path) fail with `status` and/or hang `delay` seconds.

    `verb` is a Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection)
    or an HTTP method; None matches any. `path` is a regex searched in the URL path.
    `status` None with a delay makes a slow server that then answers normally.
    """
    path: str = ''
    verb: str | None = None
    status: int | None = 503
    delay: float = 0.0
    times: int | None = 1  # None: every matching request, forever
    message: str = 'injected fault'
    hits: int = 0

    def matches(self, verb: str | None, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        wanted = (self.verb or '').lower()
        return (not wanted or wanted in (str(verb).lower(), method.lower())) and re.search(self.path, path) is not None

    def error(self, group: str, plural: str, name: str) -> errors.ApiError:
        match self.status:
            case 409:
                return errors.conflict(group, plural, name or 'unknown', self.message)
            case 410:
                return errors.expired(self.message)
            case 429:
                return errors.too_many_requests()
            case 500:
                return errors.internal(self.message)
            case 503:
                return errors.service_unavailable(self.message)
            case 504:
                return errors.ApiError(504, 'Timeout', f'Timeout: {self.message}', {})
        return errors.ApiError(self.status or 500, 'InternalError', self.message, {})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RequestRecord:
    """One served request, as tests inspect it."""
    method: str
    path: str
    query: dict[str, str]
    user: str = ''
    verb: str | None = None  # the Kubernetes verb for resource requests
    group: str = ''
    version: str = ''
    resource: str = ''
    subresource: str = ''
    namespace: str = ''
    name: str = ''
    body: Any = None
    status: int | None = None
    time: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
