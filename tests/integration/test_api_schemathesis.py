"""Schemathesis against the real API process, once on SQLite and once on PostgreSQL.

The OpenAPI document is read from the running API (`GET /openapi.json`). Every operation in it is
fuzzed with schema-valid (positive) and schema-invalid (negative) requests, each carrying an
access token, and every answer is checked:

- no 5xx, ever (a 503 too: Redis is running);
- every 400 names fields: a JSON object of field (or `body`) -> non-empty list of reasons;
- the answer is what the document says (status code, content type, body schema, headers);
- schema-invalid requests are refused with a 4xx, schema-valid ones accepted (see ACCEPTED_400);
- the token is really needed where the document says it is.

Operations with ids in their path run twice: with generated ids (mostly unknown: the 404s) and
with the ids of a model, a portfolio (with a location file) and an analysis made beforehand, so
the routes' own logic is reached. Sub-tasks are only made by workers, so `task_pk` is never pinned.
Deletions run last, so those objects live until then.

`schemathesis.pytest.from_fixture` + `@schema.parametrize()` would be the usual way to fuzz a
server that a fixture starts, but it fails under pytest 9.2 (it sets `Node._nodeid`, which pytest
9.2 no longer has). So each operation's Hypothesis strategy (`APIOperation.as_strategy`, the
documented way to use Schemathesis in custom tests) is run here with `@given`, derandomized, and
each case is sent with `Case.call_and_validate` and the checks configured in CHECKS.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.errors import FailureGroup

from tests.integration.conftest import PASSWORD
from worker.demo_model import demo_locations

pytestmark = pytest.mark.integration

# Hypothesis examples per operation, generation mode and target (generated or existing ids).
MAX_EXAMPLES = 25
# Well below what MAX_EXAMPLES gives (about 2,800): far fewer means generation broke down.
MIN_CASES = 1500

# Schema-valid requests that the API refuses with a 400 for reasons the schema cannot state: the
# stored state (a duplicate model, an analysis naming a portfolio that does not exist, an action
# its status does not allow, a scaling update whose merge with the stored configuration puts
# worker_count_min above worker_count_max) or the content of an uploaded file (not CSV).
ACCEPTED_400 = [
    "POST /v2/models/",
    "PUT /v2/models/{model_pk}/",
    "POST /v2/models/{model_pk}/scaling_configuration/",
    "POST /v2/portfolios/{portfolio_pk}/location_file/",
    "POST /v2/analyses/",
    *(
        f"POST /v2/analyses/{{analysis_pk}}/{action}/"
        for action in (
            "generate_inputs",
            "run",
            "generate_and_run",
            "cancel",
            "cancel_generate_inputs",
            "cancel_analysis_run",
        )
    ),
]
POSITIVE_EXPECTED = ["2xx", "401", "403", "404", "409"]
CHECKS: dict[str, dict[str, Any]] = {
    # No 5xx, ever: a 503 neither, Redis is running.
    "not_a_server_error": {"enabled": True},
    # The document states every answer the API gives: its status, media type, body and headers.
    "status_code_conformance": {"enabled": True},
    "content_type_conformance": {"enabled": True},
    "response_schema_conformance": {"enabled": True},
    "response_headers_conformance": {"enabled": True},
    # Schema-invalid input is refused with a 4xx, and schema-valid input accepted.
    "negative_data_rejection": {"enabled": True},
    "positive_data_acceptance": {"enabled": True, "expected-statuses": POSITIVE_EXPECTED},
    # An operation that declares the bearer token refuses a request without one, or with a bad one.
    "ignored_auth": {"enabled": True},
    # Left out: they judge requests that only Schemathesis's other phases make, and this test
    # runs the fuzzing phase alone: requests without a required header or with a method the
    # path does not have (coverage phase), a resource used after its deletion or not found after
    # its creation (stateful phase, from OpenAPI links this document has none of), and one user's
    # objects read by another (there is one user). `max_response_time` is off by default, and off
    # it stays: timing on a shared CI machine is not a property of the API.
    "missing_required_header": {"enabled": False},
    "unsupported_method": {"enabled": False},
    "allow_header_conformance": {"enabled": False},
    "use_after_free": {"enabled": False},
    "ensure_resource_availability": {"enabled": False},
    "object_level_authorization": {"enabled": False},
}

LOCATIONS = demo_locations(2).encode()
MODEL_SETTINGS = {
    "model_settings": {
        "event_set": {
            "default": "p",
            "options": [{"id": "p", "desc": "Probabilistic", "number_of_events": 100}],
        }
    }
}
ANALYSIS_SETTINGS = {"model_settings": {"event_set": "p"}}


def names_fields(ctx: CheckContext, response: Response, case: Case) -> None:
    """A 400 is a JSON object naming each bad field (or `body`) with a list of reasons."""
    if response.status_code != 400:
        return
    body = response.json()
    assert isinstance(body, dict) and body, f"a 400 names no field: {body!r}"
    for name, reasons in body.items():
        assert name, f"a 400 names an empty field: {body!r}"
        assert isinstance(reasons, list) and reasons, f"a 400 gives {name!r} no reasons: {body!r}"
        assert all(isinstance(r, str) and r.strip() for r in reasons), f"empty reason: {body!r}"


@pytest.fixture
def tokens(api_url: str) -> dict[str, str]:
    answer = requests.post(
        f"{api_url}/access_token/", json={"username": "admin", "password": PASSWORD}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    tokens: dict[str, str] = answer.json()
    return tokens


@pytest.fixture
def existing(api_url: str, tokens: dict[str, str]) -> dict[str, int]:
    """Path parameters naming a model, a portfolio with a location file, and an analysis."""
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        answer = requests.request(method, api_url + path, headers=auth, timeout=10, **kwargs)
        assert answer.status_code < 300, (method, path, answer.status_code, answer.text)
        return answer.json()

    supplier = f"Fuzz{uuid.uuid4().hex[:8]}"
    model = call(
        "POST", "/v2/models/", json={"supplier_id": supplier, "model_id": "M", "version_id": "1"}
    )
    call("POST", f"/v2/models/{model['id']}/settings/", json=MODEL_SETTINGS)
    portfolio = call("POST", "/v2/portfolios/", json={"name": "fuzzed"})
    call(
        "POST",
        f"/v2/portfolios/{portfolio['id']}/location_file/",
        files={"file": ("location.csv", LOCATIONS, "text/csv")},
    )
    analysis = call(
        "POST",
        "/v2/analyses/",
        json={"name": "fuzzed", "portfolio": portfolio["id"], "model": model["id"]},
    )
    call("POST", f"/v2/analyses/{analysis['id']}/settings/", json=ANALYSIS_SETTINGS)
    return {"model_pk": model["id"], "portfolio_pk": portfolio["id"], "analysis_pk": analysis["id"]}


def load_schema(api_url: str) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "request-timeout": 10,
            "generation": {
                # The token is sent with every request; whether it matters is `ignored_auth`'s job.
                "with-security-parameters": False,
                # Unknown search parameters are ignored, as upstream (README): not a refusal.
                "allow-extra-parameters": False,
            },
            "checks": CHECKS,
            "operations": [
                {
                    "include-name": ACCEPTED_400,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*POSITIVE_EXPECTED, "400"]
                        }
                    },
                }
            ],
        }
    )
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json", config=config, timeout=10)


def in_order(schema: schemathesis.BaseSchema) -> list[APIOperation]:
    """Every operation; deletions last, deepest first, so the existing objects live until then."""
    operations = [schema[path][method] for path in schema for method in schema[path]]
    return sorted(
        operations,
        key=lambda op: (
            op.method.upper() == "DELETE",
            -op.path.count("/") if op.method.upper() == "DELETE" else 0,
        ),
    )


def targets(operation: APIOperation, existing: dict[str, int]) -> list[dict[str, int] | None]:
    """Generated path parameters, and the existing objects' ids where every one is known."""
    names = [parameter.name for parameter in operation.path_parameters]
    if names and all(name in existing for name in names):
        return [None, {name: existing[name] for name in names}]
    return [None]


def fuzz(
    operation: APIOperation,
    mode: GenerationMode,
    pinned: dict[str, int] | None,
    headers: dict[str, str],
    ran: Counter[str],
    statuses: Counter[int],
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=pinned)

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        # The same cases on every run and machine; no example database to carry between runs.
        derandomize=True,
        database=None,
        deadline=None,
        report_multiple_bugs=False,
        # The health checks judge a test's own strategies; these are Schemathesis's.
        suppress_health_check=list(hypothesis.HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(case=strategy)
    def run(case: Case) -> None:
        ran[operation.label] += 1
        response = case.call_and_validate(headers=headers, additional_checks=[names_fields])
        statuses[response.status_code] += 1

    run()


def test_the_api_keeps_its_openapi_promises(
    api_url: str,
    tokens: dict[str, str],
    existing: dict[str, int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    schema = load_schema(api_url)
    ran: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    operations = in_order(schema)
    for operation in operations:
        # refresh_token/ takes the refresh token as its bearer; every other route the access token.
        token = tokens["refresh_token" if operation.path == "/refresh_token/" else "access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for pinned in targets(operation, existing):
            inputs = [operation.query, operation.body]
            if pinned is None:
                inputs.append(operation.path_parameters)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if mode is GenerationMode.NEGATIVE and not any(len(x) for x in inputs):
                    continue  # nothing in the request that could be wrong
                target = "generated ids" if pinned is None else f"existing ids {pinned}"
                try:
                    fuzz(operation, mode, pinned, headers, ran, statuses)
                except (Exception, FailureGroup) as exc:
                    failures.append(f"{operation.label}, {mode.value}, {target}:\n{exc}")
    with capsys.disabled():
        print(
            f"\nschemathesis on {api_url}: {ran.total()} cases over {len(ran)} operations, "
            f"{len(failures)} failing; answers {dict(sorted(statuses.items()))}"
        )
    assert not failures, "\n\n".join(failures)
    assert set(ran) == {op.label for op in operations}, "some operations never ran"
    assert ran.total() >= MIN_CASES
