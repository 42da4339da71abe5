"""Built-site checks: every page exists, executed without errors, and links resolve."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from helpers import ROOT, toc_documents

PAGES = toc_documents()
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'class="output traceback', "ipythontb")


class LinkParser(HTMLParser):
    """Collect hrefs/srcs and element ids of one HTML page."""

    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key) and not (tag == "link" and attrs.get("rel") == "canonical"):
                self.links.append(attrs[key])


def parse(path: Path) -> LinkParser:
    """Parse one built page."""
    parser = LinkParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.parametrize("page", PAGES)
def test_toc_entry_has_page(built_site, page):
    """Every _toc.yml entry is built to an HTML page."""
    assert (built_site / f"{page}.html").exists(), f"{page} is in _toc.yml but {page}.html was not built"


@pytest.mark.parametrize("page", PAGES)
def test_page_shows_no_traceback(built_site, page):
    """No built page publishes a traceback or an error printed to stderr."""
    html = (built_site / f"{page}.html").read_text(encoding="utf-8")
    for marker in TRACEBACK_MARKERS:
        assert marker not in html, f"{page}.html shows a traceback ({marker!r})"
    for block in re.findall(r'<div class="output stderr[^"]*">(.*?)</div>', html, flags=re.S):
        assert "Error" not in block, f"{page}.html prints an error to stderr: {block[:300]}"


def test_every_internal_link_resolves(built_site):
    """Relative links and their #anchors point at files and ids that exist in the built site."""
    broken = []
    cache: dict[Path, LinkParser] = {}
    for page in sorted(built_site.rglob("*.html")):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        for link in parse(page).links:
            url = urlparse(link)
            if url.scheme or link.startswith(("//", "mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(built_site)} -> {link}")
            elif url.fragment and target.suffix == ".html":
                ids = cache.setdefault(target, parse(target)).ids
                if url.fragment not in ids:
                    broken.append(f"{page.relative_to(built_site)} -> {link} (no id {url.fragment!r})")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:40])


def test_site_loads_nothing_from_the_internet(built_site):
    """Scripts and styles are served by the site itself (math renders offline)."""
    remote = []
    for page in built_site.rglob("*.html"):
        for link in re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', page.read_text(encoding="utf-8")):
            remote.append(f"{page.relative_to(built_site)}: {link}")
    assert not remote, "pages load assets from the internet:\n" + "\n".join(sorted(set(remote))[:20])
    assert (built_site / "_static" / "mathjax" / "tex-svg-full.js").exists()


def test_homework_page_shows_student_code_with_solution_outputs(built_site):
    """The published homework hides solution code but shows the outputs (plots) of the solution run."""
    for notebook in sorted((ROOT / "homework").glob("*.ipynb")):
        html = (built_site / "homework" / f"{notebook.stem}.html").read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in html and "not implemented yet" in html, notebook.name
        assert "<img" in html, f"{notebook.name}: no figure from the solution run on the page"


def test_colab_launch_button_only_on_notebooks(built_site):
    """Homework notebooks get a Colab button pointing at the committed .ipynb; MyST text pages (Colab cannot open them) get none."""
    from rl4lm_book.book import repository_url

    colab = "colab.research.google.com/github/" + repository_url().split("github.com/")[1]
    for notebook in sorted((ROOT / "homework").glob("*.ipynb")):
        html = (built_site / "homework" / f"{notebook.stem}.html").read_text(encoding="utf-8")
        assert f"{colab}/blob/main/homework/{notebook.name}" in html, f"no Colab button on {notebook.stem}.html"
    for page in PAGES:
        if (ROOT / f"{page}.md").exists():
            assert "colab.research.google.com" not in (built_site / f"{page}.html").read_text(encoding="utf-8"), page


def test_every_bibliography_entry_is_cited():
    """references.bib holds the works the pages cite, no more (the bibliography page lists what is cited)."""
    keys = re.findall(r"@\w+\{([^,\s]+),", (ROOT / "references.bib").read_text())
    pages = "".join(p.read_text() for p in [*ROOT.glob("*.md"), *(ROOT / "sessions").glob("*.md"), *(ROOT / "homework" / "solutions").glob("*.md")])
    assert len(keys) == len(set(keys)), "a bibtex key is defined twice"
    uncited = [key for key in keys if key not in pages]
    assert not uncited, f"uncited entries in references.bib: {uncited}"


GLUE_SPAN = re.compile(r'<span data-glue="([^":]+):([^":]+)(?::([^"]*))?">([^<]*)</span>')


def glued_text(glue_dir: Path, page: str, name: str, spec: str) -> str | None:
    """What a page glued as ``name``, formatted with ``spec`` as a slide shows it; None if the page glued no such name."""
    import ast
    import json

    files = sorted(glue_dir.rglob(f"{page}.glue.json"))
    entry = json.loads(files[0].read_text(encoding="utf-8")).get(name) if files else None
    if entry is None:
        return None
    text = re.sub(r"^np\.\w+\((.*)\)$", r"\1", entry["data"]["text/plain"])  # np.float64(0.5) -> 0.5
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    return format(value, spec or "")


def slide_glue_mismatches(deck_text: str, glue_dir: Path) -> list[str]:
    """The data-glue spans of a deck whose text is not what the executed page glued (a typographic minus counts as '-')."""
    wrong = []
    for page, name, spec, shown in GLUE_SPAN.findall(deck_text):
        expected = glued_text(glue_dir, page, name, spec)
        if expected is None:
            wrong.append(f"{page}:{name} is not glued by sessions/{page}.md")
        elif shown.replace("\u2212", "-").strip() != expected:
            wrong.append(f"{page}:{name} shows {shown!r}, the page computes {expected!r}")
    return wrong


@pytest.mark.parametrize("deck", sorted((ROOT / "slides").glob("[0-9][0-9]-*.html")), ids=lambda p: p.name)
def test_every_number_a_slide_takes_from_a_page_is_what_the_page_computes(built_site, deck):
    """Slides quote computed numbers in <span data-glue="page:name:spec">; each must equal the executed page's glue value."""
    text = deck.read_text(encoding="utf-8")
    assert text.count("data-glue=") == len(GLUE_SPAN.findall(text)), f"{deck.name}: a data-glue span is malformed"
    wrong = slide_glue_mismatches(text, built_site.parent / "jupyter_execute")
    assert not wrong, f"{deck.name}: " + "; ".join(wrong)


def test_the_slide_glue_check_rejects_a_stale_and_an_unknown_number(tmp_path):
    (tmp_path / "sessions").mkdir()
    glue = '{"acc": {"data": {"text/plain": "np.float64(0.8125)"}}, "n": {"data": {"text/plain": "450"}}}'
    (tmp_path / "sessions" / "99-page.glue.json").write_text(glue)
    deck = ('<span data-glue="99-page:acc:.2f">0.81</span> <span data-glue="99-page:acc:.1%">81.2%</span> <span data-glue="99-page:n">450</span>'
            '<span data-glue="99-page:acc:.2f">0.79</span><span data-glue="99-page:gone:.2f">0.5</span>')
    assert slide_glue_mismatches(deck, tmp_path) == ["99-page:acc shows '0.79', the page computes '0.81'",
                                                     "99-page:gone is not glued by sessions/99-page.md"]
