"""Stripe's error responses: status codes, bodies and messages as the real API sends them."""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs/error-codes"


class ApiError(Exception):
    """An error response: raised anywhere while handling a request, rendered by the server."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self, request_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type}
        if self.code:
            error["code"] = self.code
            error["doc_url"] = f"{DOCS}/{self.code.replace('_', '-')}"
        if self.param:
            error["param"] = self.param
        error.update(self.extra)
        error["request_log_url"] = f"https://dashboard.stripe.com/logs/{request_id}"
        return {"error": error}


def mask(key: str) -> str:
    """How Stripe echoes a key back: its prefix and last four characters."""
    for prefix in ("sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_"):
        if key.startswith(prefix):
            return f"{prefix}****{key[-4:]}"
    return f"****{key[-4:]}" if len(key) > 4 else "****"


def invalid_key(key: str) -> ApiError:
    return ApiError(401, f"Invalid API Key provided: {mask(key)}")


def expired_key(key: str) -> ApiError:
    return ApiError(401, f"Expired API Key provided: {mask(key)}", code="api_key_expired")


def no_key() -> ApiError:
    return ApiError(
        401,
        "You did not provide an API key. You need to provide your API key in the Authorization "
        "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
        "https://stripe.com/docs/api#authentication for details, or we can help at "
        "https://support.stripe.com/.",
    )


def publishable_key() -> ApiError:
    return ApiError(
        401,
        "This API call cannot be made with a publishable API key. Please use a secret API key. "
        "You can find a list of your API keys at https://dashboard.stripe.com/account/apikeys.",
    )


def missing_permission(key: str, account_id: str, permission: str) -> ApiError:
    return ApiError(
        403,
        f"The provided key '{mask(key)}' does not have the required permissions for this "
        f"endpoint on account '{account_id}'. Having the '{permission}' permission would allow "
        "this request to continue.",
    )


def no_account_access(key: str, account_id: str) -> ApiError:
    return ApiError(
        403,
        f"The provided key '{mask(key)}' does not have access to account '{account_id}' (or that "
        "account does not exist). Application access may have been revoked.",
        code="account_invalid",
    )


def resource_missing(object_name: str, object_id: str, param: str = "id") -> ApiError:
    return ApiError(
        404, f"No such {object_name}: '{object_id}'", code="resource_missing", param=param
    )


def unrecognized_url(method: str, path: str) -> ApiError:
    return ApiError(
        404,
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we "
        "can help at https://support.stripe.com/.",
    )


def invalid_param(param: str, message: str, code: str = "parameter_invalid_integer") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def missing_param(param: str) -> ApiError:
    return ApiError(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def rate_limited(send_should_retry: bool) -> ApiError:
    headers = {"Stripe-Should-Retry": "true"} if send_should_retry else {}
    return ApiError(
        429,
        "Too many requests hit the API too quickly. We recommend an exponential backoff of your "
        "requests.",
        code="rate_limit",
        headers=headers,
    )


def server_error() -> ApiError:
    return ApiError(
        500,
        "An unknown error occurred while processing your request; please try again.",
        type_="api_error",
    )
