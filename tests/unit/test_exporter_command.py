"""`oasis-autoscaler exporter`: bad settings end the command with one line naming the setting."""

from __future__ import annotations

import pytest

from cli.main import main

REFUSED = [
    pytest.param([], "platform_url: Field required", id="no platform URL"),
    pytest.param(["--platform-url", "oasis:8000"], "platform_url", id="no scheme"),
    pytest.param(
        ["--platform-url", "http://oasis:8000", "--username", "u"],
        "username needs password or password_file",
        id="a username without a password",
    ),
    pytest.param(
        ["--platform-url", "http://oasis:8000", "--websocket-url", "http://oasis:8001"],
        "websocket_url",
        id="a websocket URL that is not ws",
    ),
]


@pytest.mark.parametrize(("argv", "says"), REFUSED)
def test_bad_settings_exit_2_with_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OASIS_AUTOSCALER_EXPORTER_PLATFORM_URL", raising=False)
    assert main(["exporter", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("error: ") and says in line


def test_the_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "exporter" in capsys.readouterr().out
