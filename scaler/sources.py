"""The scaler's only I/O: read the published metrics and turn them into each model's state.

A source is a callable returning model -> `ModelState` (as KEDA's redis scaler keeps its I/O in
`getListLengthFn`), so the refresh loop and the tests can swap it for a lambda. A source raises
`SourceError` (or any exception) when it cannot read; it never returns a partial guess, so a
failure leaves the last good state in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

import scaler.metric_names
from scaler.metric_names import (
    ANALYSES_BY_PRIORITY,
    MODEL_LABEL,
    PRIORITY_LABEL,
    SCALER_INPUTS,
    STRATEGY_LABEL,
)
from scaler.samples import Problem, Sample, build_states
from scaler.settings import ScalerSettings, SourceKind
from scaler.state import ModelState

log = logging.getLogger(__name__)

Source = Callable[[], Mapping[str, ModelState]]
ProblemSink = Callable[[Sequence[Problem]], None]
# Ask for the classic text format: the parser reads it, and every publisher serves it.
SCRAPE_ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
# Prometheus's parameter for asking a /metrics for some samples only (docs/metrics.md).
NAME_PARAMETER = "name[]"
# One query for every input: PromQL keeps __name__ in a `by` clause, and `max` merges the API's
# replicas (one series per instance) as build_states merges scrape targets.
# The analyses by priority keep their `priority` label in a second part (`or` keeps both: their
# label sets differ).
PROMQL = (
    'max by (__name__, {model}, {strategy}) ({{__name__=~"{names}"}})'
    ' or max by (__name__, {model}, {priority}) ({{__name__="{by_priority}"}})'
).format(
    model=MODEL_LABEL,
    strategy=STRATEGY_LABEL,
    priority=PRIORITY_LABEL,
    names="|".join(name for name in SCALER_INPUTS if name != ANALYSES_BY_PRIORITY),
    by_priority=ANALYSES_BY_PRIORITY,
)


class SourceError(Exception):
    """The source could not be read; the message says which and why."""


def text_samples(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (raises ValueError on a malformed one)."""
    return [
        Sample(sample.name, sample.labels, float(sample.value))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


class LineCache:
    """The samples of successive scrapes of one target, parsing only the lines not seen last time.

    Between two reads half a second apart few numbers change; parsing a thousand models' text
    every time would hold the interpreter for tens of milliseconds, during which KEDA's calls
    wait for it. Comments are left out: the samples need only the sample lines.
    """

    def __init__(self) -> None:
        self._known: dict[str, Sample] = {}

    def samples(self, text: str) -> list[Sample]:
        lines = [line for line in text.splitlines() if line and not line.startswith("#")]
        new = [line for line in dict.fromkeys(lines) if line not in self._known]
        parsed = self._parse(new)
        known = {line: self._known.get(line) or parsed[line] for line in lines}
        self._known = known  # only this read's lines: what went away is forgotten
        return [known[line] for line in lines]

    @staticmethod
    def _parse(lines: list[str]) -> dict[str, Sample]:
        if not lines:
            return {}
        samples = text_samples("\n".join(lines) + "\n")
        if len(samples) == len(lines):
            return dict(zip(lines, samples, strict=True))
        # A line that is not one sample (never from our publishers): parse them one by one.
        return {line: _one_sample(line) for line in lines}


def _one_sample(line: str) -> Sample:
    samples = text_samples(line + "\n")
    if len(samples) != 1:
        raise ValueError(f"not one sample: {line!r}")
    return samples[0]


def promql_samples(body: Any) -> list[Sample]:
    """The samples of a Prometheus `/api/v1/query` answer of result type `vector`."""
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error", body) if isinstance(body, dict) else body
        raise SourceError(f"Prometheus refused the query: {detail}")
    data = body.get("data") or {}
    if data.get("resultType") != "vector":
        raise SourceError(f"Prometheus answered a {data.get('resultType')!r}, not a vector")
    samples = []
    for row in data.get("result") or []:
        labels = dict(row["metric"])
        # Values are strings ("3", "NaN", "+Inf"); float() reads every one of them.
        samples.append(Sample(labels.pop("__name__", ""), labels, float(row["value"][1])))
    return samples


def light_scrape_query() -> list[tuple[str, str]]:
    """Ask only for the scaler's inputs: the whole /metrics (every model's sub-task counters and
    histogram) is megabytes. Read at each request, so a name added to SCALER_INPUTS is asked."""
    return [(NAME_PARAMETER, name) for name in scaler.metric_names.SCALER_INPUTS]


@dataclass(frozen=True)
class _Answer:
    """One target's answer: its text and samples, or why it failed."""

    text: str | None = None
    samples: list[Sample] = field(default_factory=list)
    error: str = ""


class ScrapeSource:
    """GET every target's /metrics; the refresh succeeds when at least one target answers.

    The targets are replicas of one publisher (each publishes every model), so one answer is the
    whole picture, and an API pod restarting does not age the scaler's state.
    """

    def __init__(
        self,
        targets: Sequence[str],
        *,
        timeout: float,
        on_problems: ProblemSink | None = None,
        on_target_error: Callable[[str], None] | None = None,
        worker_start: float | None = None,
    ) -> None:
        if not targets:
            raise ValueError("a scrape source needs at least one target")
        self._targets = list(targets)
        self._timeout = timeout
        self._worker_start = worker_start
        self._on_problems = on_problems or log_problems
        self._on_target_error = on_target_error or (lambda target: None)
        # One session per target: keep-alive at a refresh every half second, and no session is
        # shared between the pool's threads.
        self._sessions = {target: requests.Session() for target in self._targets}
        self._lines = {target: LineCache() for target in self._targets}
        self._pool = ThreadPoolExecutor(len(self._targets), thread_name_prefix="scrape")
        # The texts of the last read and the states built from them.
        self._last: tuple[tuple[str | None, ...], Mapping[str, ModelState]] | None = None

    def __call__(self) -> Mapping[str, ModelState]:
        """Each model's state; the very same mapping as last time when no text changed."""
        answers = list(self._pool.map(self._scrape, self._targets))
        errors = [answer.error for answer in answers if answer.error]
        if len(errors) == len(self._targets):
            raise SourceError("; ".join(errors))
        texts = tuple(answer.text for answer in answers)
        if self._last is not None and self._last[0] == texts:
            return self._last[1]
        samples = [sample for answer in answers for sample in answer.samples]
        built = build_states(samples, worker_start=self._worker_start)
        self._on_problems(built.problems)
        self._last = (texts, built.states)
        return built.states

    def _scrape(self, target: str) -> _Answer:
        try:
            response = self._sessions[target].get(
                target,
                params=light_scrape_query(),
                timeout=self._timeout,
                headers={"Accept": SCRAPE_ACCEPT},
            )
            response.raise_for_status()
            return _Answer(response.text, self._lines[target].samples(response.text))
        except Exception as error:  # whatever one target does wrong fails that target only
            self._on_target_error(target)
            return _Answer(error=f"{target}: {error}")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for session in self._sessions.values():
            session.close()


class PrometheusSource:
    """One PromQL instant query per refresh over Prometheus's HTTP API, for every model at once.

    An answer without any model is a failure, not "no models": when the API goes down, Prometheus
    marks its series stale and the query comes back empty, and forgetting every model then would
    turn KEDA's answers into NOT_FOUND instead of the last good state.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        on_problems: ProblemSink | None = None,
        worker_start: float | None = None,
    ) -> None:
        self._endpoint = url.rstrip("/") + "/api/v1/query"
        self._timeout = timeout
        self._worker_start = worker_start
        self._on_problems = on_problems or log_problems
        self._session = requests.Session()

    def __call__(self) -> Mapping[str, ModelState]:
        try:
            response = self._session.post(
                self._endpoint, data={"query": PROMQL}, timeout=self._timeout
            )
            # Prometheus explains a refused query in a JSON body with a 4xx status.
            body = response.json()
        except (requests.RequestException, ValueError) as error:
            raise SourceError(f"{self._endpoint}: {error}") from error
        samples = promql_samples(body)
        built = build_states(samples, worker_start=self._worker_start)
        self._on_problems(built.problems)
        if not built.states:
            raise SourceError(
                f"{self._endpoint}: no model has the metric oasis_model_scaling_info; "
                "is Prometheus scraping the API's /metrics?"
            )
        return built.states

    def close(self) -> None:
        self._session.close()


def log_problems(problems: Iterable[Problem]) -> None:
    for problem in problems:
        log.warning("model %s: %s", problem.model, problem.message)


def make_source(
    settings: ScalerSettings,
    *,
    on_problems: ProblemSink | None = None,
    on_target_error: Callable[[str], None] | None = None,
) -> ScrapeSource | PrometheusSource:
    timeout = settings.effective_timeout_seconds
    if settings.source is SourceKind.PROMETHEUS:
        assert settings.prometheus_url  # the settings refuse prometheus without a URL
        return PrometheusSource(
            settings.prometheus_url,
            timeout=timeout,
            on_problems=on_problems,
            worker_start=settings.worker_start_seconds,
        )
    return ScrapeSource(
        settings.scrape_targets,
        timeout=timeout,
        on_problems=on_problems,
        on_target_error=on_target_error,
        worker_start=settings.worker_start_seconds,
    )
