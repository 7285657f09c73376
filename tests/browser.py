"""The report as a reader sees it: every page of a report folder in Debian's chromium at a
laptop's width, with a screenshot of each, its links, its images (loaded? shown at their
size?) and whether anything is wider than the page.

`read_report(index, screenshots)` follows the links from `index` to every local page and
returns one `PageView` per page. A table "fits" when it is no wider than the block that
holds it; a table wider than that must sit in a horizontally scrollable container
(`overflow-x: auto` or `scroll`) that itself fits the page.
"""

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

CHROMIUM = Path("/usr/bin/chromium")
WIDTH = 1280  # px, the viewport of the issue ("cut off at 1280 px wide")
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Measured in the page: its width against the viewport's, every table against the room it
# has (its nearest horizontally scrollable ancestor, or else its parent), every image.
LAYOUT = """() => {
  const root = document.documentElement;
  const scroller = el => {
    for (let a = el.parentElement; a && a !== root; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o === 'auto' || o === 'scroll') return a;
    }
    return null;
  };
  const tables = Array.from(document.querySelectorAll('table')).map((t, k) => {
    const box = scroller(t);
    const holder = t.parentElement;
    const style = getComputedStyle(holder);
    const room = holder.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const head = t.querySelector('tr');
    return {
      index: k,
      head: head ? head.innerText.replace(/\\s+/g, ' ').slice(0, 60) : '',
      width: Math.ceil(t.getBoundingClientRect().width),
      room: Math.floor(room),
      scrolls: box !== null,
      boxRight: box ? Math.ceil(box.getBoundingClientRect().right) : null,
    };
  });
  const images = Array.from(document.images).map(i => ({
    src: i.getAttribute('src'),
    loaded: i.complete && i.naturalWidth > 0,
    natural: i.naturalWidth,
    shown: i.clientWidth,
  }));
  return {
    viewport: root.clientWidth,
    scrollWidth: root.scrollWidth,
    tables: tables,
    images: images,
    links: Array.from(document.links).map(a => a.href),
  };
}"""


@dataclass
class PageView:
    """One page at WIDTH px: what it measured, its screenshot and what is wrong with it."""

    path: Path
    screenshot: Path
    viewport: int
    scroll_width: int
    tables: list[dict]
    images: list[dict]
    links: list[str]
    pages: list[Path] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    def overflows(self) -> list[str]:
        """The page is wider than the window, or a table is wider than its room outside any
        scroll container, or a scroll container reaches past the window."""
        out = []
        if self.scroll_width > self.viewport:
            out.append(f"page is {self.scroll_width} px wide in a {self.viewport} px window")
        for t in self.tables:
            if t["scrolls"]:
                if t["boxRight"] > self.viewport:
                    out.append(f"scroll box of table {t['index']} ends at {t['boxRight']} px")
            elif t["width"] > t["room"]:
                out.append(
                    f"table {t['index']} ({t['head']}…) is {t['width']} px wide in "
                    f"{t['room']} px, not in a scroll container"
                )
        return out

    def missing_images(self) -> list[str]:
        return [f"image {i['src']} did not load" for i in self.images if not i["loaded"]]

    def shrunk_images(self, dpi: float) -> list[str]:
        """Figures (PNGs of `dpi` pixels per inch) shown smaller than their size at 96 CSS
        px per inch: the page shrinks them, and with them the text in them."""
        out = []
        for i in self.images:
            size = i["natural"] * 96 / dpi
            if i["loaded"] and i["shown"] < 0.98 * size:
                out.append(f"image {i['src']} shown {i['shown']} px wide, its size is {size:.0f}")
        return out


def read_report(index: Path, screenshots: Path, width: int = WIDTH) -> list[PageView]:
    """Every page reachable from `index` by local links, at `width` px, screenshotted whole
    into `screenshots` (one PNG per page)."""
    from playwright.sync_api import sync_playwright

    screenshots.mkdir(parents=True, exist_ok=True)
    todo, views = [index], {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        while todo:
            current = todo.pop()
            if current in views:
                continue
            page.goto(current.as_uri())
            page.wait_for_load_state("load")
            shot = screenshots / f"{current.stem}.png"
            page.screenshot(path=str(shot), full_page=True)
            m = page.evaluate(LAYOUT)
            view = PageView(
                current, shot, m["viewport"], m["scrollWidth"], m["tables"], m["images"], m["links"]
            )
            for href in view.links:
                url = urlparse(href)
                if url.scheme != "file":
                    view.broken.append(f"non-local link {href}")
                    continue
                target = Path(unquote(url.path))
                if not target.exists():
                    view.broken.append(f"broken link {href}")
                elif target.suffix == ".html":
                    view.pages.append(target)
                    todo.append(target)
            views[current] = view
        browser.close()
    return list(views.values())


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG file from its header."""
    head = path.read_bytes()[16:24]
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
