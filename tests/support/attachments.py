"""Attachments built in memory for the tests that inspect, strip or filter them: executables
from their documented headers, zips with zipfile (patched where zipfile cannot write what is
needed), OOXML documents, and OLE files with a tiny [MS-CFB] writer, since olefile can only read.
"""

from __future__ import annotations

import io
import itertools
import struct
import zipfile

# --- fixtures: executables and plain files ---


def pe_bytes() -> bytes:
    """A minimal PE: DOS header whose e_lfanew (0x3C) points at "PE\\0\\0" and a COFF header."""
    image = bytearray(0x200)
    image[0:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, 0x80)
    image[0x80:0x84] = b"PE\0\0"
    struct.pack_into("<HH", image, 0x84, 0x014C, 1)  # i386, one section
    return bytes(image)


ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(56)
SHEBANG = b"#!/usr/bin/env python3\nprint('hi')\n"
# [MS-SHLLINK] 2.1: HeaderSize then LinkCLSID 00021401-0000-0000-C000-000000000046.
LNK = bytes.fromhex("4c000000 01140200 00000000 c0000000 00000046") + bytes(60)


def make_zip(
    files: dict[str, bytes] | list[tuple[str, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    buffer = io.BytesIO()
    items = files.items() if isinstance(files, dict) else files
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in items:
            archive.writestr(name, data)
    return buffer.getvalue()


def set_encrypted_flag(data: bytes) -> bytes:
    """Set general purpose bit 0 (PKWARE APPNOTE 4.4.4) in every local and central header."""
    patched = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = patched.find(signature)
        while start >= 0:
            (flags,) = struct.unpack_from("<H", patched, start + offset)
            struct.pack_into("<H", patched, start + offset, flags | 0x1)
            start = patched.find(signature, start + 4)
    return bytes(patched)


# --- fixtures: OOXML ---

WORD_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
DOCM_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
DOCM_TYPE = "application/vnd.ms-word.document.macroEnabled.12"


def ooxml(
    main_type: str,
    *,
    vba: bool = False,
    vba_type: bool = False,
    main_part: str = "/word/document.xml",
) -> bytes:
    """A minimal OPC package (ECMA-376 Part 2): [Content_Types].xml, _rels/.rels, main part.

    ``vba`` adds a word/vbaProject.bin part, ``vba_type`` declares its content type.
    """
    content_types = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        + (
            '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'
            * vba_type
        )
        + f'<Override PartName="{main_part}" ContentType="{main_type}"/>'
        "</Types>"
    )
    files = {
        "[Content_Types].xml": content_types.encode(),
        "_rels/.rels": b'<?xml version="1.0"?><Relationships/>',
        main_part.lstrip("/"): b'<?xml version="1.0"?><w:document/>',
    }
    if vba:
        files["word/vbaProject.bin"] = b"\xd0\xcf\x11\xe0 not a real VBA project"
    return make_zip(files)


# --- fixtures: OLE compound files ([MS-CFB]) ----------------------------------------------------

ENDOFCHAIN, FREESECT, FATSECT, NOSTREAM = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
MSI_CLSID = bytes.fromhex("84100c00 0000 0000 c000000000000046")  # {000C1084-...-000000000046}

Tree = dict[str, "Tree | bytes"]


def cfb(tree: Tree, root_clsid: bytes = bytes(16)) -> bytes:
    """A version 3 compound file: 512-byte header, one FAT sector, directory sectors, data.

    A dict is a storage, bytes a stream; streams are empty or at least 4096 bytes (the mini
    stream cutoff) so that no mini stream is needed. Siblings form a right-leaning chain.
    """
    entries: list[dict[str, object]] = []
    streams: list[tuple[int, bytes]] = []

    def add(name: str, node: Tree | bytes, kind: int) -> int:
        index = len(entries)
        entry: dict[str, object] = {"name": name, "kind": kind, "right": NOSTREAM}
        entries.append(entry)
        if isinstance(node, dict):
            children = [add(k, v, 2 if isinstance(v, bytes) else 1) for k, v in node.items()]
            for left, right in itertools.pairwise(children):
                entries[left]["right"] = right
            entry["child"] = children[0] if children else NOSTREAM
        else:
            assert not node or len(node) >= 4096
            streams.append((index, node))
        return index

    add("Root Entry", tree, 5)
    dir_sectors = (len(entries) + 3) // 4
    fat = [FATSECT] + [i + 2 if i + 1 < dir_sectors else ENDOFCHAIN for i in range(dir_sectors)]
    data = b""
    starts: dict[int, tuple[int, int]] = {}
    for index, content in streams:
        if not content:
            starts[index] = (ENDOFCHAIN, 0)
            continue
        count = (len(content) + 511) // 512
        first = len(fat)
        fat += [first + i + 1 for i in range(count - 1)] + [ENDOFCHAIN]
        starts[index] = (first, len(content))
        data += content.ljust(count * 512, b"\0")
    assert len(fat) <= 128
    fat += [FREESECT] * (128 - len(fat))

    directory = b""
    for index, entry in enumerate(entries):
        name = str(entry["name"]).encode("utf-16-le") + b"\0\0"
        start, size = starts.get(index, (ENDOFCHAIN, 0))
        directory += struct.pack(
            "<64sHBBIII16sIQQIQ",
            name,
            len(name),
            int(entry["kind"]),  # type: ignore[call-overload]
            1,  # black
            NOSTREAM,
            int(entry["right"]),  # type: ignore[call-overload]
            int(entry.get("child", NOSTREAM)),  # type: ignore[call-overload]
            root_clsid if index == 0 else bytes(16),
            0,
            0,
            0,
            start,
            size,
        )
    unused = struct.pack(
        "<64sHBBIII16sIQQIQ", b"", 0, 0, 0, NOSTREAM, NOSTREAM, NOSTREAM, b"", 0, 0, 0, 0, 0
    )
    directory += unused * (dir_sectors * 4 - len(entries))

    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        bytes.fromhex("d0cf11e0a1b11ae1"),
        bytes(16),
        0x003E,
        0x0003,
        0xFFFE,
        9,
        6,
        bytes(6),
        0,  # directory sectors: always 0 in version 3
        1,  # FAT sectors
        1,  # first directory sector
        0,
        4096,
        ENDOFCHAIN,  # no mini FAT
        0,
        ENDOFCHAIN,  # no DIFAT sectors
        0,
    ) + struct.pack("<109I", 0, *[FREESECT] * 108)
    assert len(header) == 512
    return header + struct.pack("<128I", *fat) + directory + data


def word_document(encrypted: bool = False) -> bytes:
    """A WordDocument stream whose FibBase sets fEncrypted (0x0100 at offset 10) on request."""
    fib = bytearray(4096)
    struct.pack_into("<HH", fib, 0, 0xA5EC, 0x00C1)
    if encrypted:
        struct.pack_into("<H", fib, 10, 0x0100)
    return bytes(fib)


PLAIN_DOC = cfb({"WordDocument": word_document()})
MACRO_DOC = cfb(
    {"WordDocument": word_document(), "Macros": {"VBA": {"_VBA_PROJECT": b"", "dir": b""}}}
)
MACRO_XLS = cfb({"Workbook": b"", "_VBA_PROJECT_CUR": {"VBA": {"dir": b""}}})
MSI = cfb({"\x05SummaryInformation": b""}, root_clsid=MSI_CLSID)
