"""HTML: the page's main content, with its structure.

Two kept libraries share the work. lxml parses the page (tolerant of broken markup; it
stops descending past its nesting limit), and our walk over its tree gives the structure:
h1-h6 as headings, paragraphs and list items as text, `<pre>` and data tables as blocks to
keep whole. trafilatura decides what is main content and what is navigation, sidebars,
footers and cookie banners: each block element is marked with a unique word before
trafilatura reads the page, and a block is kept when trafilatura kept its mark. A heading
is kept when text under it is (trafilatura's own output drops many headings). A page where
trafilatura finds nothing keeps all its text. docs/libraries.md has the figures this
choice was made on.
"""

from __future__ import annotations

import re
import secrets
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import lxml.html
import trafilatura
from lxml import etree
from lxml.html import HtmlElement
from trafilatura.settings import use_config

from ingestion.extract.document import DocFormat, ExtractedDoc, ExtractLimits
from ingestion.extract.structure import Block, Heading, make_doc, sections_from_blocks
from ingestion.extract.text import clean, decode_text

#: Elements whose content is not text a reader sees.
_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas",
     "head", "title", "button", "select"}
)  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
#: Elements that start a new block of text.
_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "center", "dd",
        "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer",
        "form", "header", "hr", "li", "main", "nav", "ol", "p", "section", "summary", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
#: Inside a data table there is no block structure; a table holding these lays a page out.
_LAYOUT = ".//table|.//h1|.//h2|.//h3|.//h4|.//h5|.//h6|.//pre|.//p|.//div|.//ul|.//ol"
#: Permalink anchors next to headings (Sphinx, MkDocs): not text.
_PERMALINKS = frozenset({"¶", "§", "#"})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_WHITESPACE = re.compile(r"\s+")

_TRAFILATURA = use_config()
# Judge small pages too (by default trafilatura gives up below 250 characters of text).
_TRAFILATURA.set("DEFAULT", "MIN_EXTRACTED_SIZE", "1")


@dataclass(frozen=True)
class _Marked:
    """A block with the marks of the elements its text came from."""

    item: Heading | Block
    marks: frozenset[str]


class _Walk:
    """Our blocks of a parsed page, in document order, each with its marks."""

    def __init__(self, mark: re.Pattern[str]) -> None:
        self.mark = mark
        self.blocks: list[_Marked] = []
        self._pieces: list[str] = []

    def _unmarked(self, text: str) -> tuple[str, frozenset[str]]:
        return self.mark.sub("", text), frozenset(self.mark.findall(text))

    def text(self, text: str) -> None:
        """Running text: its white space is one space (a line break is `<br>`'s alone)."""
        self._pieces.append(_WHITESPACE.sub(" ", text))

    def flush(self) -> None:
        text, marks = self._unmarked("".join(self._pieces))
        self._pieces.clear()
        block = "\n".join(line.strip() for line in text.split("\n")).strip("\n")
        if block.strip():
            self.blocks.append(_Marked(Block(block), marks))

    def whole(self, element: HtmlElement) -> None:
        """A `<pre>` or a data table, as one block to keep whole."""
        self.flush()
        raw, marks = self._unmarked(element.text_content())
        if element.tag == "pre":
            text = "\n".join(line.rstrip() for line in raw.strip("\n").split("\n"))
        else:
            rows = []
            for row in element.iter("tr"):
                cells = [
                    " ".join(self.mark.sub("", cell.text_content()).split())
                    for cell in row
                    if cell.tag in ("td", "th")
                ]
                if line := " | ".join(cells).strip(" |"):
                    rows.append(line)
            text = "\n".join(rows)
        if text.strip():
            self.blocks.append(_Marked(Block(text, whole=True), marks))

    def heading(self, element: HtmlElement) -> None:
        self.flush()
        raw, marks = self._unmarked(element.text_content())
        if text := " ".join(raw.split()):
            self.blocks.append(_Marked(Heading(_HEADINGS[element.tag], text), marks))

    def run(self, root: HtmlElement) -> list[_Marked]:
        """Walk the tree without recursion: no nesting depth can exhaust the stack."""
        walker = etree.iterwalk(root, events=("start", "end"))
        for event, element in walker:
            tag = element.tag if isinstance(element.tag, str) else ""  # "" for comments
            if event == "end":
                if tag in _BLOCKS:
                    self.flush()
                if element.tail and element is not root:
                    self.text(element.tail)
                continue
            if tag in _HEADINGS:
                self.heading(cast(HtmlElement, element))
            elif tag == "pre" or (tag == "table" and not element.xpath(_LAYOUT)):
                self.whole(cast(HtmlElement, element))
            elif tag and tag not in _SKIP:
                if tag in _BLOCKS:
                    self.flush()
                if tag == "br":
                    self._pieces.append("\n")
                if element.text:
                    self.text(element.text)
                continue
            walker.skip_subtree()  # read already, or not text at all
        self.flush()
        return self.blocks


def _kept(blocks: list[_Marked], main: str | None, mark: re.Pattern[str]) -> Iterator[_Marked]:
    """The blocks trafilatura kept (all when it kept nothing), and the headings of text
    kept under them."""
    if not main:
        yield from blocks
        return
    kept_marks = set(mark.findall(main))
    kept = [b for b in blocks if isinstance(b.item, Heading) or b.marks & kept_marks]
    for index, block in enumerate(kept):
        heading = block.item
        if (
            isinstance(heading, Heading)
            and not block.marks & kept_marks
            and not _text_under(heading, (b.item for b in kept[index + 1 :]))
        ):
            continue
        yield block


def _text_under(heading: Heading, following: Iterator[Heading | Block]) -> bool:
    """Whether text follows `heading` before a heading of its level or higher."""
    for item in following:
        if isinstance(item, Block):
            return True
        if item.level <= heading.level:
            return False
    return False


def _parse(text: str) -> HtmlElement:
    document = lxml.html.document_fromstring(_XML_DECLARATION.sub("", text, count=1))
    for anchor in list(document.iter("a")):
        if isinstance(anchor, HtmlElement) and anchor.text_content().strip() in _PERMALINKS:
            anchor.drop_tree()
    return document


def extract_html(data: bytes, limits: ExtractLimits) -> ExtractedDoc:
    declared = _META_CHARSET.search(data[:4096])
    charset = declared.group(1).decode("ascii", errors="replace") if declared else None
    document = _parse(clean(decode_text(data, charset)))
    title = document.findtext(".//title")
    # A word no page holds, numbered per block element.
    nonce = secrets.token_hex(4)
    mark = re.compile(rf"\bep{nonce}n\d+x\b ?")
    for number, element in enumerate(
        e for e in document.iter() if isinstance(e.tag, str) and e.tag not in _SKIP
    ):
        if element.tag in _BLOCKS or element.tag in _HEADINGS or element.tag == "pre":
            element.text = f"ep{nonce}n{number}x " + (element.text or "")
    with warnings.catch_warnings():  # its dependencies warn about what we do not use
        warnings.simplefilter("ignore")
        main = trafilatura.extract(
            lxml.html.tostring(document, encoding="unicode"),
            output_format="txt",
            include_tables=True,
            include_comments=False,
            favor_recall=True,
            config=_TRAFILATURA,
        )
    body = document.find("body")
    blocks = _Walk(mark).run(body if body is not None else document)
    parts = sections_from_blocks(b.item for b in _kept(blocks, main, mark))
    return make_doc(DocFormat.HTML, parts, limits, title=title)
