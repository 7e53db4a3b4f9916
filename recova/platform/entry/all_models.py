"""Imports every model module so ``Base.metadata`` knows all tables (for Alembic and tests)."""

from recova.billing.models import (
    AgencyStatement,
    CommissionLine,
    ContractVersion,
    Invoice,
    InvoiceCounter,
)
from recova.connectors.models import (
    HttpSource,
    IngestionFile,
    IngestionFileChunk,
    IngestionMapping,
    IngestionRowError,
    IngestionRun,
    IngestionSeen,
    IngestionSettings,
)
from recova.platform.agencies.contracts import AgencyContract
from recova.platform.agencies.models import Agency
from recova.platform.allocation.models import (
    AllocationRun,
    AllocationSettings,
    Assignment,
    BucketTransition,
    CaseScore,
    CaseSegment,
    CollectorProfile,
    CollectorWorkload,
    Placement,
    PlacementStrategy,
    SegmentRule,
    StrategyArm,
    StrategyVersion,
)
from recova.platform.audit.models import AuditEvent, AuditHeadExport
from recova.platform.auth.models import Membership, OAuthClient, OAuthToken, User
from recova.platform.cases.models import Account, Case, Contact, Debtor
from recova.platform.compliance.models import PolicyVersion, ValidationNotice
from recova.platform.contact.models import ContactAttempt, MessageTemplate, OutcomeCode
from recova.platform.kernel.idempotency import IdempotencyRecord
from recova.platform.kernel.outbox import OutboxEntry
from recova.platform.payments.models import Payment
from recova.platform.privacy.models import PersonalDataReveal, PrivacySettings
from recova.platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from recova.platform.work.models import (
    CaseHold,
    CaseTransition,
    Dispute,
    Instalment,
    PaymentPlan,
    Promise,
    Settlement,
    WorkSettings,
)
from recova.tenants.models import Tenant

__all__ = [
    "Account",
    "Agency",
    "AgencyContract",
    "AgencyStatement",
    "AllocationRun",
    "AllocationSettings",
    "Assignment",
    "AuditEvent",
    "AuditHeadExport",
    "BucketTransition",
    "Case",
    "CaseHold",
    "CaseScore",
    "CaseSegment",
    "CaseTransition",
    "CollectorProfile",
    "CollectorWorkload",
    "CommissionLine",
    "Contact",
    "ContactAttempt",
    "ContractVersion",
    "Debtor",
    "Dispute",
    "HttpSource",
    "IdempotencyRecord",
    "IngestionFile",
    "IngestionFileChunk",
    "IngestionMapping",
    "IngestionRowError",
    "IngestionRun",
    "IngestionSeen",
    "IngestionSettings",
    "Instalment",
    "Invoice",
    "InvoiceCounter",
    "Membership",
    "MessageTemplate",
    "OAuthClient",
    "OAuthToken",
    "OutboxEntry",
    "OutcomeCode",
    "Payment",
    "PaymentPlan",
    "PersonalDataReveal",
    "Placement",
    "PlacementStrategy",
    "PolicyVersion",
    "PrivacySettings",
    "Promise",
    "SegmentRule",
    "Settlement",
    "StrategyArm",
    "StrategyVersion",
    "Tenant",
    "User",
    "ValidationNotice",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WorkSettings",
]
