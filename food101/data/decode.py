"""Decoding one image file for the LMDB builder (runs in the worker processes).

OpenCV decodes (`cv2.IMREAD_COLOR`: BGR, 8 bit, EXIF orientation applied). Before that the file
is classified from its bytes, so a bad file is skipped with a reason rather than with whatever
OpenCV prints:

    zero-byte file | not an image (no JPEG/PNG/... signature) | truncated JPEG (no end-of-image
    marker after the last scan) | undecodable (OpenCV refused it)

Grayscale and CMYK/YCCK JPEGs decode fine with IMREAD_COLOR (OpenCV converts them to BGR); they
are kept and reported as converted, found from the component count in the JPEG frame header.

`resize_image` is the one resize policy of the project: scale the shorter side to `size`, then
take the centred size x size square, so aspect ratio is kept and nothing is stretched
(`resize="stretch"` is a plain resize to size x size instead). Shrinking uses INTER_AREA by
default (no aliasing; about 5x slower than `interpolation="linear"`, Caffe's convert_imageset
choice); enlarging always uses INTER_LINEAR.
"""
import cv2
import numpy as np

RESIZE_MODES = ("crop", "stretch")
INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}

_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"BM", "bmp"),
    (b"GIF8", "gif"), (b"RIFF", "webp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
)
# SOFn markers that carry the frame header (not DHT=C4, JPG=C8, DAC=CC).
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


class BadImage(Exception):
    """A file that cannot become a record; str() is the reason shown in the report."""


def sniff_format(data):
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    return None


def jpeg_components(data):
    """Number of colour components in a JPEG's frame header (1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK),
    or None when no frame header is found."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:          # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF_MARKERS:
            return data[pos + 9] if pos + 9 < n else None
        if marker == 0xDA:          # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def jpeg_is_complete(data):
    """True when an end-of-image marker follows the last start-of-scan (a cut file has none)."""
    last_scan = data.rfind(b"\xff\xda")
    return last_scan >= 0 and data.find(b"\xff\xd9", last_scan) >= 0


def decode_image_bytes(data):
    """Bytes of an image file -> (BGR HWC uint8 array, note). `note` is None or says what was
    converted ("grayscale JPEG converted to BGR"). Raises BadImage with the reason."""
    if len(data) == 0:
        raise BadImage("zero-byte file")
    kind = sniff_format(data)
    if kind is None:
        head = bytes(data[:8])
        raise BadImage("not an image: no JPEG/PNG/BMP/GIF/WebP/TIFF signature (starts with %r)" % head)
    note = None
    if kind == "jpeg":
        if not jpeg_is_complete(data):
            raise BadImage("truncated JPEG: no end-of-image marker after the last scan (%d bytes)"
                           % len(data))
        components = jpeg_components(data)
        if components == 1:
            note = "grayscale JPEG converted to BGR"
        elif components == 4:
            note = "CMYK JPEG converted to BGR"
        elif components not in (3, None):
            note = "%d-component JPEG converted to BGR" % components
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadImage("undecodable %s: OpenCV could not decode it (%d bytes)" % (kind.upper(), len(data)))
    if kind != "jpeg":
        # Rare outside JPEG: learn the stored channel count for the report.
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        channels = 1 if raw is None or raw.ndim == 2 else raw.shape[2]
        note = "%s image (%d channel%s) converted to BGR" % (kind.upper(), channels, "s" * (channels > 1))
    return image, note


def read_image(path):
    """Decode one file like `decode_image_bytes`; an unreadable file is a BadImage too."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BadImage("unreadable: %s" % (e.strerror or e)) from None
    return decode_image_bytes(data)


def resize_image(image, size, resize="crop", interpolation="area"):
    """HWC image -> size x size HWC (see the module docstring for the policy)."""
    if resize not in RESIZE_MODES:
        raise ValueError("resize must be one of %s, got %r" % (RESIZE_MODES, resize))
    if interpolation not in INTERPOLATIONS:
        raise ValueError("interpolation must be one of %s, got %r" % (tuple(INTERPOLATIONS), interpolation))
    shrink = INTERPOLATIONS[interpolation]
    h, w = image.shape[:2]
    if resize == "stretch":
        if (h, w) == (size, size):
            return image
        interp = shrink if size * size < h * w else cv2.INTER_LINEAR
        return cv2.resize(image, (size, size), interpolation=interp)
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=shrink if scale < 1 else cv2.INTER_LINEAR)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return image[top:top + size, left:left + size]


def to_chw(image):
    """HWC BGR -> contiguous CHW (the layout of Caffe2's NCHW records)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def load_image(path, size, resize="crop", interpolation="area"):
    """What the builder stores for one file, before the CHW transpose: (HWC uint8, note)."""
    image, note = read_image(path)
    return resize_image(image, size, resize, interpolation), note


def load_record_image(path, size, resize="crop", interpolation="area"):
    """Exactly the image a record built from `path` holds: (CHW uint8, note). For predicting
    on image files with the training preprocessing."""
    image, note = load_image(path, size, resize, interpolation)
    return to_chw(image), note
