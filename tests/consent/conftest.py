"""Fixtures of the consent tests: two end users with real tokens."""

from __future__ import annotations

import pytest

from tests.media_api.helpers import bearer


@pytest.fixture
def alice(make_token) -> dict[str, str]:
    return bearer(make_token(aud="media", roles=["user"], sub="alice"))


@pytest.fixture
def bob(make_token) -> dict[str, str]:
    return bearer(make_token(aud="media", roles=["user"], sub="bob"))
