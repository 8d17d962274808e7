"""Request and response shapes of /v1/me/consents (camelCase JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from mediaplane.consent.models import Consent
from mediaplane.consent.purposes import Purpose

# The database answers in its session time zone; clients always get UTC ("...Z").
UtcDatetime = Annotated[datetime, AfterValidator(lambda value: value.astimezone(UTC))]


class GrantRequest(BaseModel):
    """Optional body of `PUT /v1/me/consents/{purpose}`."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        default="api",
        min_length=1,
        max_length=64,
        description="Where the user agreed (e.g. `ios-onboarding`), kept for the record.",
    )


class ConsentOut(BaseModel):
    """One consent: active until revoked; a revoked one stays in the history."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    purpose: Purpose
    status: Literal["active", "revoked"]
    granted_at: UtcDatetime
    revoked_at: UtcDatetime | None
    source: str

    @classmethod
    def of(cls, consent: Consent) -> ConsentOut:
        return cls(
            purpose=Purpose(consent.purpose),
            status="active" if consent.revoked_at is None else "revoked",
            granted_at=consent.granted_at,
            revoked_at=consent.revoked_at,
            source=consent.source,
        )


class ConsentList(BaseModel):
    """A user's consent history, newest first."""

    items: list[ConsentOut]


class ConsentEventOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    event: Literal["granted", "revoked"]
    at: UtcDatetime
    source: str


class ConsentHistory(BaseModel):
    """A user's consent to one purpose: where it stands, and every grant and revocation."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    purpose: Purpose
    status: Literal["active", "revoked", "never"]
    history: list[ConsentEventOut] = Field(description="Oldest first.")


class AuditEvent(ConsentEventOut):
    user_id: str
    purpose: str


class ConsentAudit(BaseModel):
    """Consent events of a period, oldest first (`from` included, `to` excluded)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    from_: UtcDatetime = Field(alias="from")
    to: UtcDatetime
    items: list[AuditEvent]
