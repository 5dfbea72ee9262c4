"""The entity settings, read from the environment in one place (``read_settings``).

``VOLFEFE_ASSETS``: extra asset lists (CSV paths, separated by ``os.pathsep``, ":" on Linux) that
extend the default list shipped with the package (``entities/assets.csv``); a row whose symbol is
in an earlier list replaces that row.
``VOLFEFE_NER_MODEL``: a token-classification model (hub id or local folder) that finds
organisation names the list does not; empty (the default): no model, rules only.
``VOLFEFE_DEFAULT_ASSET``: the symbol a post that names no asset is linked to (the market as a
whole); it must be in the asset list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: environment variable: extra asset list CSV paths, ``os.pathsep``-separated.
ASSETS_ENV = "VOLFEFE_ASSETS"
#: environment variable: hub id or local folder of a token-classification (NER) model.
NER_MODEL_ENV = "VOLFEFE_NER_MODEL"
#: environment variable: symbol of the default link.
DEFAULT_ASSET_ENV = "VOLFEFE_DEFAULT_ASSET"

#: the asset list shipped with the package (CSV).
DEFAULT_ASSETS_FILE = Path(__file__).with_name("assets.csv")
#: no NER model unless one is named (an empty string: rules only).
DEFAULT_NER_MODEL = ""
#: symbol of the default link: the S&P 500 ETF stands for the US market as a whole.
DEFAULT_ASSET = "SPY"


@dataclass(frozen=True)
class EntitySettings:
    #: the asset lists, in the order they are merged: the default list first.
    asset_files: tuple[Path, ...] = (DEFAULT_ASSETS_FILE,)
    #: hub id or folder of the NER model; "" for none.
    ner_model: str = DEFAULT_NER_MODEL
    #: symbol of the default link.
    default_asset: str = DEFAULT_ASSET


def read_settings(environ: Mapping[str, str] | None = None) -> EntitySettings:
    """The entity settings from ``environ`` (default: ``os.environ``); unset or blank means the default."""
    environ = os.environ if environ is None else environ
    extra = [
        Path(part).expanduser() for part in environ.get(ASSETS_ENV, "").split(os.pathsep) if part.strip()
    ]
    return EntitySettings(
        asset_files=(DEFAULT_ASSETS_FILE, *extra),
        ner_model=environ.get(NER_MODEL_ENV, "").strip() or DEFAULT_NER_MODEL,
        default_asset=environ.get(DEFAULT_ASSET_ENV, "").strip() or DEFAULT_ASSET,
    )
