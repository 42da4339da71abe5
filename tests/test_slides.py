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
