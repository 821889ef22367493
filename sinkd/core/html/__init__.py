"""HTML inspection for the filter core: nesting depth, and images, tracking pixels, multimedia,
active script and hidden text found and stripped.

The public surface is this package: ``HtmlBody`` (one body, parsed once per message),
``inspect_html``/``strip_html`` for a lone text, and the report types. Inside, ``css`` reads
styles, ``detectors`` holds one detector per HTML class, ``scan`` parses and walks, ``edits``
plans and applies the strip, ``describe`` writes hits for people, ``render`` makes the text
body rules read, ``depth`` looks at a text before any parse. It reads HTML only: it judges
nothing (the ``mime`` filter turns hits into findings), must not import adapters, and keeps
importing this package cheap (the HTML parser loads only when a body is parsed).
"""

from sinkd.core.html.body import HtmlBody, inspect_html, strip_html
from sinkd.core.html.report import HTML_CLASSES, HtmlHit, HtmlReport

__all__ = ["HTML_CLASSES", "HtmlBody", "HtmlHit", "HtmlReport", "inspect_html", "strip_html"]
