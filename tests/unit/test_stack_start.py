"""A service of the local stack that starts slowly is waited for and said to be slow; one that
exits while it starts ends the start at once with its reason and log, in one line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from cli.local import stack as stack_module
from cli.local.settings import StackSettings
from cli.local.stack import LocalStack, Service, StartFailed


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    monkeypatch.setattr(stack_module, "SLOW_START_SECONDS", 0.2)
    return LocalStack(StackSettings(data_dir=tmp_path, admin_password="pw"))


def test_a_slow_start_is_said_and_waited_for(stack: LocalStack) -> None:
    ready_at = time.monotonic() + 1.0
    service = Service(
        "slow",
        [sys.executable, "-c", "import time; time.sleep(30)"],
        {},
        lambda: time.monotonic() >= ready_at,
    )
    said: list[str] = []
    stack.say = said.append
    try:
        stack.launch(service)
        assert any("slow is slow to start" in line for line in said), said
        assert service.child is not None and service.child.running
    finally:
        stack.supervisor.stop_all(grace=5)


def test_an_exit_while_starting_is_one_line_with_reason_and_log(stack: LocalStack) -> None:
    service = Service(
        "broken",
        [sys.executable, "-c", "import sys; sys.exit('error: [Errno 98] Address already in use')"],
        {},
        lambda: False,
    )
    began = time.monotonic()
    with pytest.raises(StartFailed) as failed:
        stack.launch(service)
    assert time.monotonic() - began < 10
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith("broken exited with status 1 while starting: ")
    assert "Address already in use" in message and "broken.log" in message
