"""Anchors of the ledger head: a truncated tail is caught (bad-inputs #29, last part)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine

from .conftest import ROOT
from .test_ledger import _tamper, append_some


def anchor(runner, path) -> str:
    result = runner.invoke(args=["consent", "anchor", "--output", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def verify(runner, *paths):
    args = ["consent", "verify"]
    for path in paths:
        args += ["--anchor", str(path)]
    return runner.invoke(args=args)


def test_anchor_appends_the_head_and_an_intact_ledger_passes(app, runner, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    append_some(app, 4)
    with time_machine.travel("2027-05-01 10:00:00Z", tick=False):
        assert "anchored seq 4" in anchor(runner, anchors)
    append_some(app, 3)
    anchor(runner, anchors)
    lines = [json.loads(line) for line in anchors.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [4, 7]
    assert set(lines[0]) == {"seq", "hash", "recorded_at", "anchored_at"}
    assert lines[0]["anchored_at"] == "2027-05-01T10:00:00.000000Z"
    assert stat.S_IMODE(anchors.stat().st_mode) & 0o007 == 0  # not world-readable
    head = runner.invoke(args=["consent", "verify"]).output.split()[-1]
    assert lines[1]["hash"] == head

    result = verify(runner, anchors)
    assert result.exit_code == 0, result.output
    assert f"ok: 7 records, head hash {head}" in result.output
    assert "anchors: 2 matched, 0 purged" in result.output


def test_anchor_to_stdout_is_one_json_line(app, runner):
    append_some(app, 2)
    result = runner.invoke(args=["consent", "anchor"])
    assert result.exit_code == 0
    assert json.loads(result.output)["seq"] == 2


def test_empty_ledger_anchors_nothing(runner, tmp_path):
    result = runner.invoke(args=["consent", "anchor", "--output", str(tmp_path / "a")])
    assert result.exit_code == 0 and "nothing to anchor" in result.output
    assert not (tmp_path / "a").exists()


def test_truncated_tail_is_caught_against_the_last_anchor(app, runner, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    append_some(app, 10)
    anchor(runner, anchors)
    _tamper(app, "DELETE FROM consent_record WHERE seq > 7")
    # Without the anchor the shorter chain still verifies: that is the gap closed here.
    assert runner.invoke(args=["consent", "verify"]).exit_code == 0
    result = verify(runner, anchors)
    assert result.exit_code == 1
    assert "BROKEN at seq 8" in result.output
    assert "ends at seq 7 but seq 10 was anchored" in result.output
    assert "ok:" not in result.output


def test_truncated_then_regrown_tail_is_caught_as_a_rewrite(app, runner, tmp_path):
    """Deleting the newest records and appending new ones: same seq, another hash."""
    anchors = tmp_path / "anchors.jsonl"
    append_some(app, 5)
    anchor(runner, anchors)
    _tamper(app, "DELETE FROM consent_record WHERE seq >= 4")
    append_some(app, 3)
    assert runner.invoke(args=["consent", "verify"]).exit_code == 0
    result = verify(runner, anchors)
    assert result.exit_code == 1
    assert "BROKEN at seq 5: record 5 differs from its anchor" in result.output


def test_anchor_beyond_the_head_fails_and_names_the_file_line(app, runner, tmp_path):
    append_some(app, 3)
    line = runner.invoke(args=["consent", "anchor"]).output.strip()
    forged = json.loads(line) | {"seq": 99}
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(line + "\n\n" + json.dumps(forged) + "\n")
    result = verify(runner, anchors)
    assert result.exit_code == 1
    assert "BROKEN at seq 4" in result.output
    assert f"{anchors}:3" in result.output


def test_several_anchor_files_are_all_checked(app, runner, tmp_path):
    append_some(app, 3)
    anchor(runner, tmp_path / "one")
    append_some(app, 3)
    anchor(runner, tmp_path / "two")
    assert verify(runner, tmp_path / "one", tmp_path / "two").exit_code == 0
    _tamper(app, "DELETE FROM consent_record WHERE seq > 4")
    result = verify(runner, tmp_path / "one", tmp_path / "two")
    assert result.exit_code == 1 and "BROKEN at seq 5" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "not a JSON object"),
        ("[1, 2]\n", "not a JSON object"),
        ('{"hash": "' + "a" * 64 + '"}\n', "'seq' must be a positive integer"),
        ('{"seq": true, "hash": "' + "a" * 64 + '"}\n', "'seq' must be a positive"),
        ('{"seq": 0, "hash": "' + "a" * 64 + '"}\n', "'seq' must be a positive"),
        ('{"seq": 2, "hash": "XYZ"}\n', "'hash' must be 64 lower-case hex digits"),
        ('{"seq": 2, "hash": "' + "a" * 64 + '", "anchored_at": 5}\n', "string"),
        (b"\xff\xfe\n", "cannot be read"),
        (None, "cannot be read"),  # no such file
    ],
)
def test_malformed_anchor_file_is_a_clear_error(
    app, runner, tmp_path, content, message
):
    append_some(app, 2)
    anchors = tmp_path / "anchors.jsonl"
    if isinstance(content, bytes):
        anchors.write_bytes(content)
    elif content is not None:
        anchors.write_text('{"seq": 1, "hash": "' + "b" * 64 + '"}\n' + content)
    result = verify(runner, anchors)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"error: {anchors}" in result.output and message in result.output
    if content is not None and not isinstance(content, bytes):
        assert f"{anchors}:2" in result.output


def test_anchors_older_than_a_purge_are_reported_not_failed(app, runner, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    with time_machine.travel("2025-01-10 12:00:00Z", tick=False):
        append_some(app, 3)
        anchor(runner, anchors)  # seq 3: purged below, not checkable
        append_some(app, 2)
        anchor(runner, anchors)  # seq 5: the checkpoint keeps its hash
    with time_machine.travel("2026-06-10 12:00:00Z", tick=False):
        append_some(app, 3)
        anchor(runner, anchors)  # seq 8: still in the ledger
    with time_machine.travel("2026-07-01 12:00:00Z", tick=False):
        purged = runner.invoke(args=["consent", "purge", "--older-than-days", "365"])
        assert "purged 5 records" in purged.output
    result = verify(runner, anchors)
    assert result.exit_code == 0, result.output
    assert "anchors: 2 matched, 1 purged by retention (not checked)" in result.output
    # Everything purged: the checkpoint is the head, and can itself be anchored.
    with time_machine.travel("2028-01-01 12:00:00Z", tick=False):
        runner.invoke(args=["consent", "purge", "--older-than-days", "365"])
        assert "anchored seq 8" in anchor(runner, anchors)
    result = verify(runner, anchors)
    assert result.exit_code == 0, result.output
    assert "anchors: 3 matched, 1 purged" in result.output
    # A forged checkpoint hash at an anchored seq is still caught.
    _tamper(app, "UPDATE ledger_checkpoint SET last_purged_hash = :h", h="c" * 64)
    assert verify(runner, anchors).exit_code == 1


def test_a_broken_chain_is_not_anchored(app, runner, tmp_path):
    append_some(app, 4)
    _tamper(app, "UPDATE consent_record SET analytics = NOT analytics WHERE seq = 2")
    result = runner.invoke(args=["consent", "anchor", "--output", str(tmp_path / "a")])
    assert result.exit_code == 1 and "nothing anchored" in result.output
    assert not (tmp_path / "a").exists()
    # and verify reports the chain itself first
    good = '{"seq": 1, "hash": "' + "a" * 64 + '"}\n'
    (tmp_path / "b").write_text(good)
    assert "BROKEN at seq 2" in verify(runner, tmp_path / "b").output


def test_the_hourly_script_appends_and_ships_the_line(app, tmp_path):
    """deploy/anchor-ledger.sh, with a stand-in ssh that records what it is sent."""
    append_some(app, 3)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    shipped = tmp_path / "shipped.jsonl"
    (fake_bin / "ssh").write_text(f'#!/bin/sh\necho "$@" >&2\ncat >> "{shipped}"\n')
    (fake_bin / "ssh").chmod(0o755)
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("LOR")
    } | {
        "PATH": f"{fake_bin}:{os.environ['PATH']}",
        "FLASK": str(Path(sys.executable).with_name("flask")),
        "LORCHESTRE_SQLALCHEMY_DATABASE_URI": app.config["SQLALCHEMY_DATABASE_URI"],
        "ANCHOR_SSH_TARGET": "anchor@10.0.0.30",
    }
    anchors = tmp_path / "lib" / "anchors.jsonl"
    for _ in range(2):
        result = subprocess.run(
            [str(ROOT / "deploy" / "anchor-ledger.sh"), str(anchors)],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    assert "anchor@10.0.0.30" in result.stderr
    assert anchors.read_text() == shipped.read_text()
    assert [json.loads(line)["seq"] for line in shipped.read_text().splitlines()] == [
        3,
        3,
    ]
