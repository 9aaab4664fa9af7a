"""Partner SDK (signing, batching, retries) and outbound webhooks. Never imports `service`.

    from integrations import CarbonPointsClient, Event

    with CarbonPointsClient("https://api.example", key_id="pk_…", secret="cpsk_…") as client:
        outcome = client.submit_event(Event(...))

Everything public is re-exported here; the `_modules` behind it are private.
"""

from integrations._client import DEFAULT_TIMEOUT, AsyncCarbonPointsClient, CarbonPointsClient
from integrations._errors import (
    APIError,
    AuthenticationError,
    CarbonPointsError,
    ConflictError,
    InvalidEventError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    RateLimitedError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    ValidationError,
    WebhookVerificationError,
)
from integrations._models import (
    MAX_BATCH_SIZE,
    Event,
    Outcome,
    OutcomePage,
    OutcomeStatus,
    Quantity,
    Reason,
)
from integrations._signing import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID_HEADER,
    hmac_signature,
    new_webhook_id,
    sign_request,
    signed_content,
)
from integrations._tokens import TokenError, make_link_token, make_voucher, read_token, verify_token
from integrations._webhooks import sign_webhook, verify_webhook, webhook_signed_content

__all__ = [
    "DEFAULT_TIMEOUT",
    "KEY_ID_HEADER",
    "MAX_BATCH_SIZE",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "WEBHOOK_ID_HEADER",
    "APIError",
    "AsyncCarbonPointsClient",
    "AuthenticationError",
    "CarbonPointsClient",
    "CarbonPointsError",
    "ConflictError",
    "Event",
    "InvalidEventError",
    "NotFoundError",
    "Outcome",
    "OutcomePage",
    "OutcomeStatus",
    "PermissionDeniedError",
    "Problem",
    "Quantity",
    "RateLimitedError",
    "Reason",
    "ServerError",
    "TokenError",
    "TransportError",
    "UnexpectedResponseError",
    "ValidationError",
    "WebhookVerificationError",
    "hmac_signature",
    "make_link_token",
    "make_voucher",
    "new_webhook_id",
    "read_token",
    "sign_request",
    "sign_webhook",
    "signed_content",
    "verify_token",
    "verify_webhook",
    "webhook_signed_content",
]
