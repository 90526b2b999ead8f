"""Content-Encoding of a REST body: gzip or deflate, inflated with a hard cap."""

from __future__ import annotations

from ingot.protocol.status import Code, ServingError, invalid_argument

CONTENT_ENCODINGS = ("gzip", "x-gzip", "deflate")
_INFLATE_CHUNK = 1 << 20


def decode_content(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """A gzip or deflate body, inflated a chunk at a time and refused (413) as soon as it passes
    `max_bytes`, so a small bomb never becomes a large buffer. Corrupt data is a 400."""
    import zlib

    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in CONTENT_ENCODINGS:
        raise ServingError(
            Code.INVALID_ARGUMENT,
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or an uncompressed body",
            http_status=415,
        )
    # gzip: a gzip header; deflate: a zlib stream (RFC 9110), or raw deflate as some clients send.
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else (zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS)
    inflater = zlib.decompressobj(wbits)
    out: list[bytes] = []
    total = 0
    pending = body
    try:
        while True:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            total += len(chunk)
            if total > max_bytes:
                raise ServingError(
                    Code.RESOURCE_EXHAUSTED,
                    f"Request body decompresses to more than the limit of {max_bytes} bytes",
                    http_status=413,
                )
            out.append(chunk)
            pending = inflater.unconsumed_tail
            if not pending and (inflater.eof or not chunk):
                break
        if not inflater.eof:
            raise zlib.error("the compressed data ends early")
    except zlib.error as err:
        raise invalid_argument(f"the request body is not valid {encoding} data ({err})") from None
    return b"".join(out)

