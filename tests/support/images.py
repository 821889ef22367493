"""Images and messages that carry them inline (``multipart/related`` with ``Content-ID`` parts,
RFC 2387 and RFC 2392), for the renderings' ``cid:`` tests: a real PNG of a chosen size built
with zlib (so a browser decodes it and reports its natural size) and a message whose HTML
references its parts by ``cid:`` in every place a rendering keeps them."""

from __future__ import annotations

import base64
import struct
import zlib


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 90)) -> bytes:
    """A ``width`` x ``height`` PNG of one colour (8-bit RGB, no filter)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _b64(data: bytes) -> str:
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def related_message(
    subject: str, html: str, parts: list[tuple[str, str, bytes]], *, boundary: str = "rel-b0und"
) -> bytes:
    """A ``multipart/related`` message: ``html`` first, then each ``(content_id, type,
    bytes)`` part base64-encoded with ``Content-ID: <content_id>``."""
    lines = [
        "From: Alice <alice@sender.example>",
        "To: Bob <bob@corp.example>",
        f"Subject: {subject}",
        "Date: Mon, 03 Jun 2024 10:00:00 +0000",
        f"Message-ID: <{boundary}@sender.example>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/related; boundary="{boundary}"; type="text/html"',
        "",
        f"--{boundary}",
        "Content-Type: text/html; charset=utf-8",
        "",
        f"<html><body>{html}</body></html>",
    ]
    for content_id, media_type, data in parts:
        lines += [
            f"--{boundary}",
            f"Content-Type: {media_type}",
            "Content-Transfer-Encoding: base64",
            f"Content-ID: <{content_id}>",
            "Content-Disposition: inline",
            "",
            _b64(data),
        ]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()
