"""Fixtures the end-to-end suites share (scripts/e2e sets the environment)."""

import os

import openai
import pytest

from reference_scorer import ReferenceScorer


@pytest.fixture(scope="module")
def client():
    """The OpenAI Python SDK pointed at bon-proxy with --upstream-n fanout (BON_E2E_PROXY)."""
    return openai.OpenAI(base_url=f"{os.environ['BON_E2E_PROXY']}/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="session")
def scorer():
    """The independent reference scorer for the proxies' reward model (BON_E2E_MODEL_DIR)."""
    return ReferenceScorer(os.environ["BON_E2E_MODEL_DIR"])
