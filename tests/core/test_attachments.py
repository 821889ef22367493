"""Attachment inspection: true types, extensions, archives, macros and limits.

Every fixture is built here in memory: executables from their documented headers, zips with
zipfile (patched where zipfile cannot write what is needed), OLE files with a tiny [MS-CFB]
writer, since olefile can only read.
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
import time
import zipfile

import pytest

from sinkd.core.attachments import FileInfo, Inspection, Limits, inspect_file
from tests.support.attachments import (
    DOCM_MAIN,
    DOCM_TYPE,
    DOCX_TYPE,
    ELF,
    LNK,
    MACRO_DOC,
    MACRO_XLS,
    MSI,
    PLAIN_DOC,
    SHEBANG,
    WORD_MAIN,
    cfb,
    make_zip,
    ooxml,
    pe_bytes,
    set_encrypted_flag,
    word_document,
)

MiB = 1024 * 1024


def inspect(name: str | None, data: bytes, limits: Limits | None = None) -> Inspection:
    return inspect_file(name, None, data, limits or Limits())


# --- true types ---


def test_a_minimal_pe_is_a_windows_executable() -> None:
    root = inspect("setup.exe", pe_bytes()).root
    assert (root.true_type, root.true_kind) == ("application/x-dosexec", "executable")


def test_an_elf_binary_is_an_executable() -> None:
    root = inspect("tool", ELF).root
    assert (root.true_type, root.true_kind) == ("application/x-executable", "executable")


@pytest.mark.parametrize(
    "magic",
    ["feedface", "feedfacf", "cefaedfe", "cffaedfe", "cafebabe00000002", "cafebabf00000001"],
)
def test_every_mach_o_magic_including_fat_binaries_is_an_executable(magic: str) -> None:
    root = inspect("app", bytes.fromhex(magic).ljust(64, b"\0")).root
    assert (root.true_type, root.true_kind) == ("application/x-mach-binary", "executable")


def test_a_java_class_file_is_not_mistaken_for_a_fat_mach_o() -> None:
    root = inspect("Main.class", bytes.fromhex("cafebabe00000034") + bytes(64)).root
    assert root.true_type == "application/java-vm"


def test_a_shebang_script_is_a_script_of_its_interpreter() -> None:
    python = inspect("run", SHEBANG).root
    shell = inspect("run", b"#! /bin/sh\necho hi\n").root
    assert (python.true_type, python.true_kind) == ("text/x-script.python", "script")
    assert (shell.true_type, shell.true_kind) == ("text/x-shellscript", "script")


def test_a_windows_shortcut_is_an_executable() -> None:
    root = inspect("invoice.lnk", LNK).root
    assert (root.true_type, root.true_kind) == ("application/x-ms-shortcut", "executable")


def test_an_executable_renamed_to_pdf_is_still_an_executable() -> None:
    root = inspect_file("invoice.pdf", "Application/PDF; name=invoice.pdf", pe_bytes()).root
    assert root.true_kind == "executable"
    assert root.declared_type == "application/pdf"
    assert root.extensions == ("pdf",)


@pytest.mark.parametrize(
    ("data", "true_type", "kind"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "application/pdf", "pdf"),
        (b"\x89PNG\r\n\x1a\n" + bytes(32), "image/png", "image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32), "image/jpeg", "image"),
        (b"GIF89a" + bytes(32), "image/gif", "image"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(32), "audio/x-wav", "audio"),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(32), "audio/mpeg", "audio"),
        (b"OggS\x00\x02" + bytes(32), "audio/ogg", "audio"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(32), "video/mp4", "video"),
        (b"Rar!\x1a\x07\x01\x00" + bytes(32), "application/x-rar-compressed", "archive"),
        (b"7z\xbc\xaf\x27\x1c" + bytes(32), "application/x-7z-compressed", "archive"),
        (b"{\\rtf1\\ansi hello}", "application/rtf", "office"),
        (
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            "image/svg+xml",
            "image",
        ),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "text/html", "text"),
        ("Grüße, plain text\n".encode(), "text/plain", "text"),
        (b"BMW quarterly report\n", "text/plain", "text"),
    ],
)
def test_common_types_are_recognised_from_their_magic(
    data: bytes, true_type: str, kind: str
) -> None:
    root = inspect("file", data).root
    assert (root.true_type, root.true_kind) == (true_type, kind)


def test_empty_bytes_have_no_type_and_no_problem() -> None:
    result = inspect("empty.txt", b"")
    assert (result.root.true_type, result.root.true_kind, result.root.size) == (None, None, 0)
    assert result.problems == ()


def test_random_bytes_have_no_type() -> None:
    data = random.Random(7).randbytes(4096)
    assert inspect("noise.bin", data).root.true_type is None


def test_a_20_mb_non_archive_is_judged_from_its_first_bytes_quickly() -> None:
    for data in (b"%PDF-1.4\n" + bytes(20 * MiB), random.Random(1).randbytes(20 * MiB)):
        started = time.perf_counter()
        result = inspect("big.pdf", data)
        assert time.perf_counter() - started < 0.5
        assert result.root.size == len(data)
    assert inspect("big.pdf", b"%PDF-1.4\n" + bytes(20 * MiB)).root.true_kind == "pdf"


# --- names ---


@pytest.mark.parametrize(
    ("name", "extensions", "double"),
    [
        ("invoice.pdf.exe", ("pdf", "exe"), True),
        ("INVOICE.PDF.EXE", ("pdf", "exe"), True),
        ("invoice.pdf      .exe", ("pdf", "exe"), True),
        ("invoice.pdf.exe. ", ("pdf", "exe"), True),
        ("scan.jpg.html", ("jpg", "html"), True),
        ("C:\\Users\\me\\notes.txt.js", ("txt", "js"), True),
        ("archive.tar.gz", ("tar", "gz"), False),
        ("report.pdf.zip", ("pdf", "zip"), False),
        ("data.csv.gz", ("csv", "gz"), False),
        ("photo.jpg.png", ("jpg", "png"), False),
        ("backup.zip.001", ("zip", "001"), False),
        ("J. Smith CV.docx", ("docx",), False),
        ("setup.exe", ("exe",), False),
        ("README", (), False),
        (".exe", ("exe",), False),
    ],
)
def test_extensions_and_the_deceptive_double_extension_rule(
    name: str, extensions: tuple[str, ...], double: bool
) -> None:
    root = inspect(name, b"x").root
    assert root.extensions == extensions
    assert root.double_extension is double
    assert root.extension == (extensions[-1] if extensions else None)


def test_a_nameless_part_has_no_extensions() -> None:
    root = inspect(None, b"x").root
    assert (root.name, root.extensions, root.extension) == (None, (), None)


# --- zip archives ---


def test_a_zip_lists_its_members_with_their_true_types() -> None:
    result = inspect("files.zip", make_zip({"readme.txt": b"hello\n", "photo.jpg": pe_bytes()}))
    root = result.root
    assert (root.true_type, root.true_kind) == ("application/zip", "archive")
    assert [(m.name, m.true_kind, m.depth, m.size) for m in root.members] == [
        ("readme.txt", "text", 1, 6),
        ("photo.jpg", "executable", 1, 0x200),
    ]
    assert all(m.declared_type is None for m in root.members)
    assert result.problems == ()


def test_walk_visits_the_root_then_members_depth_first() -> None:
    inner = make_zip({"b.txt": b"b", "c.exe": pe_bytes()})
    outer = make_zip([("a.txt", b"a"), ("inner.zip", inner), ("d.txt", b"d")])
    names = [info.name for info in inspect("outer.zip", outer).walk()]
    assert names == ["outer.zip", "a.txt", "inner.zip", "b.txt", "c.exe", "d.txt"]


def test_each_member_is_named_inside_every_archive_that_holds_it() -> None:
    inner = make_zip({"b.txt": b"b", "c.exe": pe_bytes()})
    outer = make_zip([("docs/a.txt", b"a"), ("inner.zip", inner)])
    named = [shown for shown, _ in inspect("outer.zip", outer).named("part 2")]
    assert named == [
        "outer.zip",
        "outer.zip/docs/a.txt",
        "outer.zip/inner.zip",
        "outer.zip/inner.zip/b.txt",
        "outer.zip/inner.zip/c.exe",
    ]
    # A part without a file name is named by the caller's default.
    assert [shown for shown, _ in inspect(None, inner).named("part 2")][:2] == [
        "part 2",
        "part 2/b.txt",
    ]


def test_archives_nested_past_the_depth_limit_are_reported_not_opened() -> None:
    data = make_zip({"payload.exe": pe_bytes()})
    for level in (4, 3, 2):
        data = make_zip({f"level{level}.zip": data})
    result = inspect("level1.zip", data)
    assert [(i.name, i.depth) for i in result.walk()] == [
        ("level1.zip", 0),
        ("level2.zip", 1),
        ("level3.zip", 2),
        ("level4.zip", 3),
    ]
    assert result.problems == ("archives nested deeper than 3 levels; not inspected further",)
    deeper = inspect("level1.zip", data, Limits(max_depth=4))
    assert [i.true_kind for i in deeper.walk()][-1] == "executable"
    assert deeper.problems == ()


def test_a_depth_of_zero_opens_no_archive_and_reports_nothing_missed() -> None:
    # A filter that judges names and declared types only (Exchange's Attachment Filtering
    # agent) does not open archives; that is its design, not content it failed to inspect.
    zipped = inspect("tools.zip", make_zip({"setup.exe": pe_bytes()}), Limits(max_depth=0))
    gzipped = inspect("setup.exe.gz", gzip.compress(pe_bytes()), Limits(max_depth=0))
    for result in (zipped, gzipped):
        assert [i.depth for i in result.walk()] == [0]
        assert result.problems == ()


def test_an_encrypted_member_is_listed_by_name_and_size_but_not_read() -> None:
    data = set_encrypted_flag(make_zip({"secret.exe": pe_bytes()}, zipfile.ZIP_STORED))
    result = inspect("locked.zip", data)
    (member,) = result.root.members
    assert result.root.encrypted is True
    assert (member.name, member.size, member.encrypted, member.true_type) == (
        "secret.exe",
        0x200,
        True,
        None,
    )
    assert result.problems == ()


def test_a_zip_bomb_is_caught_from_its_header_sizes_quickly() -> None:
    data = make_zip({"zeros.bin": bytes(50 * MiB)})
    started = time.perf_counter()
    result = inspect("bomb.zip", data, Limits(max_total_bytes=1 * MiB))
    assert time.perf_counter() - started < 1.0
    (problem,) = result.problems
    assert problem.startswith("zip bomb: member 'zeros.bin' expands ")
    assert problem.endswith("x; stopped")
    assert result.root.members[0].true_type is None


def test_small_compressible_members_are_not_bombs() -> None:
    result = inspect("logs.zip", make_zip({"blank.txt": b" " * 200_000}))
    assert result.problems == ()
    assert result.root.members[0].true_kind == "text"


def test_reading_stops_at_the_total_byte_budget() -> None:
    noise = random.Random(3).randbytes(2 * MiB)
    inner = make_zip({"noise.bin": noise}, zipfile.ZIP_STORED)
    outer = make_zip({"inner.zip": inner, "later.exe": pe_bytes()}, zipfile.ZIP_STORED)
    result = inspect("outer.zip", outer, Limits(max_total_bytes=1 * MiB))
    assert result.problems == ("more than 1 MiB uncompressed in total; the rest was not read",)
    inner_info, later = result.root.members
    assert (inner_info.true_kind, inner_info.members) == ("archive", ())
    assert (later.name, later.true_type) == ("later.exe", None)


def test_listing_stops_at_the_member_limit() -> None:
    data = make_zip([(f"file{i}.txt", b"x") for i in range(2000)])
    result = inspect("many.zip", data, Limits(max_members=1000))
    assert len(result.root.members) == 1000
    assert result.problems == ("more than 1000 members; the rest were not listed",)


def test_a_corrupt_zip_is_a_problem_not_an_exception() -> None:
    result = inspect("broken.zip", b"PK\x03\x04" + b"garbage" * 20)
    assert (result.root.true_kind, result.root.members) == ("archive", ())
    (problem,) = result.problems
    assert problem.startswith("corrupt zip archive: 'broken.zip': ")


def test_a_member_with_a_bad_checksum_is_a_problem() -> None:
    data = bytearray(make_zip({"a.txt": b"hello world"}, zipfile.ZIP_STORED))
    data[data.find(b"hello")] = ord("j")
    result = inspect("crc.zip", bytes(data))
    assert [m.name for m in result.root.members] == ["a.txt"]
    (problem,) = result.problems
    assert problem.startswith("corrupt zip archive: member 'a.txt': ")


def test_bzip2_members_are_listed_but_not_decompressed() -> None:
    data = make_zip({"tool.exe": pe_bytes()}, zipfile.ZIP_BZIP2)
    result = inspect("bz.zip", data)
    assert [(m.name, m.true_type) for m in result.root.members] == [("tool.exe", None)]
    assert result.problems == (
        "member 'tool.exe' uses compression method 12; its content was not read",
    )


def test_a_jar_is_an_executable_not_an_archive_to_list() -> None:
    data = make_zip({"META-INF/MANIFEST.MF": b"Manifest-Version: 1.0\n", "A.class": b"\xca"})
    root = inspect("app.jar", data).root
    assert (root.true_type, root.true_kind, root.members) == (
        "application/java-archive",
        "executable",
        (),
    )


def test_an_opendocument_text_is_an_office_document() -> None:
    data = make_zip(
        [("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", b"<x/>")],
        zipfile.ZIP_STORED,
    )
    root = inspect("letter.odt", data).root
    assert (root.true_type, root.true_kind) == ("application/vnd.oasis.opendocument.text", "office")


# --- gzip, tar ---


def test_a_gzip_names_its_inner_file_and_its_true_type() -> None:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="invoice.pdf.exe", mode="wb", fileobj=buffer, mtime=0) as out:
        out.write(pe_bytes())
    result = inspect("invoice.gz", buffer.getvalue())
    assert (result.root.true_type, result.root.true_kind) == ("application/gzip", "archive")
    (inner,) = result.root.members
    assert (inner.name, inner.true_kind, inner.size, inner.depth) == (
        "invoice.pdf.exe",
        "executable",
        0x200,
        1,
    )
    assert inner.double_extension is True


def test_a_corrupt_gzip_is_a_problem_not_an_exception() -> None:
    result = inspect("broken.gz", b"\x1f\x8b\x08\x00" + bytes(6) + b"\xff" * 40)
    assert result.root.true_kind == "archive"
    (problem,) = result.problems
    assert problem.startswith("corrupt gzip archive: 'broken.gz': ")


def test_a_tar_gz_is_an_archive_without_a_deceptive_double_extension() -> None:
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w") as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"notes"))
    result = inspect("archive.tar.gz", gzip.compress(tar_buffer.getvalue()))
    assert result.root.extensions == ("tar", "gz")
    assert result.root.double_extension is False
    assert result.root.true_kind == "archive"
    assert result.root.members[0].true_type == "application/x-tar"


# --- Office: OOXML ---


def test_a_docx_without_macros_is_an_office_document_not_an_archive() -> None:
    result = inspect("report.docx", ooxml(WORD_MAIN))
    root = result.root
    assert (root.true_type, root.true_kind, root.macros, root.members) == (
        DOCX_TYPE,
        "office",
        False,
        (),
    )
    assert result.problems == ()


def test_a_docm_has_macros_by_its_content_type_and_its_vba_project() -> None:
    root = inspect("report.docm", ooxml(DOCM_MAIN, vba=True, vba_type=True)).root
    assert (root.true_type, root.true_kind, root.macros) == (DOCM_TYPE, "office", True)


def test_a_macro_enabled_content_type_alone_means_macros() -> None:
    assert inspect("report.docm", ooxml(DOCM_MAIN)).root.macros is True


def test_a_docx_carrying_a_vba_project_part_has_macros() -> None:
    root = inspect("report.docx", ooxml(WORD_MAIN, vba=True)).root
    assert (root.true_type, root.macros) == (DOCX_TYPE, True)


def test_a_docx_declaring_the_vba_project_content_type_has_macros() -> None:
    assert inspect("report.docx", ooxml(WORD_MAIN, vba_type=True)).root.macros is True


def test_a_spreadsheet_gets_its_own_office_type() -> None:
    main = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
    root = inspect("book.xlsx", ooxml(main, main_part="/xl/workbook.xml")).root
    assert root.true_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_a_docm_inside_a_zip_is_found_with_its_macros() -> None:
    result = inspect("mail.zip", make_zip({"invoice.docm": ooxml(DOCM_MAIN, vba=True)}))
    assert [(i.name, i.true_kind, i.macros) for i in result.walk()] == [
        ("mail.zip", "archive", False),
        ("invoice.docm", "office", True),
    ]


# --- Office: OLE ---


def test_a_plain_word_97_document_has_no_macros() -> None:
    result = inspect("letter.doc", PLAIN_DOC)
    root = result.root
    assert (root.true_type, root.true_kind, root.macros, root.encrypted) == (
        "application/msword",
        "office",
        False,
        False,
    )
    assert result.problems == ()


def test_a_word_97_document_with_a_vba_storage_has_macros() -> None:
    root = inspect("letter.doc", MACRO_DOC).root
    assert (root.true_type, root.macros) == ("application/msword", True)


def test_an_excel_97_workbook_with_vba_project_cur_has_macros() -> None:
    root = inspect("book.xls", MACRO_XLS).root
    assert (root.true_type, root.macros) == ("application/vnd.ms-excel", True)


def test_an_encrypted_word_97_document_is_encrypted() -> None:
    root = inspect("locked.doc", cfb({"WordDocument": word_document(encrypted=True)})).root
    assert root.encrypted is True


def test_an_msi_is_an_executable_by_its_root_clsid() -> None:
    root = inspect("update.doc", MSI).root
    assert (root.true_type, root.true_kind) == ("application/x-msi", "executable")


def test_a_macro_document_inside_a_zip_is_opened() -> None:
    member = inspect("docs.zip", make_zip({"letter.doc": MACRO_DOC})).root.members[0]
    assert (member.true_kind, member.macros) == ("office", True)


def test_a_corrupt_ole_file_is_a_problem_not_an_exception() -> None:
    data = bytes.fromhex("d0cf11e0a1b11ae1") + random.Random(5).randbytes(3000)
    result = inspect("broken.doc", data)
    assert result.root.true_kind == "office"
    (problem,) = result.problems
    assert problem.startswith("corrupt OLE document: 'broken.doc': ")


# --- hostile input ---


def test_truncated_and_mutated_containers_never_raise() -> None:
    rng = random.Random(11)
    fixtures = [
        make_zip({"a.txt": b"a" * 3000, "b.exe": pe_bytes()}),
        make_zip({"inner.zip": make_zip({"x.doc": MACRO_DOC})}),
        ooxml(DOCM_MAIN, vba=True),
        MACRO_DOC,
        MSI,
        gzip.compress(pe_bytes()),
    ]
    started = time.perf_counter()
    for data in fixtures:
        for cut in range(0, len(data), max(1, len(data) // 60)):
            inspect("cut", data[:cut])
        for _ in range(150):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            result = inspect("mutated", bytes(mutated))
            assert isinstance(result.root, FileInfo)
    assert time.perf_counter() - started < 30


def test_each_problem_is_reported_once() -> None:
    deep = make_zip({"a.zip": make_zip({"b.zip": make_zip({"c.txt": b"c"})})})
    data = make_zip({"one.zip": deep, "two.zip": deep})
    result = inspect("top.zip", data, Limits(max_depth=2))
    assert result.problems == ("archives nested deeper than 2 levels; not inspected further",)
