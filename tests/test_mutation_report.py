"""``make mutation``'s report (tests/mutation/report.py) over result files as mutmut 3 writes them: the share killed
per module, a timeout counted as a kill, and a failing exit when a module is below the goal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.mutation import report

KILLED, SURVIVED, TIMEOUT, UNCHECKED = 1, 0, 36, None


def _results(where: Path, module: str, codes: list[int | None]) -> None:
    meta = where / "mutants" / f"{module}.meta"
    meta.parent.mkdir(parents=True, exist_ok=True)
    keys = {f"{module.replace('/', '.')}.x__mutmut_{i}": code for i, code in enumerate(codes, 1)}
    meta.write_text(json.dumps({"exit_code_by_key": keys}))


def test_every_module_at_the_goal_passes_and_a_timeout_is_a_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _results(tmp_path, "predictor/errors.py", [KILLED] * 16 + [TIMEOUT] * 1 + [SURVIVED] * 3)  # 17 / 20 = 85%
    _results(tmp_path, "predictor/features.py", [KILLED] * 9 + [UNCHECKED] * 5)  # a run narrowed by names
    monkeypatch.chdir(tmp_path)

    assert report.main(["--survivors"]) == 0

    out = capsys.readouterr().out
    assert "predictor/errors.py" in out and "85.0%" in out and "3 survived" in out
    assert "predictor/features.py" in out and "100.0%" in out and "/ 14" not in out
    assert "predictor.errors.py.x__mutmut_18" in out  # the survivors, by name


def test_a_module_below_the_goal_fails_the_target_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _results(tmp_path, "predictor/errors.py", [KILLED] * 20)
    _results(tmp_path, "predictor/model.py", [KILLED] * 84 + [SURVIVED] * 16)  # 84%
    monkeypatch.chdir(tmp_path)

    assert report.main([]) == 1

    captured = capsys.readouterr()
    assert "(below 85%)" in captured.out
    assert "below the goal of 85% killed: predictor/model.py —" in captured.err
    assert "errors.py" not in captured.err


def test_no_results_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert report.main([]) == 1
