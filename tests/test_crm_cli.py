"""`acd crm import|export` and `acd ratings recompute` against a SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONFIG = str(ROOT / "config" / "acd.example.yaml")
DEALS = """\
customer_name,customer_phone,amount,status,owner,opened,closed,purpose,price_tier,temperature
Альфа,+7 495 000-00-01,100000,won,anna,2025-01-10,2025-02-01,purchase,high,hot
Альфа,8 495 000-00-01,,lost,boris,2025-01-10,2025-02-01,purchase,high,hot
Бета,,,won,boris,2025-01-10,2025-02-01,purchase,high,hot
"""


def test_import_recompute_and_export_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'acd.db'}"
    (tmp_path / "deals.csv").write_text(DEALS, encoding="utf-8")
    common = ["--config", CONFIG, "--db", db]
    assert main(["crm", "import", "deals", str(tmp_path / "deals.csv"), *common]) == 0
    out = capsys.readouterr()
    assert "imported 2, new customers 1, rejected 1" in out.out
    assert "deals.csv:4: amount: a won deal needs its amount" in out.err
    assert main(["ratings", "recompute", *common, "--purpose", "purchase"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["manager", "deals", "wins", "win"]
    assert table[1].split()[:3] == ["anna", "1", "1"]
    assert main(["crm", "export", "deals", *common]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_the_command_line_imports_a_windows_1251_file_and_refuses_one_that_is_not_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'acd.db'}"
    common = ["--config", CONFIG, "--db", db]
    (tmp_path / "deals.csv").write_text(DEALS, encoding="cp1251")  # Excel's "CSV" in a Russian locale
    assert main(["crm", "import", "deals", str(tmp_path / "deals.csv"), *common]) == 0
    assert "imported 2, new customers 1, rejected 1" in capsys.readouterr().out
    assert main(["crm", "export", "customers", *common]) == 0
    assert "Альфа" in capsys.readouterr().out
    (tmp_path / "book.xls").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00")  # a spreadsheet's own format
    assert main(["crm", "import", "deals", str(tmp_path / "book.xls"), *common]) == 2
    assert "save it as CSV UTF-8" in capsys.readouterr().err
