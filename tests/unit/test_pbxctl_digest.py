"""`pbxctl ext digest` as an admin runs it (the real ./pbxctl, in a subprocess): it
shows and sets the digest challenges an extension's phones get, refuses a bad
value in one line changing nothing, and audits the change."""

from __future__ import annotations

import pytest

from tests.unit.test_pbxctl_smalls import one_line, pbxctl, rows  # noqa: F401 (fixture)


@pytest.fixture
def with_1001(pbxctl):  # noqa: F811
    assert pbxctl("init").returncode == 0
    assert pbxctl("ext", "add", "1001", "--password", "Kx9-strong-pass").returncode == 0
    return pbxctl


def test_shows_and_sets_the_challenges(with_1001):
    run = with_1001
    assert run("ext", "digest", "1001").stdout == (
        "Extension 1001: phones are challenged with MD5 (the PBX's PBX_DIGEST_ALGORITHMS)\n")
    # what the PBX's setting says, when it is set
    assert "with SHA-256, MD5 (the PBX's" in run(
        "ext", "digest", "1001", PBX_DIGEST_ALGORITHMS="SHA-256,MD5").stdout
    assert run("ext", "digest", "1001", "sha-256,md5").stdout == (
        "Extension 1001: phones are challenged with SHA-256, MD5 (its own choice)\n")
    assert rows(run.db_path, "SELECT digest_algorithms FROM extension") == [("SHA-256,MD5",)]
    assert "with MD5 (the PBX's" in run("ext", "digest", "1001", "default").stdout
    assert rows(run.db_path, "SELECT digest_algorithms FROM extension") == [("",)]
    audit = rows(run.db_path,
                 "SELECT action, target, detail FROM audit_log WHERE action = 'extension.digest'")
    assert audit == [("extension.digest", "1001", "default -> SHA-256,MD5"),
                     ("extension.digest", "1001", "SHA-256,MD5 -> default")]


@pytest.mark.parametrize(("argv", "says"), [
    (("1001", "SHA-1"), "pbxctl: digest algorithms: expected MD5 and/or SHA-256, most preferred"
                        " first (e.g. SHA-256,MD5), got 'SHA-1'"),
    (("1001", "MD5,MD5"), "pbxctl: digest algorithms: each algorithm once, got 'MD5,MD5'"),
    (("4711", "MD5"), "pbxctl: no extension 4711"),
])
def test_a_bad_value_is_one_line_and_changes_nothing(with_1001, argv, says):
    result = with_1001("ext", "digest", *argv)
    assert result.returncode == 1
    assert one_line(result) == says
    assert rows(with_1001.db_path, "SELECT digest_algorithms FROM extension") == [("",)]
    assert rows(with_1001.db_path,
                "SELECT COUNT(*) FROM audit_log WHERE action = 'extension.digest'") == [(0,)]
