"""`chalice local` serves requests on many threads: each view must see its own request."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from chalice.config import Config
from chalice.local import LocalGateway

from app import app
from tests.integration.conftest import Api, Aws, job_body


def test_concurrent_requests_each_read_their_own_body_and_caller(
    api: Api, aws: Aws, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["aws"] == "moto":
        # Posting a job is a transaction (the job and its listing entry), and moto's
        # TransactWriteItems deep-copies the table unguarded: concurrent ones crash it.
        pytest.skip("moto's transactions are not thread-safe; MiniStack runs this")
    gateway = LocalGateway(app, Config(chalice_stage="test"))
    users = [f"user{i}" for i in range(60)]

    def create(user: str) -> dict:
        headers = {"authorization": f"Bearer {api.token(user)}", "content-type": "application/json"}
        resp = gateway.handle_request("POST", "/jobs", headers, json.dumps(job_body(title=user)).encode())
        assert resp["statusCode"] == 201, resp
        return json.loads(resp["body"])

    with ThreadPoolExecutor(max_workers=24) as pool:
        jobs = list(pool.map(create, users * 4))

    mismatched = [(j["ownerName"], j["title"]) for j in jobs if j["ownerName"] != j["title"]]
    assert mismatched == []
