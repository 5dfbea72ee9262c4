"""Texts an int8 conversion is calibrated on: the user's own contents, or the shipped sample.

Calibration shows the quantizer the activations real inputs produce. It must never use the texts the
benchmark evaluates agreement on (``../shared/data/``): the shipped sample is written for the purpose.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from errors import VolfefeError

#: the shipped sample: about 300 short financial sentences, one a line, written from templates.
SAMPLE_PATH = Path(__file__).with_name("calibration_texts.txt")
#: texts read from the database for calibration (NNCF's default subset size).
CALIBRATION_TEXTS = 300
#: contents read to find that many with visible text (some posts are only links or markup).
CONTENTS_SCANNED = 3000


class CalibrationError(VolfefeError):
    """No texts to calibrate on; the message is one readable line."""


@dataclass(frozen=True)
class CalibrationTexts:
    texts: tuple[str, ...]
    #: where the texts came from, as recorded in the conversion's build.json.
    source: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.texts).encode()).hexdigest()


def sample_texts() -> CalibrationTexts:
    """The shipped sample (``model/calibration_texts.txt``)."""
    lines = SAMPLE_PATH.read_text(encoding="utf-8").splitlines()
    return CalibrationTexts(tuple(line.strip() for line in lines if line.strip()), "shipped sample")


def database_texts(database_url: str, limit: int = CALIBRATION_TEXTS) -> CalibrationTexts:
    """Up to ``limit`` visible texts of the contents in ``database_url``, in id order (the same texts
    for the same database, so the conversion key stays put)."""
    from sqlalchemy import select

    from db.models import Content
    from db.session import session_scope
    from model.visible_text import visible_text

    texts: list[str] = []
    with session_scope(database_url) as session:
        for raw in session.scalars(select(Content.text).order_by(Content.id).limit(CONTENTS_SCANNED)):
            text = visible_text(raw or "")
            if text:
                texts.append(text)
            if len(texts) >= limit:
                break
    if not texts:
        raise CalibrationError(
            "the database has no contents with text to calibrate on: import posts first "
            "(volfefe import FILE), or build without --calibrate-from-db to use the shipped sample"
        )
    return CalibrationTexts(tuple(texts), "database")
