"""The sentiment picture as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched.

Every text from the database (post texts, sources, authors, model versions) goes through Jinja2's
autoescaping; only the charts' SVG, which matplotlib draws from numbers, is inserted as markup. The
page states its own Content-Security-Policy (no script, nothing from elsewhere), also when it is
opened as a file. Figures are repeated as ``data-*`` attributes for machines (tests, scrapers).
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

from jobs.audit import LOW_MARGIN
from reports import charts
from reports.picture import RECENT_DAYS, SentimentPicture

#: what the page may load: nothing but its own inline styles and data: images; no script at all.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"
#: characters of a post's text shown in the lists of extremes (whitespace collapsed).
POST_TEXT_CHARS = 600

_environment = Environment(
    loader=PackageLoader("reports", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def number(value: float | None) -> str:
    """A figure for a ``data-*`` attribute: six decimals, or empty when there is none."""
    return "" if value is None else f"{value:.6f}"


def signed(value: float | None) -> str:
    """A signed score for people: ``+0.412``, ``−0.087`` (a real minus sign), or ``–`` when none."""
    if value is None:
        return "–"
    return f"{value:+.3f}".replace("-", "−")


def percent(value: float | None, digits: int = 2, sign: bool = True) -> str:
    """A return for people: ``+1.20%``, ``−0.35%`` (a real minus sign; ``sign=False``: a spread, ``0.35%``),
    or ``–`` when none."""
    if value is None:
        return "–"
    return f"{100 * value:{'+' if sign else ''}.{digits}f}%".replace("-", "−")


def excerpt(text: str) -> str:
    """A post's text with its whitespace collapsed, cut at POST_TEXT_CHARS characters (marked ``…``)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= POST_TEXT_CHARS else flat[:POST_TEXT_CHARS].rstrip() + "…"


def render_page(picture: SentimentPicture, with_filters: bool = False) -> str:
    """The page for ``picture``; ``with_filters`` adds the form that narrows it (the web page's query)."""
    drawn = {}
    if picture.total:
        drawn = {
            "posts": charts.posts_chart(picture.periods),
            "score": charts.score_chart(picture.periods),
            "confidence": charts.distribution_chart(picture.confidence),
            "margin": charts.distribution_chart(picture.margin),
        }
        if picture.reactions.get("event_study", {}).get("by_sentiment"):
            drawn["event_study"] = charts.event_study_chart(picture.reactions["event_study"])
    filters = picture.selection.as_strings()
    source_choices = list(picture.sources)
    if filters["source"] and filters["source"] not in source_choices:
        source_choices.append(filters["source"])
    total = picture.total

    def share(count: int) -> str:
        return f"{100 * count / total:.1f}%" if total else ""

    return _environment.get_template("sentiment.html").render(
        picture=picture,
        charts=drawn,
        with_filters=with_filters,
        filters=filters,
        source_choices=source_choices,
        selection_text=picture.selection.describe(),
        generated=picture.generated_at.strftime("%Y-%m-%d %H:%M"),
        content_security_policy=CONTENT_SECURITY_POLICY,
        low_margin=LOW_MARGIN,
        recent_days=RECENT_DAYS,
        number=number,
        signed=signed,
        percent=percent,
        excerpt=excerpt,
        share=share,
    )
