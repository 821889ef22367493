"""Profiles the tests write for themselves, shared by several test modules."""

from __future__ import annotations

from pathlib import Path

# typical-corporate delivers images and hidden text as real gateways do (the mail client
# withholds remote images); an admin may still strip them, as MIMEDefang's
# action_drop_with_warning does. The strip machinery and the dashboard's strip views are
# exercised with this profile.
STRIPPING_PROFILE_ID = "strips-images"
STRIPPING_PROFILE = f"""\
schema: sinkd.profile/v1
id: {STRIPPING_PROFILE_ID}
title: typical-corporate whose admin also strips images, tracking pixels and hidden text
extends: typical-corporate
models:
  - {{what: "an admin's own choice", assumption: "the strip machinery under test"}}
filters:
  - kind: mime
    name: rich-content
    classes:
      images: {{action: strip}}
      tracking_pixels: {{action: strip}}
      hidden_text: {{action: strip}}
"""


def write_stripping_profile(directory: Path) -> Path:
    """Write the stripping profile into ``directory`` (a profiles dir) and return its path."""
    path = directory / f"{STRIPPING_PROFILE_ID}.yaml"
    path.write_text(STRIPPING_PROFILE, encoding="utf-8")
    return path
