"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""

from service.models.admin import ADMIN_ROLES, Admin
from service.models.admin_audit_entry import AdminAuditEntry
from service.models.base import Base
from service.models.cap_usage import CapUsage
from service.models.credit import Credit
from service.models.idempotency_key import IdempotencyKey
from service.models.identity_link import IdentityLink
from service.models.ledger_account import LedgerAccount
from service.models.ledger_hold import LedgerHold
from service.models.ledger_hold_resolution import LedgerHoldResolution
from service.models.ledger_lot import LedgerLot
from service.models.ledger_lot_movement import LedgerLotMovement
from service.models.ledger_pooled_credit import LedgerPooledCredit
from service.models.ledger_posting import LedgerPosting
from service.models.ledger_transaction import LedgerTransaction
from service.models.merchant import Merchant
from service.models.merchant_api_key import MerchantApiKey
from service.models.merchant_terminal import MerchantTerminal
from service.models.methodology_draft import MethodologyDraft
from service.models.methodology_version import MethodologyVersion
from service.models.offer import Offer
from service.models.organisation import Organisation
from service.models.organisation_member import OrganisationMember
from service.models.participant import Participant, ParticipantKind
from service.models.partner import Partner
from service.models.partner_credential import PartnerCredential
from service.models.partner_event import PartnerEvent
from service.models.partner_token_use import PartnerTokenUse
from service.models.redemption import Redemption
from service.models.redemption_token import RedemptionToken
from service.models.reduction import (
    GRAMS_PER_SERIAL,
    ReductionBatch,
    ReductionBatchCredit,
    ReductionBlock,
    ReductionHolder,
    ReductionPool,
    ReductionRetirement,
)
from service.models.refresh_token import RefreshToken
from service.models.review import REVIEW_STATUSES, ReviewFlag, ReviewRule
from service.models.user import User
from service.models.webhook_attempt import WebhookAttempt
from service.models.webhook_endpoint import WebhookEndpoint
from service.models.webhook_message import WebhookMessage

__all__ = [
    "ADMIN_ROLES",
    "GRAMS_PER_SERIAL",
    "REVIEW_STATUSES",
    "Admin",
    "AdminAuditEntry",
    "Base",
    "CapUsage",
    "Credit",
    "IdempotencyKey",
    "IdentityLink",
    "LedgerAccount",
    "LedgerHold",
    "LedgerHoldResolution",
    "LedgerLot",
    "LedgerLotMovement",
    "LedgerPooledCredit",
    "LedgerPosting",
    "LedgerTransaction",
    "Merchant",
    "MerchantApiKey",
    "MerchantTerminal",
    "MethodologyDraft",
    "MethodologyVersion",
    "Offer",
    "Organisation",
    "OrganisationMember",
    "Participant",
    "ParticipantKind",
    "Partner",
    "PartnerCredential",
    "PartnerEvent",
    "PartnerTokenUse",
    "Redemption",
    "RedemptionToken",
    "ReductionBatch",
    "ReductionBatchCredit",
    "ReductionBlock",
    "ReductionHolder",
    "ReductionPool",
    "ReductionRetirement",
    "RefreshToken",
    "ReviewFlag",
    "ReviewRule",
    "User",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
]
