"""Small readings of the contract's message content that every provider format needs: the text
of a message, the stop sequences as a list, the type of an inline image, and the error for a
message a provider can't take.

Must not know: any provider's wire format, HTTP.
"""

from __future__ import annotations

from typing import Final

from sidecar.errors import SidecarError
from sidecar.wire.chat import ImagePart, TextPart

Content = str | list[TextPart | ImagePart] | None

# The first base64 characters of each image format's magic number, for inline data sent without
# a media type.
_IMAGE_MAGIC: Final = (
    ("iVBORw0KGgo", "image/png"),
    ("/9j/", "image/jpeg"),
    ("R0lGOD", "image/gif"),
    ("UklGR", "image/webp"),
)


def text_of(content: Content) -> str:
    """The text of a message, its text parts joined (images left out)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.text for p in content if isinstance(p, TextPart))


def stop_list(stop: str | list[str]) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop)


def sniff_image_type(data: str) -> str | None:
    """The media type of base64 image data, from its first bytes; None when unknown."""
    return next((media_type for prefix, media_type in _IMAGE_MAGIC if data.startswith(prefix)), None)


def invalid_message(message: str) -> SidecarError:
    return SidecarError("invalid_request", message, field="messages")
