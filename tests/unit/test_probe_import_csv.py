"""`pbxctl ext import` and the files it meets (probe findings 9 and 10, docs/security.md):
Excel's byte-order mark, a 10 MB cell, bad rows among many; every refusal one line
on stderr with a non-zero exit, and nothing written."""

from __future__ import annotations

import pytest

from core.credentials import GENERATED_LENGTH, ha1
from core.models import AuditEntry, Extension

REALM = "pbx.test"


@pytest.fixture
def pbx(pbxctl):
    return pbxctl


@pytest.fixture
def csv_file(tmp_path):
    def write(content: str | bytes, name: str = "ext.csv"):
        path = tmp_path / name
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return str(path)

    return write


def numbers() -> list[str]:
    return [e.number for e in Extension.select().order_by(Extension.number)]


def refused(pbx, path):
    """Run the import expecting a refusal: (the one stderr line, extensions after it)."""
    pbx("init")
    before = numbers()
    status, out, err = pbx("ext", "import", path)
    assert status == 1, (out, err)
    assert out == "" and err.endswith("\n") and err.count("\n") == 1, err
    assert numbers() == before  # nothing written
    return err


def test_excel_utf8_csv_with_a_byte_order_mark_imports(pbx, csv_file):
    # What Excel's "CSV UTF-8" writes: a BOM, CRLF line ends, the header first.
    path = csv_file(b"\xef\xbb\xbfnumber,name,password\r\n1002,Zo\xc3\xab,correct-horse-9\r\n"
                    b"1003,Bob,\r\n")
    status, out, err = pbx("ext", "import", path)
    assert (status, err) == (0, "")
    assert out.startswith("Imported 2 extensions\n")
    zoe = Extension.by_number("1002")
    assert zoe.name == "Zoë" and zoe.ha1_md5 == ha1("1002", REALM, "correct-horse-9")
    # The generated password is shown once, and is the one stored.
    line = out.splitlines()[1]
    assert line.startswith("1003: generated password (shown once): ")
    password = line.rsplit(" ", 1)[1]
    assert len(password) == GENERATED_LENGTH
    assert Extension.by_number("1003").ha1_md5 == ha1("1003", REALM, password)


def test_a_byte_order_mark_without_a_header(pbx, csv_file):
    status, out, _ = pbx("ext", "import", csv_file("\ufeff1002,Alice,correct-horse-9\n"))
    assert status == 0 and numbers() == ["1002"]


def test_a_ten_megabyte_cell_is_named_with_its_row_and_the_limit(pbx, csv_file):
    path = csv_file("number,name,password\n1002,Alice,correct-horse-9\n1003,"
                    + "x" * 10_000_000 + ",correct-horse-9\n")
    err = refused(pbx, path)
    assert err == ("pbxctl: ext.csv: row 3: a cell is longer than 1000 characters, "
                   "the limit\n")


def test_a_long_quoted_cell_over_several_lines(pbx, csv_file):
    path = csv_file('1002,"' + "a\n" * 600 + '",correct-horse-9\n')
    assert refused(pbx, path) == ("pbxctl: ext.csv: row 1: a cell is longer than 1000 "
                                  "characters, the limit\n")


def test_a_file_that_is_not_utf8_names_its_line(pbx, csv_file):
    path = csv_file(b"number,name,password\n1002,Alice,correct-horse-9\n"
                    + "1003,Zoë,correct-horse-9\n".encode("latin-1"))
    assert refused(pbx, path) == ("pbxctl: ext.csv: line 3: not UTF-8 text (byte 0xeb); "
                                  "save the file as CSV UTF-8\n")


def test_a_nul_byte(pbx, csv_file):
    err = refused(pbx, csv_file("1002,Alice,correct-horse-9\n1003,B\0b,correct-horse-9\n"))
    assert err == ("pbxctl: ext.csv: row 2: display name must not contain control characters; "
                   "nothing was imported\n")


def test_one_bad_row_among_a_thousand_changes_nothing(pbx, csv_file):
    lines = ["number,name,password"] + [f"{3000 + i},User {i},correct-horse-9"
                                        for i in range(1000)]
    lines[700] = "3699,User 699,short"
    err = refused(pbx, csv_file("\n".join(lines) + "\n"))
    assert err == ("pbxctl: ext.csv: row 701: password must be at least 10 characters; "
                   "nothing was imported\n")
    assert AuditEntry.select().count() == 0


def test_every_bad_row_is_counted_and_the_first_named(pbx, csv_file):
    path = csv_file("1002,Alice,correct-horse-9\nabc,Bob,\n1004,Carol,12345678901\n"
                    "1005,Dave,correct-horse-9,extra\n")
    assert refused(pbx, path) == (
        "pbxctl: ext.csv: row 2: extension number 'abc' must be 2 to 15 digits "
        "(2 more rows with problems); nothing was imported\n")


@pytest.mark.parametrize(("content", "message"), [
    ("1002,Alice,correct-horse-9\n\n1002,Alice again,correct-horse-9\n",
     "row 3: extension 1002 is also in row 1"),
    ("1002;Alice;correct-horse-9\n",
     "row 1: expected number,name,password (3 cells separated by commas), got 1 cell"),
    ("1002,Alice\n", "row 1: expected number,name,password (3 cells separated by commas), "
                     "got 2 cells"),
    ("1002,\x1b[2JAlice,correct-horse-9\n", "row 1: display name must not contain control "
                                            "characters"),
    ("10020000001,Alice,10020000001\n", "row 1: password must not be the extension number"),
    ("number,name,password\n1001,Taken,correct-horse-9\n", "row 2: extension 1001 already "
                                                           "exists"),
])
def test_refusals_name_the_row(pbx, csv_file, content, message):
    pbx("ext", "add", "1001", "--generate")
    assert refused(pbx, csv_file(content)) == (
        f"pbxctl: ext.csv: {message}; nothing was imported\n")


def test_blank_rows_and_spaces_are_ignored(pbx, csv_file):
    path = csv_file("number,name,password\n\n , , \n 1002 , Alice , correct-horse-9 \n")
    assert pbx("ext", "import", path)[0] == 0
    alice = Extension.by_number("1002")
    assert alice.name == "Alice" and alice.ha1_md5 == ha1("1002", REALM, "correct-horse-9")


def test_an_empty_file(pbx, csv_file):
    assert pbx("ext", "import", csv_file(""))[:2] == (0, "Imported 0 extensions\n")


def test_a_missing_file(pbx, tmp_path):
    status, _, err = pbx("ext", "import", str(tmp_path / "nope.csv"))
    assert status == 1 and err == f"pbxctl: cannot read {tmp_path / 'nope.csv'}: " \
                                  "No such file or directory\n"


def test_too_many_rows(pbx, csv_file, monkeypatch):
    from core import extension_csv

    monkeypatch.setattr(extension_csv, "MAX_ROWS", 3)
    path = csv_file("".join(f"{1002 + i},,\n" for i in range(4)))
    assert refused(pbx, path) == ("pbxctl: ext.csv: 4 rows; at most 3 can be imported at "
                                  "once, split it\n")


def test_too_large_a_file(pbx, csv_file, monkeypatch):
    from core import extension_csv

    monkeypatch.setattr(extension_csv, "MAX_BYTES", 2 * 1024 * 1024)
    path = csv_file("1002,Alice,correct-horse-9\n" * 100_000)
    assert refused(pbx, path) == "pbxctl: ext.csv: larger than 2 MB; split it\n"


def test_every_imported_extension_is_audited(pbx, csv_file):
    pbx("ext", "import", csv_file("1002,Alice,correct-horse-9\n1003,,\n", "staff.csv"))
    rows = [(e.action, e.target, e.source, e.detail)
            for e in AuditEntry.select().order_by(AuditEntry.id)]
    assert rows == [
        ("extension.create", "1002", "local", "name 'Alice', password set, imported from "
                                              "staff.csv"),
        ("extension.create", "1003", "local", "generated password, imported from staff.csv"),
    ]


def test_a_number_created_while_the_file_was_checked_leaves_nothing_half_done(pbx):
    """Checked first, written after: the one failure left is another writer taking a
    number in between; the transaction is all rows or none."""
    from core import extension_csv

    pbx("init")
    rows = extension_csv.parse(b"1002,Alice,correct-horse-9\n1003,Bob,correct-horse-9\n"
                               b"1004,Carol,correct-horse-9\n", "ext.csv")
    ready = extension_csv.check(rows, REALM, extension_csv.existing_numbers(), "ext.csv")
    pbx("ext", "add", "1003", "--generate")  # meanwhile, in the panel or another pbxctl
    with pytest.raises(extension_csv.CsvImportError) as error:
        extension_csv.write(ready, "cli:test", "local", "ext.csv")
    assert str(error.value) == ("ext.csv: row 2: extension 1003 was created while the file "
                                "was being checked; nothing was imported")
    assert numbers() == ["1003"]
    assert [e.target for e in AuditEntry.select()] == ["1003"]


def test_a_large_import_is_complete(pbx, csv_file):
    lines = "".join(f"{100000 + i},User {i},Pw-{i:06d}-secret\n" for i in range(20_000))
    status, out, _ = pbx("ext", "import", csv_file("number,name,password\n" + lines))
    assert (status, out) == (0, "Imported 20000 extensions\n")
    assert Extension.select().count() == 20_000
    assert AuditEntry.select().count() == 20_000
    last = Extension.by_number("119999")
    assert last.name == "User 19999"
    assert last.ha1_sha256 == ha1("119999", REALM, "Pw-019999-secret", "SHA-256")
