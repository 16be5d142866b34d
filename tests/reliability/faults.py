"""What the scenarios share: pointing leanops at a proxy, and reading what a check left behind."""

from __future__ import annotations

from leanops import manifest, storage
from support import environment


def s3_through(proxy):
    """Every S3 call of this process (the flows run in it) goes through ``proxy``."""
    return environment(LEANOPS_S3_ENDPOINT_URL=proxy.url)


def processed_mark(uri: str):
    """The manifest's mark of the object at ``uri`` as it is now, or None if no check marked it."""
    return manifest.read_mark(uri, manifest.identity_of(storage.stat(uri)))
