# SPDX-License-Identifier: GPL-2.0-or-later
"""The tools' Help button: the README (the user's manual) as a local HTML page shipped with the plugin.

``make package`` renders it into ``resources/help/index.html``; a checkout without that file
renders it on first use into a cache folder, so Help works offline either way.  The renderer
knows the Markdown the README uses (headings, paragraphs, lists, fenced code, tables, inline code,
bold, links, images) and nothing more; it needs no third-party package.  No QGIS import here.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import tempfile
from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parents[1]
PACKAGED = PLUGIN_DIR / "resources" / "help" / "index.html"


def slug(text: str) -> str:
    """GitHub-style heading anchor: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return re.sub(r" ", "-", text)


def _inline(text: str) -> str:
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        s = html.escape(part, quote=False)
        s = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)",  # quotes in the alt text must not end the attribute
                   lambda m: f'<img alt="{m.group(1).replace(chr(34), "&quot;")}" src="{m.group(2)}">', s)
        s = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', s)
        s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
        s = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", s)
        out.append(s)
    return "".join(out)


def markdown_to_html(text: str, title: str = "Deep Learning Tools", image_base: str | None = "") -> str:
    """The README's Markdown as a standalone HTML page (headings get GitHub-style ids).

    ``image_base`` is put before relative image paths; None leaves images out (their alt text stays).
    """
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    para: list[str] = []

    def flush_para() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(p.strip() for p in para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            flush_para()
            i += 1
            code = []
            while i < len(lines) and not lines[i].startswith("```"):
                code.append(lines[i])
                i += 1
            out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        if m:
            flush_para()
            level, heading = len(m.group(1)), m.group(2).strip()
            out.append(f'<h{level} id="{slug(heading)}">{_inline(heading)}</h{level}>')
            i += 1
            continue
        if line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            flush_para()
            head = [c.strip() for c in line.strip().strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + f"</tr>{body}</table>")
            continue
        m = re.match(r"^(\s*)([-*]|\d+\.)\s+(.*)$", line)
        if m:
            flush_para()
            tag = "ol" if m.group(2)[0].isdigit() else "ul"
            items: list[str] = []
            while i < len(lines):
                m = re.match(r"^(\s*)([-*]|\d+\.)\s+(.*)$", lines[i])
                if m:
                    items.append(m.group(3))
                elif lines[i].startswith("  ") and lines[i].strip() and items:
                    items[-1] += " " + lines[i].strip()
                else:
                    break
                i += 1
            out.append(f"<{tag}>" + "".join(f"<li>{_inline(it)}</li>" for it in items) + f"</{tag}>")
            continue
        if not line.strip():
            flush_para()
        elif line.startswith(">"):
            flush_para()
            out.append(f"<blockquote>{_inline(line.lstrip('> '))}</blockquote>")
        else:
            para.append(line)
        i += 1
    flush_para()
    body = "\n".join(out)
    if image_base is None:
        body = re.sub(r'<img alt="([^"]*)" src="[^"]*">', r"<em>[\1]</em>", body)
    elif image_base:
        body = body.replace('src="docs/', f'src="{image_base}docs/')
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 1.5em auto; padding: 0 1em; color: #222; line-height: 1.45; }}
pre {{ background: #f4f4f4; padding: 0.6em; overflow-x: auto; }} code {{ background: #f4f4f4; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #bbb; padding: 0.2em 0.5em; vertical-align: top; }}
img {{ max-width: 100%; border: 1px solid #ccc; }}
</style></head><body>
{body}
</body></html>
"""


#: Relative links of a page: ``docs/x.md`` from the README, ``x.md`` or ``../README.md`` from a docs page.
_HREF = re.compile(r'href="(?!https?:|mailto:|#)([^"#]+)(#[^"]*)?"')


def _page_name(source: Path, root: Path) -> str:
    """The HTML file a Markdown source becomes in the help folder: the README is index.html, docs/x.md is x.html."""
    return "index.html" if source == root / "README.md" else source.stem + ".html"


def help_pages(readme: Path, image_base: str | None = "") -> dict[str, str]:
    """The README and every Markdown page it links to (and those link to), as {file name: HTML} for one folder.

    Links between the pages point at their HTML files, so the Help page never links to a ``.md`` file that is not
    where the page is (the plugin zip has no docs/ folder); a link to anything else relative (a source file, a
    missing page) is an error here, at packaging time, not a dead link for the user.
    """
    root = readme.parent.resolve()
    pages: dict[str, str] = {}
    todo = [root / "README.md"]
    while todo:
        source = todo.pop(0)
        name = _page_name(source, root)
        if name in pages:
            continue
        html_text = markdown_to_html(source.read_text(encoding="utf-8"), image_base=image_base)

        def relink(m: re.Match, source: Path = source) -> str:
            target = (source.parent / m.group(1)).resolve()
            if target.suffix != ".md" or not target.is_file() or not target.is_relative_to(root):
                raise ValueError(f"{source.relative_to(root)} links to '{m.group(1)}', which the help cannot ship: "
                                 "link to a Markdown page of this repository or to a web address")
            todo.append(target)
            return f'href="{_page_name(target, root)}{m.group(2) or ""}"'

        pages[name] = _HREF.sub(relink, html_text)
    return pages


def render_help(target: Path, readme: Path | None = None) -> Path:
    """Write the help page for ``readme`` (the plugin's README.md) to ``target``, and the pages it links to beside it.

    Images (``docs/...``) are linked relative to the page when it sits inside the plugin folder
    (the packaged page), else by absolute file URL (the cached page).
    """
    from ..core.safe_output import write_texts  # here: packaging loads this file alone, outside the plugin

    readme = readme or PLUGIN_DIR / "README.md"
    root, folder = readme.parent.resolve(), target.parent.resolve()
    base = (os.path.relpath(root, folder) + "/") if folder.is_relative_to(root) else root.as_uri() + "/"
    target.parent.mkdir(parents=True, exist_ok=True)
    for name, page in help_pages(readme, image_base=base).items():
        path = target if name == "index.html" else target.with_name(name)
        write_texts({path: page})
    return target


def help_page() -> Path | None:
    """The local help page: the packaged one, else one rendered from the README (None without a README)."""
    if PACKAGED.is_file():
        return PACKAGED
    readme = PLUGIN_DIR / "README.md"
    if not readme.is_file():
        return None
    # one cache per plugin folder: two checkouts (or a checkout and an installed copy) never share a page
    where = hashlib.sha1(str(PLUGIN_DIR.resolve()).encode("utf-8")).hexdigest()[:8]
    cached = Path(tempfile.gettempdir()) / \
        f"dltools-help-{os.getuid() if hasattr(os, 'getuid') else 'user'}-{where}" / "index.html"
    if not cached.is_file() or cached.stat().st_mtime < readme.stat().st_mtime:
        render_help(cached, readme)
    return cached


def help_url(anchor: str = "") -> str:
    """A file:// URL to the help page, at ``anchor`` when the page has that heading."""
    page = help_page()
    if page is None:
        return ""
    url = page.as_uri()
    if anchor and f'id="{anchor}"' in page.read_text(encoding="utf-8"):
        url += f"#{anchor}"
    return url


if __name__ == "__main__":  # make package: python3 algorithms/help_page.py <target>
    import sys

    print(render_help(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGED))
