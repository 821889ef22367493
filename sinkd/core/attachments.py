"""What an attachment really is: its true type from magic bytes, its extensions, archive members,
macros and encryption, within fixed limits on depth, member count and bytes decompressed.

Pure: works on bytes in memory only and never touches disk, sockets or logging; it never raises
on the bytes it is given, since bad input becomes a ``problems`` sentence instead.
"""

from __future__ import annotations

import codecs
import io
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import filetype
import olefile

__all__ = ["FileInfo", "Inspection", "Limits", "inspect_file"]


@dataclass(frozen=True, slots=True)
class Limits:
    """How far an inspection may go before it stops and says so in ``problems``."""

    max_depth: int = 3  # archive nesting levels inspected
    max_members: int = 1000  # members listed in total
    max_total_bytes: int = 100 * 1024 * 1024  # uncompressed bytes read in total
    max_ratio: int = 200  # compression ratio beyond which a member is a bomb


# The one before last of two extensions that makes a name look harmless to a person while the
# last one decides what Windows does with it ("invoice.pdf.exe", "photo.jpg.js", "scan.pdf.html").
# fmt: off
_DOCUMENT_LOOKING = frozenset({
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp", "rtf", "txt", "csv",
    "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "heic",
    "mp3", "mp4", "wav", "mov", "avi", "zip", "rar", "7z",
})
# fmt: on
# A last extension that only says "compressed" keeps the inner name honest: gzip writes
# "data.csv.gz", macOS Finder's Compress writes "report.pdf.zip", and "a.tar.gz" is one type.
_COMPRESSION_SUFFIXES = frozenset(
    {"gz", "tgz", "bz2", "xz", "zst", "lz", "lzma", "z", "br", "zip", "7z", "rar"}
)
# An extension is a short run of word characters; "v1.2 final.pdf" has one, not two.
_EXTENSION = re.compile(r"[\w+~$-]{1,16}")


@dataclass(frozen=True, slots=True)
class FileInfo:
    """One MIME part (depth 0) or one archive member (depth 1 and deeper)."""

    name: str | None  # filename as given, or the archive member path
    declared_type: str | None  # the MIME Content-Type (lower-case) for parts; None for members
    true_type: str | None  # MIME-like type from magic bytes; None if unknown
    true_kind: str | None  # executable, script, archive, office, pdf, image, audio, video, text
    extensions: tuple[str, ...]  # lower-case, in order: "invoice.pdf.exe" -> ("pdf", "exe")
    size: int
    encrypted: bool  # password-protected archive or member
    macros: bool  # Office document carrying VBA or of a macro-enabled OOXML type
    depth: int  # 0 = the MIME part itself, 1 = inside an archive, ...
    members: tuple[FileInfo, ...] = ()

    @property
    def extension(self) -> str | None:
        """The last extension, the one that decides how the file is opened."""
        return self.extensions[-1] if self.extensions else None

    @property
    def double_extension(self) -> bool:
        """A deceptive double extension like "invoice.pdf.exe".

        True when there are at least two extensions, the one before last is document-looking
        (``_DOCUMENT_LOOKING``: pdf, office, text, image, media, zip/rar/7z) and the last is none
        of: document-looking itself ("scan.jpg.png" hides nothing), a compression suffix
        ("report.pdf.gz", "photo.jpg.zip", "a.tar.gz") or a split-volume number ("x.zip.001").
        """
        if len(self.extensions) < 2:
            return False
        before, last = self.extensions[-2], self.extensions[-1]
        return (
            before in _DOCUMENT_LOOKING
            and last not in _DOCUMENT_LOOKING
            and last not in _COMPRESSION_SUFFIXES
            and not last.isdigit()
        )


@dataclass(frozen=True, slots=True)
class Inspection:
    """The inspected file, its members, and every limit or corruption met on the way."""

    root: FileInfo
    problems: tuple[str, ...]  # plain sentences, in the order met

    def walk(self) -> Iterator[FileInfo]:
        """The root, then every member, depth-first in archive order."""
        stack = [self.root]
        while stack:
            info = stack.pop()
            yield info
            stack.extend(reversed(info.members))

    def named(self, root: str) -> Iterator[tuple[str, FileInfo]]:
        """What ``walk`` yields, each with the name a reader knows it by: the attachment's own
        name (``root`` when it has none), a member's as ``statement.zip/invoice.exe``, every
        archive on the way named outermost first. Each file has one name, however many rules or
        classes it matches, so that findings can count distinct files."""
        stack = [(self.root.name or root, self.root)]
        while stack:
            shown, info = stack.pop()
            yield shown, info
            stack.extend((f"{shown}/{m.name or '(unnamed)'}", m) for m in reversed(info.members))


def inspect_file(
    name: str | None,
    declared_type: str | None,
    data: bytes,
    limits: Limits = Limits(),  # frozen, so one shared default is safe
) -> Inspection:
    """Inspect one attachment; never raises on ``data``, whatever it holds."""
    inspector = _Inspector(limits)
    declared = (declared_type or "").split(";", 1)[0].strip().lower() or None
    data = data if isinstance(data, bytes) else bytes(data)  # a bytearray or memoryview works too
    root = inspector.analyse(name, declared, data, depth=0, size=len(data), complete=True)
    return Inspection(root=root, problems=tuple(inspector.problems))


# --- true type from magic bytes ---

_HEAD = 8 * 1024  # magic is judged on this much; the same window filetype itself reads
_CHUNK = 64 * 1024  # members are decompressed in chunks of this size, counted against the budget
_MiB = 1024 * 1024
# Ratios only matter for members big enough to hurt: 10 KiB of zeros deflates 300x, harmlessly.
_BOMB_FLOOR = 1 * _MiB
_CONTENT_TYPES_CAP = 1 * _MiB  # [Content_Types].xml of real documents is a few KiB
_GZIP_INPUT_CAP = 1 * _MiB  # compressed bytes fed to zlib to get a gzip member's first _HEAD

_PE = "application/x-dosexec"
_ELF = "application/x-executable"
_MACHO = "application/x-mach-binary"
_JAVA_CLASS = "application/java-vm"
_LNK = "application/x-ms-shortcut"
_MSI = "application/x-msi"
_MSIX = "application/msix"
_JAR = "application/java-archive"
_APK = "application/vnd.android.package-archive"
_ZIP = "application/zip"
_GZIP = "application/gzip"
_ISO = "application/x-iso9660-image"
_OLE = "application/x-ole-storage"
_PDF = "application/pdf"
_RTF = "application/rtf"

# mach-o/loader.h MH_MAGIC, MH_MAGIC_64 and their byte-swapped MH_CIGAM, MH_CIGAM_64.
_MACHO_MAGICS = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe")
# mach-o/fat.h FAT_MAGIC (shared with Java class files) and FAT_MAGIC_64.
_FAT_MAGIC, _FAT_MAGIC_64 = b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"
# [MS-SHLLINK] 2.1: HeaderSize 0x0000004C then LinkCLSID 00021401-0000-0000-C000-000000000046.
_LNK_MAGIC = bytes.fromhex("4c000000 01140200 00000000 c0000000 00000046")
# [MS-CFB] 2.2: the compound file header signature.
_CFB_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")
# PKWARE APPNOTE 4.3.7 local file header, 4.3.16 end of central directory (an empty archive).
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
# RFC 1952 2.3.1: ID1 ID2 and CM=8 (deflate), the only method gzip defines.
_GZIP_MAGIC = b"\x1f\x8b\x08"
# Members read whole, because only their whole bytes can be opened.
_CONTAINER_MAGICS = (*_ZIP_MAGICS, _CFB_MAGIC, _GZIP_MAGIC)

# Interpreters named on a "#!" line; anything else is run by a shell-like program.
_SCRIPT_TYPES = {
    "python": "text/x-script.python",
    "perl": "text/x-perl",
    "ruby": "text/x-ruby",
    "node": "application/javascript",
    "nodejs": "application/javascript",
    "php": "text/x-php",
}

_EXECUTABLE_TYPES = frozenset(
    {_PE, _ELF, _MACHO, _JAVA_CLASS, _LNK, _MSI, _MSIX, _JAR, _APK}
    | {"application/x-msdownload", "application/wasm"}  # filetype's names for PE and wasm
)
_ARCHIVE_TYPES = frozenset(
    {_ZIP, _GZIP, _ISO}
    | {
        "application/x-rar-compressed",
        "application/x-7z-compressed",
        "application/x-tar",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
        "application/x-brotli",
        "application/x-lzip",
        "application/x-lzop",
        "application/x-lz4",
        "application/x-compress",
        "application/vnd.ms-cab-compressed",
        "application/x-rpm",
        "application/x-deb",
        "application/x-unix-archive",
        "application/x-google-chrome-extension",
        "application/epub+zip",
    }
)
_OFFICE_PREFIXES = (
    "application/msword",
    "application/vnd.ms-",
    "application/vnd.openxmlformats-officedocument.",
    "application/vnd.oasis.opendocument.",
)
_OFFICE_TYPES = frozenset({_OLE, _RTF})

# Bytes that never occur in text: C0 controls other than \t \n \f \r ESC, and DEL.
_TEXT_CONTROLS = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_NOT_CONTROLS = bytes(b for b in range(256) if b not in _TEXT_CONTROLS)


def _kind_of(true_type: str | None) -> str | None:
    """The coarse kind a filter reasons about, from a true type."""
    if true_type is None:
        return None
    if true_type in _EXECUTABLE_TYPES:
        return "executable"
    if true_type in _ARCHIVE_TYPES:
        return "archive"
    if true_type in _OFFICE_TYPES or true_type.startswith(_OFFICE_PREFIXES):
        return "office"
    if true_type == _PDF:
        return "pdf"
    if true_type.startswith(("text/x-script", "text/x-shellscript", "text/x-perl")):
        return "script"
    if true_type in ("text/x-ruby", "text/x-php", "application/javascript"):
        return "script"
    major = true_type.split("/", 1)[0]
    if major in ("image", "audio", "video", "text"):
        return major
    if true_type == "application/dicom":  # filetype files medical images under both lists
        return "image"
    return None


def _sniff(data: bytes) -> str | None:
    """The true type of ``data`` from its first ``_HEAD`` bytes (and one ISO 9660 peek)."""
    head = data[:_HEAD]
    # Executables first: a renamed program must never pass as the type its name claims.
    if head[:2] == b"MZ":
        # PE/COFF spec: the DOS header's e_lfanew (uint32 at 0x3C) points at "PE\0\0".
        lfanew = int.from_bytes(head[0x3C:0x40], "little") if len(head) >= 0x40 else -1
        if lfanew >= 0 and head[lfanew : lfanew + 4] == b"PE\0\0":
            return _PE
        # A DOS "MZ" program, or a PE whose header lies past our window: binary, not text.
        if len(head) >= 0x40 and b"\0" in head[:0x40]:
            return _PE
    if head[:4] == b"\x7fELF":  # ELF e_ident[EI_MAG0..EI_MAG3]
        return _ELF
    if head[:4] in _MACHO_MAGICS or head[:4] == _FAT_MAGIC_64:
        return _MACHO
    if head[:4] == _FAT_MAGIC:
        # Java class files share 0xCAFEBABE; file(1) tells them apart the same way: a fat
        # Mach-O's nfat_arch is small, a class file's version there is 45 or more.
        return _MACHO if 0 < int.from_bytes(head[4:8], "big") < 20 else _JAVA_CLASS
    if head[:2] == b"#!":
        return _script_type(head)
    if head[:20] == _LNK_MAGIC:
        return _LNK
    if head[:8] == _CFB_MAGIC:
        return _OLE  # refined by _Inspector.ole (Word, Excel, MSI, ...)
    if head[:4] in _ZIP_MAGICS:
        return _ZIP  # refined by _Inspector.zip (OOXML, ODF, JAR, ...)
    if head[:3] == _GZIP_MAGIC:
        return _GZIP
    # ECMA-119 8.4: the primary volume descriptor's "CD001" at 32 KiB + 1, a fixed peek.
    if data[0x8001:0x8006] == b"CD001":
        return _ISO
    # Acrobat accepts "%PDF-" anywhere in the first 1024 bytes (Adobe's PDF Reference, H.3).
    if b"%PDF-" in head[:1024]:
        return _PDF
    # Word opens anything starting "{\rt" as RTF, which exploit droppers rely on.
    if head[:4] == b"{\\rt":
        return _RTF
    if _looks_like_text(head):
        # Checked before filetype, whose two-byte magics ("BM" for BMP) match plain prose.
        return _text_type(head)
    try:
        guess = filetype.guess(head)
    except Exception:  # filetype's matchers index into the buffer; treat any slip as unknown
        return None
    mime = getattr(guess, "mime", None)
    return mime if isinstance(mime, str) and mime != "application/octet-stream" else None


def _script_type(head: bytes) -> str:
    """The type a "#!" line names: "#!/usr/bin/env python3" -> text/x-script.python."""
    words = head[2:256].split(b"\n", 1)[0].decode("latin-1").split()
    program = words[0].rsplit("/", 1)[-1] if words else ""
    if program == "env":
        program = next((w for w in words[1:] if not w.startswith("-") and "=" not in w), "")
    for prefix, mime in _SCRIPT_TYPES.items():
        if program.startswith(prefix):
            return mime
    return "text/x-shellscript"


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte order mark
        return True
    if not head or len(head.translate(None, _NOT_CONTROLS)) > 0:
        return False
    try:  # Not final: the window may cut a UTF-8 sequence in two.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return all(b < 0x80 or b >= 0xA0 for b in head)  # Latin-1 text has no C1 controls
    return True


def _text_type(head: bytes) -> str:
    start = head[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in start:
        return "image/svg+xml"
    if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start:
        return "text/html"
    return "text/plain"


# --- names ---


def _extensions(name: str | None) -> tuple[str, ...]:
    """All extensions of a name's last path segment, lower-case: "a.tar.gz" -> ("tar", "gz").

    Windows drops trailing dots and spaces and shows "invoice.pdf      .exe" as a PDF, so
    both are stripped; a part with inner spaces ("J. Smith CV") ends the run.
    """
    if not name:
        return ()
    base = re.split(r"[/\\]", name)[-1].rstrip(" .\t")
    found: list[str] = []
    for part in reversed(base.split(".")[1:]):
        ext = part.strip().lower()
        if not _EXTENSION.fullmatch(ext):
            break
        found.append(ext)
    return tuple(reversed(found))


def _label(name: str | None) -> str:
    return repr(name) if name is not None else "unnamed attachment"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _amount(n: int) -> str:
    for unit, size in (("GiB", 1024 * _MiB), ("MiB", _MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


# --- Office ---

# ECMA-376 Part 1 / [MS-OFFMACRO]: the content type of each package's main part -> the file's
# MIME type and whether the type itself is macro-enabled. xlsb's type says "macroEnabled" for
# every binary workbook, with or without VBA, so only its vbaProject.bin counts.
_W = "application/vnd.openxmlformats-officedocument.wordprocessingml."
_S = "application/vnd.openxmlformats-officedocument.spreadsheetml."
_P = "application/vnd.openxmlformats-officedocument.presentationml."
_OOXML_MAIN: dict[str, tuple[str, bool]] = {
    k.lower(): v
    for k, v in {
        _W + "document.main+xml": (_W + "document", False),
        _W + "template.main+xml": (_W + "template", False),
        "application/vnd.ms-word.document.macroEnabled.main+xml": (
            "application/vnd.ms-word.document.macroEnabled.12",
            True,
        ),
        "application/vnd.ms-word.template.macroEnabledTemplate.main+xml": (
            "application/vnd.ms-word.template.macroEnabled.12",
            True,
        ),
        _S + "sheet.main+xml": (_S + "sheet", False),
        _S + "template.main+xml": (_S + "template", False),
        "application/vnd.ms-excel.sheet.macroEnabled.main+xml": (
            "application/vnd.ms-excel.sheet.macroEnabled.12",
            True,
        ),
        "application/vnd.ms-excel.template.macroEnabled.main+xml": (
            "application/vnd.ms-excel.template.macroEnabled.12",
            True,
        ),
        "application/vnd.ms-excel.addin.macroEnabled.main+xml": (
            "application/vnd.ms-excel.addin.macroEnabled.12",
            True,
        ),
        "application/vnd.ms-excel.sheet.binary.macroEnabled.main": (
            "application/vnd.ms-excel.sheet.binary.macroEnabled.12",
            False,
        ),
        _P + "presentation.main+xml": (_P + "presentation", False),
        _P + "slideshow.main+xml": (_P + "slideshow", False),
        _P + "template.main+xml": (_P + "template", False),
        "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml": (
            "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
            True,
        ),
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.main+xml": (
            "application/vnd.ms-powerpoint.slideshow.macroEnabled.12",
            True,
        ),
        "application/vnd.ms-powerpoint.template.macroEnabled.main+xml": (
            "application/vnd.ms-powerpoint.template.macroEnabled.12",
            True,
        ),
        "application/vnd.ms-powerpoint.addin.macroEnabled.main+xml": (
            "application/vnd.ms-powerpoint.addin.macroEnabled.12",
            True,
        ),
        "application/vnd.ms-visio.drawing.main+xml": ("application/vnd.ms-visio.drawing", False),
        "application/vnd.ms-visio.drawing.macroEnabled.main+xml": (
            "application/vnd.ms-visio.drawing.macroEnabled.12",
            True,
        ),
    }.items()
}
_VBA_PROJECT_TYPE = "application/vnd.ms-office.vbaproject"
# Attribute values only: no XML parser, so no entity expansion to defend against.
_CONTENT_TYPE_ATTR = re.compile(rb"""ContentType\s*=\s*["']([^"'<>]{1,200})["']""")

# [MS-OVBA] 2.2: a VBA project is a storage "VBA" holding the "_VBA_PROJECT" stream; Word
# keeps the project under "Macros" ([MS-DOC]), Excel under "_VBA_PROJECT_CUR" ([MS-XLS]).
_VBA_NAMES = frozenset({"macros", "_vba_project_cur", "vba", "_vba_project"})
# Windows Installer database, patch and transform root CLSIDs: all run by msiexec.
_MSI_CLSIDS = frozenset(
    {
        "000C1084-0000-0000-C000-000000000046",
        "000C1086-0000-0000-C000-000000000046",
        "000C1082-0000-0000-C000-000000000046",
    }
)
_OLE_STREAM_TYPES = (
    ("worddocument", "application/msword"),
    ("workbook", "application/vnd.ms-excel"),
    ("book", "application/vnd.ms-excel"),
    ("powerpoint document", "application/vnd.ms-powerpoint"),
    ("__properties_version1.0", "application/vnd.ms-outlook"),
)


@dataclass(frozen=True, slots=True)
class _Found:
    """What a container turned out to be once opened."""

    true_type: str
    macros: bool = False
    encrypted: bool = False
    members: tuple[FileInfo, ...] = ()


# --- the inspection ---


class _Inspector:
    """The running totals of one inspection, shared by every nesting level."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.problems: dict[str, None] = {}  # an ordered set: each sentence once
        self.listed = 0  # members listed so far, all levels together
        self.read = 0  # uncompressed bytes read so far, all levels together
        self.stopped = False  # a bomb or the byte budget ended all further reading

    def problem(self, sentence: str) -> None:
        self.problems.setdefault(sentence, None)

    def analyse(
        self,
        name: str | None,
        declared: str | None,
        data: bytes,
        *,
        depth: int,
        size: int,
        complete: bool,
    ) -> FileInfo:
        """Describe ``data``; open containers only when all of their bytes are at hand."""
        true_type = _sniff(data)
        found = _Found(true_type) if true_type else None
        if complete and true_type == _ZIP:
            found = self.zip(name, data, depth)
        elif complete and true_type == _OLE:
            found = self.ole(name, data)
        elif complete and true_type == _GZIP:
            found = _Found(_GZIP, members=self.gzip(name, data, depth))
        true_type = found.true_type if found else None
        return FileInfo(
            name=name,
            declared_type=declared,
            true_type=true_type,
            true_kind=_kind_of(true_type),
            extensions=_extensions(name),
            size=size,
            encrypted=found.encrypted if found else False,
            macros=found.macros if found else False,
            depth=depth,
            members=found.members if found else (),
        )

    # zip ---------------------------------------------------------------------------------------

    def zip(self, name: str | None, data: bytes, depth: int) -> _Found:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except Exception as exc:  # zipfile raises a wide, undocumented set on hostile bytes
            self.problem(f"corrupt zip archive: {_label(name)}: {_reason(exc)}")
            return _Found(_ZIP)
        with archive:
            infos = archive.infolist()
            package = self.package(archive, {i.filename.casefold(): i for i in infos})
            if package is not None:
                return package
            # PKWARE APPNOTE 4.4.4: general purpose bit 0 set means the member is encrypted.
            encrypted = any(i.flag_bits & 0x1 for i in infos)
            files = [i for i in infos if not i.is_dir()]
            if depth >= self.limits.max_depth:
                # max_depth 0: archives are not opened at all (a filter that, like Exchange's
                # Attachment Filtering agent, judges names and types only); nothing was missed.
                if files and self.limits.max_depth > 0:
                    self.problem(
                        f"archives nested deeper than {self.limits.max_depth} levels;"
                        " not inspected further"
                    )
                return _Found(_ZIP, encrypted=encrypted)
            members: list[FileInfo] = []
            for info in files:
                if self.listed >= self.limits.max_members:
                    self.problem(
                        f"more than {self.limits.max_members} members; the rest were not listed"
                    )
                    break
                self.listed += 1
                members.append(self.member(archive, info, depth + 1))
            return _Found(_ZIP, encrypted=encrypted, members=tuple(members))

    def member(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, depth: int) -> FileInfo:
        name, size = info.filename, info.file_size
        unread = FileInfo(name, None, None, None, _extensions(name), size, False, False, depth)
        if info.flag_bits & 0x1:  # APPNOTE 4.4.4 bit 0: no password, no content
            return FileInfo(name, None, None, None, _extensions(name), size, True, False, depth)
        if self.stopped:
            return unread
        # Judged from the central directory's sizes, before a single byte is inflated.
        if size > _BOMB_FLOOR and size > self.limits.max_ratio * max(info.compress_size, 1):
            ratio = size // max(info.compress_size, 1)
            self.problem(f"zip bomb: member {name!r} expands {ratio}x; stopped")
            self.stopped = True
            return unread
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # zipfile inflates bzip2 and LZMA without an output bound (a few KiB can become
            # GiB in one call), so only stored and deflated members are read.
            self.problem(
                f"member {name!r} uses compression method {info.compress_type};"
                " its content was not read"
            )
            return unread
        try:
            with archive.open(info) as stream:
                data, whole = self.take(stream, min(size, _HEAD))
                if whole and size > len(data) and data.startswith(_CONTAINER_MAGICS):
                    rest, whole = self.take(stream, size - len(data))
                    data += rest
        except Exception as exc:  # bad CRC, bad local header, truncated data, ...
            self.problem(f"corrupt zip archive: member {name!r}: {_reason(exc)}")
            return unread
        return self.analyse(
            name, None, data, depth=depth, size=size, complete=whole and len(data) >= size
        )

    def take(self, stream: IO[bytes], n: int) -> tuple[bytes, bool]:
        """Up to ``n`` bytes in chunks, never past the byte budget; False if the budget ended it."""
        chunks: list[bytes] = []
        got = 0
        while got < n:
            want = min(_CHUNK, n - got)
            if self.read + want > self.limits.max_total_bytes:
                self.over_budget()
                return b"".join(chunks), False
            chunk = stream.read(want)
            if not chunk:
                break
            self.read += len(chunk)
            got += len(chunk)
            chunks.append(chunk)
        return b"".join(chunks), True

    def over_budget(self) -> None:
        self.problem(
            f"more than {_amount(self.limits.max_total_bytes)} uncompressed in total;"
            " the rest was not read"
        )
        self.stopped = True

    def package(self, archive: zipfile.ZipFile, names: dict[str, zipfile.ZipInfo]) -> _Found | None:
        """A zip that is a document or a program rather than a folder: OOXML, ODF, JAR, ..."""
        # ECMA-376 Part 2 (OPC): every package has "[Content_Types].xml" at its root, and part
        # names compare case-insensitively.
        content_types = names.get("[content_types].xml")
        if content_types is not None:
            declared = {
                t.decode("latin-1").lower()
                for t in _CONTENT_TYPE_ATTR.findall(
                    self.small(archive, content_types, _CONTENT_TYPES_CAP)
                )
            }
            main = next((_OOXML_MAIN[t] for t in sorted(declared) if t in _OOXML_MAIN), None)
            if main is not None:
                office_type, macro_enabled = main
                macros = (
                    macro_enabled
                    or _VBA_PROJECT_TYPE in declared
                    or any(n.endswith("vbaproject.bin") for n in names)
                    # Excel 4.0 (XLM) macro sheets, the other macro language of workbooks.
                    or any(n.startswith("xl/macrosheets/") for n in names)
                )
                return _Found(office_type, macros=macros)
            # MSIX/AppX installers are OPC packages too (Exchange blocks appx and msix).
            if "appxmanifest.xml" in names or "appxmetadata/appxbundlemanifest.xml" in names:
                return _Found(_MSIX)
        if "androidmanifest.xml" in names and "classes.dex" in names:
            return _Found(_APK)
        if "meta-inf/manifest.mf" in names:  # JAR File Specification: the manifest
            return _Found(_JAR)
        # OpenDocument 1.2 Part 3, 3.3: a first member "mimetype" holding the media type.
        mimetype = names.get("mimetype")
        if mimetype is not None:
            media = self.small(archive, mimetype, 128).decode("latin-1").strip()
            if re.fullmatch(r"application/vnd\.oasis\.opendocument\.[\w.+-]+", media):
                return _Found(media)
        return None

    def small(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
        """The first ``cap`` bytes of a bookkeeping member, or b"" if it can't be read."""
        if info.flag_bits & 0x1 or info.compress_type not in (
            zipfile.ZIP_STORED,
            zipfile.ZIP_DEFLATED,
        ):
            return b""
        try:
            with archive.open(info) as stream:
                return self.take(stream, min(info.file_size, cap))[0]
        except Exception:  # a broken part just isn't evidence; the members say the rest
            return b""

    # OLE ---------------------------------------------------------------------------------------

    def ole(self, name: str | None, data: bytes) -> _Found:
        try:
            with olefile.OleFileIO(io.BytesIO(data)) as ole:
                entries: list[list[str]] = ole.listdir(streams=True, storages=True)
                clsid = str(getattr(ole.root, "clsid", "") or "").upper()
                top = {path[0].casefold() for path in entries if len(path) == 1}
                encrypted = "encryptedpackage" in top  # [MS-OFFCRYPTO]: an encrypted OOXML in CFB
                if "worddocument" in top:
                    # [MS-DOC] 2.5.2 FibBase: fEncrypted is bit 0x0100 of the word at offset 10.
                    fib = bytes(ole.openstream("WordDocument").read(12))
                    encrypted = encrypted or (
                        len(fib) == 12 and bool(int.from_bytes(fib[10:12], "little") & 0x0100)
                    )
        except Exception as exc:  # olefile raises OSError, OleFileError, RecursionError, ...
            self.problem(f"corrupt OLE document: {_label(name)}: {_reason(exc)}")
            return _Found(_OLE)
        if clsid in _MSI_CLSIDS:
            return _Found(_MSI)
        parts = {part.casefold() for path in entries for part in path}
        office_type = next((t for stream, t in _OLE_STREAM_TYPES if stream in top), _OLE)
        return _Found(office_type, macros=bool(parts & _VBA_NAMES), encrypted=encrypted)

    # gzip --------------------------------------------------------------------------------------

    def gzip(self, name: str | None, data: bytes, depth: int) -> tuple[FileInfo, ...]:
        """The one member a gzip file holds: its stored name, type from its first bytes, size."""
        if depth >= self.limits.max_depth:
            if self.limits.max_depth > 0:
                self.problem(
                    f"archives nested deeper than {self.limits.max_depth} levels;"
                    " not inspected further"
                )
            return ()
        if self.listed >= self.limits.max_members:
            self.problem(f"more than {self.limits.max_members} members; the rest were not listed")
            return ()
        # RFC 1952 2.3.1: FLG bit 2 FEXTRA (2-byte length, data), bit 3 FNAME (zero-terminated
        # Latin-1); ISIZE, the last 4 bytes, is the input size modulo 2**32.
        flags = data[3] if len(data) > 3 else 0
        position = 10
        if flags & 0x04:
            position = 12 + int.from_bytes(data[10:12], "little")
        inner: str | None = None
        if flags & 0x08:
            end = data.find(b"\0", position, position + 1024)
            if end >= 0:
                inner = data[position:end].decode("latin-1")
        size = int.from_bytes(data[-4:], "little") if len(data) >= 18 else 0
        head = b""
        if not self.stopped:
            want = min(_HEAD, size or _HEAD)
            if self.read + want > self.limits.max_total_bytes:
                self.over_budget()
            else:
                try:
                    # wbits 31 = gzip framing; max_length bounds the output whatever the input.
                    head = zlib.decompressobj(31).decompress(data[:_GZIP_INPUT_CAP], want)
                except zlib.error as exc:
                    self.problem(f"corrupt gzip archive: {_label(name)}: {_reason(exc)}")
                self.read += len(head)
        self.listed += 1
        true_type = _sniff(head) if head else None
        return (
            FileInfo(
                name=inner,
                declared_type=None,
                true_type=true_type,
                true_kind=_kind_of(true_type),
                extensions=_extensions(inner),
                size=size,
                encrypted=False,
                macros=False,
                depth=depth + 1,
            ),
        )
