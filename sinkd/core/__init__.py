"""The pure filter core: envelope, raw message, profile and injected lookups in; findings and
a verdict out.

Owns the value types (``model``), the profile schema and loading (``schema``, ``profiles``), the
ports lookups come through (``ports``), the staged ``engine``, the parsed message and its MIME
tree (``message``, ``mimetree``), every filter kind (``filters``), HTML inspection
(``html``), stripping (``strip``), attachments, matching, SPF evaluation, Authentication-Results,
delivery state (greylist, rates) and the population estimate.

Must not open a socket, touch a file other than a profile or import an adapter: DNS and spamd
arrive through ``ports``, storage and SMTP formatting live outside (an import-linter contract
in ``pyproject.toml`` holds it to that).
"""
