"""The asset list: the shipped default, strict loading (one line naming the file and line), merging,
and the entity settings read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entities import AssetListError, EntityConfigError, EntityExtractor, load_assets, read_settings
from entities.assets import KINDS, CaseRule, load_asset_file
from entities.extract import default_extractor, entities_of_post, extract
from entities.settings import DEFAULT_ASSETS_FILE, EntitySettings

HEADER = "symbol,name,kind,aliases,exclude\n"


def write(tmp_path: Path, text: str, name: str = "extra.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(AssetListError) as caught:
        load_assets([path])
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_default_list_loads_with_the_brief_s_assets() -> None:
    assets = load_assets([DEFAULT_ASSETS_FILE])
    for symbol in ["SPY", "QQQ", "DIA", "IWM", "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B",
                   "JPM", "XOM", "BA", "F", "GM", "TLT", "USO", "FXI", "UUP", "GLD", "BTC-USD"]:  # fmt: skip
        assert symbol in assets, symbol
    assert {asset.kind for asset in assets} <= set(KINDS)
    aliases = {alias.text: asset.symbol for asset in assets for alias in asset.aliases}
    assert aliases["Fed"] == aliases["interest rates"] == "TLT"
    assert aliases["oil"] == "USO" and aliases["China"] == "FXI" and aliases["tariffs"] == "SPY"
    assert aliases["the dollar"] == "UUP" and aliases["gold"] == "GLD" and aliases["bitcoin"] == "BTC-USD"
    assert aliases["Dow"] == "DIA" and aliases["Nasdaq"] == "QQQ" and aliases["S&P"] == "SPY"


def test_alias_case_rules_follow_how_they_are_written(tmp_path: Path) -> None:
    [asset] = load_asset_file(write(tmp_path, HEADER + "TGT,Target,equity,=Target|target corp|TGT,\n"))
    assert [(alias.text, alias.case) for alias in asset.aliases] == [
        ("Target", CaseRule.EXACT),
        ("target corp", CaseRule.ANY),
        ("TGT", CaseRule.AS_WRITTEN_OR_UPPER),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "extra.csv: the file is empty"),
        ("symbol,name\n", "extra.csv: line 1: missing column(s) kind"),
        ("symbol,name,kind,alias\n", "extra.csv: line 1: unknown column(s) 'alias'"),
        ("symbol,name,kind,kind\n", "extra.csv: line 1: repeated column(s) kind"),
        (HEADER + "ACME,Acme,equity,Acme\n", "extra.csv: line 2: 4 fields, the header has 5"),
        (HEADER + ",Acme,equity,Acme,\n", "extra.csv: line 2: no symbol"),
        (
            HEADER + "acme,Acme,equity,Acme,\n",
            "extra.csv: line 2: symbol 'acme' is not a ticker symbol (symbols are upper case)",
        ),
        (HEADER + "AC ME,Acme,equity,Acme,\n", "extra.csv: line 2: symbol 'AC ME' is not a ticker symbol"),
        (HEADER + "ACME,,equity,Acme,\n", "extra.csv: line 2: no name for ACME"),
        (
            HEADER + "ACME,Acme,stonk,Acme,\n",
            "extra.csv: line 2: kind 'stonk' of ACME is not one of equity, etf",
        ),
        (HEADER + "ACME,Acme,equity,Acme||ACM,\n", "extra.csv: line 2: an empty alias in 'Acme||ACM'"),
        (HEADER + "ACME,Acme,equity,Acme|=,\n", "extra.csv: line 2: an empty alias in 'Acme|='"),
        (
            HEADER + "ACME,Acme,equity,Acme|--,\n",
            "extra.csv: line 2: alias '--' of ACME has no letter or digit",
        ),
        (HEADER + "ACME,Acme,equity,Acme|ACME,\n", "extra.csv: line 2: alias 'ACME' of ACME is listed twice"),
        (
            HEADER + "ACME,Acme,equity,Acme,road runner\n",
            "extra.csv: line 2: exclude phrase 'road runner' of ACME contains none of its aliases",
        ),
        (
            HEADER + "ACME,Acme,equity,Acme,\n\n# a comment\nACME,Acme 2,equity,,\n",
            "extra.csv: line 5: symbol ACME is already on line 2",
        ),
        (
            HEADER + "ACME,Acme,equity,Acme,\nBETA,Beta,equity,acme,\n",
            "extra.csv: line 3: alias 'acme' of BETA overlaps 'Acme', an alias of ACME (line 2)",
        ),
        (
            HEADER + 'ACME,"Acme, Inc.",equity,Acme,\nBETA,"Beta\n',
            "extra.csv: line 3: unexpected end of data",
        ),
    ],
)
def test_a_bad_list_is_named_with_its_line_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(str(tmp_path / expected.split(":")[0]))
    assert expected.split(": ", 1)[1] in message


def test_line_numbers_count_quoted_multi_line_fields(tmp_path: Path) -> None:
    text = HEADER + 'ACME,"Acme\nIndustries",equity,Acme,\nBETA,Beta,stonk,,\n'
    assert "line 4: kind 'stonk'" in load_error(write(tmp_path, text))


def test_a_missing_file_and_a_file_not_in_utf8(tmp_path: Path) -> None:
    assert load_error(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: no such asset list"
    path = tmp_path / "latin1.csv"
    data = (HEADER + "ACME,Acme,equity,Acme,\nNESTLE,Nestl\xe9,equity,,\n").encode("latin-1")
    path.write_bytes(data)
    assert load_error(path) == f"{path}: line 3: not UTF-8 (byte 0xe9 at offset {data.index(0xE9)})"


def test_a_utf8_bom_blank_lines_comments_and_column_order(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffkind,symbol,name\n\n# energy names\nequity,NEE,NextEra Energy\n", encoding="utf-8")
    [asset] = load_asset_file(path)
    assert (asset.symbol, asset.name, asset.kind, asset.aliases, asset.exclude) == (
        "NEE", "NextEra Energy", "equity", (), ()
    )  # fmt: skip
    assert asset.origin == f"{path}:4"


def test_an_extra_list_adds_replaces_and_takes_aliases(tmp_path: Path) -> None:
    extra = write(
        tmp_path,
        HEADER
        + "WFC,Wells Fargo,equity,Wells Fargo|WFC,\n"
        + "TLT,iShares 20+ Year Treasury Bond ETF,rate,interest rates|Treasuries,\n"  # replaces the default row
        + "SHY,iShares 1-3 Year Treasury Bond ETF,rate,Fed|Federal Reserve|FOMC,fed up\n",  # takes the Fed
    )
    assets = load_assets([DEFAULT_ASSETS_FILE, extra])
    assert len(assets) == len(load_assets([DEFAULT_ASSETS_FILE])) + 2
    extractor = EntityExtractor(assets)
    assert [
        (m.symbol, m.text) for m in extractor.extract("Wells Fargo and the Fed: interest rates, yields")
    ] == [
        ("WFC", "Wells Fargo"),
        ("SHY", "Fed"),
        ("TLT", "interest rates"),
    ]  # "yields" went with the replaced TLT row
    assert assets.fingerprint() != load_assets([DEFAULT_ASSETS_FILE]).fingerprint()


def test_settings_from_the_environment(tmp_path: Path) -> None:
    assert read_settings({}) == EntitySettings((DEFAULT_ASSETS_FILE,), "", "SPY")
    first, second = write(tmp_path, HEADER, "a.csv"), write(tmp_path, HEADER, "b.csv")
    settings = read_settings(
        {
            "VOLFEFE_ASSETS": f"{first}{os.pathsep}{second}{os.pathsep}",
            "VOLFEFE_NER_MODEL": " models/ner ",
            "VOLFEFE_DEFAULT_ASSET": "QQQ",
        }
    )
    assert settings == EntitySettings((DEFAULT_ASSETS_FILE, first, second), "models/ner", "QQQ")
    assert read_settings({"VOLFEFE_ASSETS": " ", "VOLFEFE_DEFAULT_ASSET": ""}) == EntitySettings()


def test_a_default_asset_missing_from_the_list_is_one_line() -> None:
    with pytest.raises(EntityConfigError) as caught:
        EntityExtractor.from_settings(EntitySettings(default_asset="NOPE"))
    assert (
        str(caught.value) == f"VOLFEFE_DEFAULT_ASSET='NOPE' is not in the asset list ({DEFAULT_ASSETS_FILE})"
    )


def test_module_functions_read_the_environment_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = write(tmp_path, HEADER + "ACME,Acme,equity,Acme,\n")
    monkeypatch.setenv("VOLFEFE_ASSETS", str(extra))
    monkeypatch.setenv("VOLFEFE_DEFAULT_ASSET", "ACME")
    monkeypatch.delenv("VOLFEFE_NER_MODEL", raising=False)
    default_extractor.cache_clear()
    try:
        assert [m.symbol for m in extract("Acme and Apple")] == ["ACME", "AAPL"]
        assert entities_of_post("<p>nothing</p>").symbols == ("ACME",)
        assert default_extractor() is default_extractor()
    finally:
        default_extractor.cache_clear()
