"""The HTML slide decks in slides/: each one listed on the index, every link and image inside the folder resolves, and
nothing is requested from the network (no CDN, no remote font, image or script), so that a deck works offline."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from helpers import ROOT

SLIDES = ROOT / "slides"
DECKS = sorted(p for p in SLIDES.glob("*.html") if p.name != "index.html")
PAGES = [SLIDES / "index.html", *DECKS]
REMOTE = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)  # http://, https://, //cdn..., ftp:// ...
REMOTE_IN_TEXT = re.compile(r"""(?:url\(\s*['"]?|@import\s+['"]|fetch\(\s*['"]|\.open\(\s*['"][A-Z]+['"]\s*,\s*['"])(?:https?:)?//""", re.I)


class DeckParser(HTMLParser):
    """The element ids of one HTML file and the (tag, attribute, value) of every link, source and inline style."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self._in_code = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for key in ("href", "src", "data", "poster", "action"):
            if attrs.get(key):
                self.links.append((tag, key, attrs[key]))
        if attrs.get("style"):
            self.text.append(attrs["style"])
        self._in_code = tag in {"style", "script"}

    def handle_endtag(self, tag):
        if tag in {"style", "script"}:
            self._in_code = False

    def handle_data(self, data):
        if self._in_code:
            self.text.append(data)


def parse(path: Path) -> DeckParser:
    """Parse one HTML file of the slides folder."""
    parser = DeckParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_there_are_decks_and_the_index_lists_every_one():
    assert DECKS, "slides/ holds no deck"
    listed = {href for tag, key, href in parse(SLIDES / "index.html").links if tag == "a"}
    missing = [deck.name for deck in DECKS if deck.name not in listed]
    assert not missing, f"slides/index.html does not link {missing}"


def broken_links(page: Path) -> list[str]:
    """Links and sources of an HTML file that name no file of the folder, or an id its target lacks."""
    broken = []
    for tag, key, value in parse(page).links:
        if REMOTE.match(value) or value.startswith(("mailto:", "data:", "javascript:")):
            continue  # remote ones are remote_requests'; mailto: and data: need no file
        url = urlparse(value)
        target = page if not url.path else (page.parent / unquote(url.path)).resolve()
        if not target.is_file():
            broken.append(f"<{tag} {key}={value!r}>: no file {target.name}")
        elif url.fragment and target.suffix == ".html" and url.fragment not in parse(target).ids:
            broken.append(f"<{tag} {key}={value!r}>: {target.name} has no id {url.fragment!r}")
    return broken


def remote_requests(page: Path) -> list[str]:
    """What an HTML, CSS or JavaScript file would fetch from the network (links to read, <a href>, excepted)."""
    text = page.read_text(encoding="utf-8")
    if page.suffix == ".html":
        parsed = parse(page)
        remote = [f"<{tag} {key}={value!r}>" for tag, key, value in parsed.links if REMOTE.match(value) and tag != "a"]
        text = "\n".join(parsed.text)
    else:
        remote = []
    return remote + [match.group(0) for match in REMOTE_IN_TEXT.finditer(text)]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_and_image_of_a_deck_resolves_inside_the_slides_folder(page):
    broken = broken_links(page)
    assert not broken, f"{page.name}: " + "; ".join(broken)


@pytest.mark.parametrize("page", [*PAGES, *sorted(SLIDES.glob("*.css")), *sorted(SLIDES.glob("*.js"))],
                         ids=lambda p: p.name)
def test_a_deck_requests_nothing_from_the_network(page):
    remote = remote_requests(page)
    assert not remote, f"{page.name} requests {remote}: a deck must work offline (copy the file into slides/ or draw it as SVG)"


def test_the_checks_catch_a_remote_script_and_font_a_missing_image_and_a_broken_anchor(tmp_path):
    deck = tmp_path / "deck.html"
    deck.write_text('<html><head><script src="https://cdn.example.org/x.js"></script><style>@import "//fonts.example.org/f.css";'
                    '</style></head><body><section id="one"><img src="figure.svg"><a href="#two">next</a>'
                    '<a href="https://example.org/paper">a paper to read</a><a href="#one">back</a></section></body></html>')
    assert remote_requests(deck) == ["<script src='https://cdn.example.org/x.js'>", '@import "//']
    assert broken_links(deck) == ["<img src='figure.svg'>: no file figure.svg", "<a href='#two'>: deck.html has no id 'two'"]


# ---------------------------------------------------------------------------------------------------------------------
# One deck per session, each with speaker notes and figures; every session page links its deck and lecture scripts
# ---------------------------------------------------------------------------------------------------------------------

SESSIONS = sorted((ROOT / "sessions").glob("[0-9][0-9]-*.md"))
LECTURES = sorted((ROOT / "code" / "lectures").glob("s[0-9][0-9]_*.py"))
FIGURES = SLIDES / "figures"
SECTION = re.compile(r"<section\b([^>]*)>(.*?)</section>", re.S)
NOTES = re.compile(r'<aside class="notes">(.*?)</aside>', re.S)


def slides_of(deck: Path) -> list[tuple[str, str]]:
    """The (attributes, inner HTML) of every <section> of a deck."""
    return SECTION.findall(deck.read_text(encoding="utf-8"))


@pytest.mark.parametrize("session", SESSIONS, ids=lambda p: p.stem)
def test_every_session_has_a_deck_that_its_page_links(session):
    deck = SLIDES / f"{session.stem}.html"
    assert deck.is_file(), f"no deck slides/{deck.name} for {session.name}"
    assert f'href="../slides/{deck.name}"' in session.read_text(encoding="utf-8"), f"{session.name} does not link ../slides/{deck.name}"


@pytest.mark.parametrize("script", LECTURES, ids=lambda p: p.name)
def test_every_lecture_script_is_named_on_its_session_page_and_run_by_a_test(script):
    number = script.name[1:3]
    pages = [p for p in SESSIONS if p.name.startswith(number)]
    assert pages, f"{script.name}: no session {number}"
    assert f"code/lectures/{script.name}" in pages[0].read_text(encoding="utf-8"), f"{pages[0].name} does not name {script.name}"
    tests = [t.name for t in (ROOT / "tests").glob("test_*.py") if script.name in t.read_text(encoding="utf-8") and t.name != "test_slides.py"]
    assert tests, f"no test runs code/lectures/{script.name}"


@pytest.mark.parametrize("deck", DECKS, ids=lambda p: p.name)
def test_every_slide_but_the_title_has_speaker_notes(deck):
    slides = slides_of(deck)
    assert len(slides) >= 8, f"{deck.name} has only {len(slides)} slides"
    missing = [k + 1 for k, (attrs, body) in enumerate(slides)
               if "title" not in attrs and not any(re.sub(r"<[^>]+>|\s", "", note) for note in NOTES.findall(body))]
    assert not missing, f"{deck.name}: slides {missing} have no speaker notes (<aside class=\"notes\">)"


@pytest.mark.parametrize("deck", DECKS, ids=lambda p: p.name)
def test_every_deck_shows_a_figure(deck):
    text = deck.read_text(encoding="utf-8")
    assert "<svg" in text or re.search(r'<img [^>]*src="figures/', text), f"{deck.name} has no figure"


def test_every_figure_is_used_by_a_deck_and_every_computed_figure_exists():
    from rl4lm_book.slide_figures import FIGURES as COMPUTED

    decks = "\n".join(deck.read_text(encoding="utf-8") for deck in DECKS)
    unused = [svg.name for svg in sorted(FIGURES.glob("*")) if f"figures/{svg.name}" not in decks]
    assert not unused, f"slides/figures/ holds files no deck shows: {unused}"
    missing = [name for name in COMPUTED if not (FIGURES / f"{name}.svg").is_file()]
    assert not missing, f"run `python -m rl4lm_book.slide_figures --only {' '.join(missing)}` (tiny profile) and commit the SVG"


@pytest.mark.parametrize("svg", sorted(FIGURES.glob("*.svg")), ids=lambda p: p.name)
def test_a_figure_is_well_formed_svg_that_fetches_nothing(svg):
    import xml.dom.minidom

    root = xml.dom.minidom.parse(str(svg)).documentElement
    assert root.tagName == "svg" and (root.getAttribute("viewBox") or root.getAttribute("width")), f"{svg.name} is not an SVG image"
    text = svg.read_text(encoding="utf-8")
    fetched = re.findall(r"""(?:href\s*=\s*["']|url\(\s*['"]?|@import\s+['"]?)(?:https?:)?//[^"')\s]+""", text)
    assert not fetched and "<script" not in text, f"{svg.name} fetches {fetched} or runs a script: a figure must be self-contained"


def test_the_analytic_figures_are_what_the_course_code_draws_now(tmp_path):
    """The figures that need no model regenerate byte for byte: the committed SVG is the course code's current output."""
    from rl4lm_book.slide_figures import ANALYTIC, write_figure

    stale = [name for name in ANALYTIC if write_figure(name, tmp_path).read_bytes() != (FIGURES / f"{name}.svg").read_bytes()]
    assert not stale, f"slides/figures/{stale} differ from what rl4lm_book.slide_figures draws: regenerate them"


def test_the_notes_and_figure_checks_reject_a_deck_without_them(tmp_path, monkeypatch):
    deck = tmp_path / "99-planted.html"
    deck.write_text('<section class="title"><h1>t</h1></section>' + "<section><h2>a</h2><p>b</p></section>" * 7
                    + '<section><h2>c</h2><aside class="notes"> </aside></section>')
    with pytest.raises(AssertionError, match=r"slides \[2, 3, 4, 5, 6, 7, 8, 9\] have no speaker notes"):
        test_every_slide_but_the_title_has_speaker_notes(deck)
    with pytest.raises(AssertionError, match="has no figure"):
        test_every_deck_shows_a_figure(deck)
    bad = tmp_path / "bad.svg"
    bad.write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><image href="https://example.org/x.png"/></svg>')
    with pytest.raises(AssertionError, match="fetches"):
        test_a_figure_is_well_formed_svg_that_fetches_nothing(bad)
