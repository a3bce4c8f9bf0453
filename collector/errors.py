"""Errors that become HTTP answers.

Every answer the collector gives for bad input or an unavailable store is one of these,
each with a status from DESIGN.md, a machine code and a human sentence::

    CollectorError
    ├── BadRequest            400  invalid_json, invalid_batch, invalid_gzip, ...
    ├── Unauthorized          401  missing_write_key, invalid_write_key
    ├── Forbidden             403  origin_not_allowed
    ├── NotFound              404  profile_not_found, unknown_space (the Profile API), unknown_source
    ├── TooLarge              413  body_too_large, batch_too_large, message_too_large
    ├── RequestTimeout        408  request_timeout (a body sent too slowly)
    ├── UnsupportedMediaType  415  unsupported_content_type
    ├── RateLimited           429  rate_limited (with Retry-After)
    └── Unavailable           503  store_unavailable, store_overloaded (with Retry-After)

A message rejected inside a batch is an ``Invalid`` (code + sentence, no status): the batch
is answered 200 with that message listed under ``rejected``.
"""

from __future__ import annotations


class Invalid(Exception):
    """One message failed validation; ``code`` is machine-readable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CollectorError(Exception):
    status = 500
    retry_after: int | None = None

    def __init__(self, code: str, message: str, **kept: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.kept = kept  # what rejected/ keeps beside the payload (a tracking plan's violations)


class BadRequest(CollectorError):
    status = 400


class Unauthorized(CollectorError):
    status = 401


class Forbidden(CollectorError):
    status = 403


class NotFound(CollectorError):
    status = 404


class TooLarge(CollectorError):
    status = 413


class RequestTimeout(CollectorError):
    status = 408


class UnsupportedMediaType(CollectorError):
    status = 415


class RateLimited(CollectorError):
    status = 429

    def __init__(self, code: str, message: str, retry_after: int = 1) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class Unavailable(CollectorError):
    status = 503

    def __init__(self, code: str, message: str, retry_after: int = 1) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after
