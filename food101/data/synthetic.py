"""A small synthetic dataset in the exact Food-101 layout, for the demo notebook and the tests.

Six real Food-101 classes, each drawn procedurally with its own palette and shapes (a pizza is a
red disc with cheese blobs and pepperoni, waffles a golden grid, sushi white blocks with a pink
top on a dark tray, ...) plus colour jitter, random placement and noise, so a small convnet can
separate them but not from one pixel. Images are JPEGs of varying size and aspect ratio, the
longer side at most `max_side`. Everything derives from `seed`: the same call writes the same
bytes.

`with_broken=True` adds files that a real download can contain, listed in meta/train.txt like
any other image: a zero-byte file, a truncated JPEG, a text file named .jpg (all three must be
skipped), a grayscale JPEG and a CMYK JPEG (both must be converted to BGR). OpenCV cannot write
CMYK, so `encode_cmyk_jpeg` writes that one itself (a baseline JPEG whose 8x8 blocks are flat:
only DC coefficients, Adobe APP14 marker with transform 0).
"""
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

DEMO_CLASSES = ("apple_pie", "caesar_salad", "pizza", "ramen", "sushi", "waffles")

# Broken files: (kind, class, id, expected handling by the builder).
BROKEN_FILES = (
    ("zero_byte", "apple_pie", "9900001", "skipped"),
    ("truncated_jpeg", "pizza", "9900002", "skipped"),
    ("text_as_jpeg", "sushi", "9900003", "skipped"),
    ("grayscale_jpeg", "ramen", "9900004", "converted"),
    ("cmyk_jpeg", "waffles", "9900005", "converted"),
)


@dataclass
class DemoDataset:
    root: str
    classes: list
    counts: dict                                  # split -> images per class
    broken: dict = field(default_factory=dict)    # image_id -> (kind, "skipped"|"converted")


def _human(name):
    return name.replace("_", " ").capitalize()


# ------------------------------------------------------------------------------ drawing
def _jitter(rng, bgr, amount=18):
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in bgr)


def _center(rng, h, w, spread=0.12):
    return (int(w * (0.5 + rng.uniform(-spread, spread))), int(h * (0.5 + rng.uniform(-spread, spread))))


def _draw_apple_pie(img, rng):
    h, w = img.shape[:2]
    img[:] = _jitter(rng, (225, 225, 230))                      # plate
    c, r = _center(rng, h, w), int(min(h, w) * rng.uniform(0.38, 0.46))
    cv2.circle(img, c, r, _jitter(rng, (70, 150, 205)), -1, cv2.LINE_AA)       # crust
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, c, int(r * 0.88), 255, -1)
    lattice = img.copy()
    step, thick = int(r * rng.uniform(0.22, 0.3)), max(3, int(r * 0.07))
    strip = _jitter(rng, (40, 110, 175))
    for off in range(-2 * max(h, w), 2 * max(h, w), step):
        cv2.line(lattice, (c[0] + off - r, c[1] - r), (c[0] + off + r, c[1] + r), strip, thick, cv2.LINE_AA)
        cv2.line(lattice, (c[0] + off + r, c[1] - r), (c[0] + off - r, c[1] + r), strip, thick, cv2.LINE_AA)
    img[mask > 0] = lattice[mask > 0]


def _draw_caesar_salad(img, rng):
    h, w = img.shape[:2]
    img[:] = _jitter(rng, (240, 240, 240))
    for _ in range(int(rng.integers(25, 40))):                   # lettuce leaves
        c = (int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.1, 0.9) * h))
        axes = (int(min(h, w) * rng.uniform(0.06, 0.16)), int(min(h, w) * rng.uniform(0.03, 0.08)))
        green = _jitter(rng, (50, 170, 70) if rng.random() < 0.6 else (110, 210, 150), 25)
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, green, -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(6, 12))):                    # croutons
        x, y, s = int(rng.uniform(0.15, 0.85) * w), int(rng.uniform(0.15, 0.85) * h), int(min(h, w) * 0.04)
        cv2.rectangle(img, (x, y), (x + s, y + s), _jitter(rng, (60, 140, 200)), -1)
    for _ in range(int(rng.integers(40, 80))):                   # parmesan
        cv2.circle(img, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), 2, (235, 250, 250), -1)


def _draw_pizza(img, rng):
    h, w = img.shape[:2]
    img[:] = _jitter(rng, (60, 95, 140))                         # wooden board
    c, r = _center(rng, h, w), int(min(h, w) * rng.uniform(0.4, 0.47))
    cv2.circle(img, c, r, _jitter(rng, (90, 170, 225)), -1, cv2.LINE_AA)      # crust
    cv2.circle(img, c, int(r * 0.85), _jitter(rng, (40, 50, 200)), -1, cv2.LINE_AA)  # tomato
    for _ in range(int(rng.integers(8, 14))):                    # cheese
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.7) * r
        p = (int(c[0] + d * np.cos(a)), int(c[1] + d * np.sin(a)))
        cv2.circle(img, p, int(r * rng.uniform(0.08, 0.16)), _jitter(rng, (160, 225, 245)), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(6, 10))):                    # pepperoni
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.7) * r
        p = (int(c[0] + d * np.cos(a)), int(c[1] + d * np.sin(a)))
        cv2.circle(img, p, int(r * 0.1), _jitter(rng, (35, 30, 140)), -1, cv2.LINE_AA)


def _draw_ramen(img, rng):
    h, w = img.shape[:2]
    img[:] = _jitter(rng, (50, 60, 70))                          # dark table
    c, r = _center(rng, h, w), int(min(h, w) * rng.uniform(0.4, 0.47))
    cv2.circle(img, c, r, _jitter(rng, (25, 25, 30)), -1, cv2.LINE_AA)        # bowl rim
    cv2.circle(img, c, int(r * 0.86), _jitter(rng, (100, 175, 215)), -1, cv2.LINE_AA)  # broth
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, c, int(r * 0.84), 255, -1)
    noodles = img.copy()
    colour, phase = _jitter(rng, (150, 225, 245)), rng.uniform(0, 6.3)
    xs = np.arange(c[0] - r, c[0] + r, 3)
    for k in range(-8, 9):                                       # wavy noodles
        y = c[1] + k * r / 9 + 6 * np.sin(xs / (r * 0.08) + phase + k)
        pts = np.stack([xs, y], axis=1).astype(np.int32)
        cv2.polylines(noodles, [pts], False, colour, max(2, r // 40), cv2.LINE_AA)
    img[mask > 0] = noodles[mask > 0]
    egg = (int(c[0] + r * 0.4), int(c[1] - r * 0.3))
    cv2.ellipse(img, egg, (int(r * 0.2), int(r * 0.14)), 20, 0, 360, (235, 245, 250), -1, cv2.LINE_AA)
    cv2.circle(img, egg, int(r * 0.08), (20, 140, 240), -1, cv2.LINE_AA)
    for _ in range(int(rng.integers(10, 20))):                   # green onion
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.75) * r
        cv2.circle(img, (int(c[0] + d * np.cos(a)), int(c[1] + d * np.sin(a))), max(2, r // 30),
                   (60, 190, 90), -1)


def _draw_sushi(img, rng):
    h, w = img.shape[:2]
    img[:] = _jitter(rng, (30, 30, 35))                          # black slate
    n = int(rng.integers(2, 5))
    bw, bh = int(w / (n + 1)), int(h * rng.uniform(0.22, 0.3))
    y0 = int(h * rng.uniform(0.3, 0.45))
    top = _jitter(rng, (110, 140, 250) if rng.random() < 0.6 else (70, 60, 200))  # salmon / tuna
    for i in range(n):
        x0 = int((i + 0.5) * w / (n + 1))
        cv2.rectangle(img, (x0, y0), (x0 + int(bw * 0.85), y0 + bh), _jitter(rng, (230, 235, 240), 8), -1)
        cv2.rectangle(img, (x0 - 4, y0 - bh // 3), (x0 + int(bw * 0.85) + 4, y0 + bh // 6), top, -1)
        for k in range(4):                                      # fat stripes on the fish
            yy = y0 - bh // 3 + (k + 1) * bh // 10
            cv2.line(img, (x0, yy), (x0 + int(bw * 0.85), yy + 6), (200, 220, 255), 2, cv2.LINE_AA)
        cv2.rectangle(img, (x0 + bw // 3, y0 - bh // 3), (x0 + bw // 3 + bw // 8, y0 + bh), (25, 40, 25), -1)


def _draw_waffles(img, rng):
    h, w = img.shape[:2]
    img[:] = _jitter(rng, (215, 220, 225))
    side = int(min(h, w) * rng.uniform(0.7, 0.85))
    x0, y0 = (w - side) // 2 + int(rng.integers(-10, 11)), (h - side) // 2 + int(rng.integers(-10, 11))
    cv2.rectangle(img, (x0, y0), (x0 + side, y0 + side), _jitter(rng, (80, 170, 225)), -1)
    cells, cell_colour = int(rng.integers(5, 8)), _jitter(rng, (40, 115, 180))
    pitch = side / cells
    for i in range(cells):
        for j in range(cells):
            a = (int(x0 + (i + 0.18) * pitch), int(y0 + (j + 0.18) * pitch))
            b = (int(x0 + (i + 0.82) * pitch), int(y0 + (j + 0.82) * pitch))
            cv2.rectangle(img, a, b, cell_colour, -1)
    if rng.random() < 0.5:                                      # butter
        cv2.rectangle(img, (x0 + side // 3, y0 + side // 3), (x0 + side // 2, y0 + side // 2), (150, 235, 250), -1)


_DRAW = {
    "apple_pie": _draw_apple_pie, "caesar_salad": _draw_caesar_salad, "pizza": _draw_pizza,
    "ramen": _draw_ramen, "sushi": _draw_sushi, "waffles": _draw_waffles,
}


def render_image(class_name, rng, max_side=512, noise=None):
    """One synthetic BGR image of `class_name` (HWC uint8, longer side <= max_side)."""
    long_side = int(rng.integers(int(max_side * 0.75), max_side + 1))
    short_side = int(long_side * rng.uniform(0.6, 1.0))
    h, w = (long_side, short_side) if rng.random() < 0.4 else (short_side, long_side)
    img = np.empty((h, w, 3), np.uint8)
    _DRAW[class_name](img, rng)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    if noise is not None:     # a random window of a shared noise field: cheap per image
        y, x = int(rng.integers(0, noise.shape[0] - h + 1)), int(rng.integers(0, noise.shape[1] - w + 1))
        img = cv2.add(img, noise[y:y + h, x:x + w], dtype=cv2.CV_8U)
    return img


# ------------------------------------------------------------------------------ CMYK JPEG
def _huffman_codes(bits, values):
    """Canonical Huffman codes (JPEG Annex C) -> {symbol: (code, length)}."""
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[values[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return codes


_DC_BITS = (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)    # JPEG Annex K.3 luminance DC
_DC_VALUES = tuple(range(12))
_AC_BITS = (1,) + (0,) * 15                                     # a one-symbol table: only EOB
_AC_VALUES = (0x00,)


def encode_cmyk_jpeg(cmyk):
    """A baseline 4-component (CMYK, Adobe transform 0) JPEG of a blocky image.

    `cmyk` is (H/8, W/8, 4) uint8: one flat value per 8x8 block and channel, so every block is
    exactly representable by its DC coefficient (quantisation 1) and decodes without loss."""
    cmyk = np.asarray(cmyk, np.uint8)
    bh, bw, nc = cmyk.shape
    if nc != 4:
        raise ValueError("expected 4 channels (C, M, Y, K)")

    def segment(marker, payload):
        return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload

    out = bytearray(b"\xff\xd8")
    out += segment(0xEE, b"Adobe" + (100).to_bytes(2, "big") + b"\x00\x00\x00\x00" + b"\x00")
    out += segment(0xDB, b"\x00" + b"\x01" * 64)
    out += segment(0xC0, bytes([8]) + (bh * 8).to_bytes(2, "big") + (bw * 8).to_bytes(2, "big")
                   + bytes([4]) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(4)))
    out += segment(0xC4, bytes([0x00]) + bytes(_DC_BITS) + bytes(_DC_VALUES))
    out += segment(0xC4, bytes([0x10]) + bytes(_AC_BITS) + bytes(_AC_VALUES))
    out += segment(0xDA, bytes([4]) + b"".join(bytes([i + 1, 0x00]) for i in range(4)) + bytes([0, 63, 0]))

    dc_codes, eob = _huffman_codes(_DC_BITS, _DC_VALUES), _huffman_codes(_AC_BITS, _AC_VALUES)[0]
    acc, nbits, data = 0, 0, bytearray()

    def put(value, length):
        nonlocal acc, nbits
        acc, nbits = (acc << length) | value, nbits + length
        while nbits >= 8:
            nbits -= 8
            byte = (acc >> nbits) & 0xFF
            data.append(byte)
            if byte == 0xFF:
                data.append(0x00)          # byte stuffing
        acc &= (1 << nbits) - 1

    pred = [0, 0, 0, 0]
    for y in range(bh):
        for x in range(bw):
            for c in range(4):
                dc = 8 * (int(cmyk[y, x, c]) - 128)   # DCT of a flat block, level-shifted
                diff, pred[c] = dc - pred[c], dc
                size = abs(diff).bit_length()
                put(*dc_codes[size])
                if size:
                    put(diff if diff >= 0 else diff + (1 << size) - 1, size)
                put(*eob)
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)      # pad with ones
    return bytes(out + data + b"\xff\xd9")


# ------------------------------------------------------------------------------ the dataset
def _unique_ids(rng, n):
    ids = rng.choice(np.arange(100000, 3999999), size=n, replace=False)
    return [str(int(i)) for i in np.sort(ids)]


def make_demo_dataset(root, *, classes=DEMO_CLASSES, train_per_class=30, test_per_class=10,
                      max_side=512, seed=0, with_broken=False, quality=90, overwrite=False):
    """Write the demo dataset to `root` (Food-101 layout) and describe it."""
    classes = list(classes)
    unknown = [c for c in classes if c not in _DRAW]
    if unknown:
        raise ValueError("no drawing for classes %s (available: %s)" % (unknown, ", ".join(sorted(_DRAW))))
    if max_side < 32:
        raise ValueError("max_side must be at least 32")
    meta_dir, images_dir = os.path.join(root, "meta"), os.path.join(root, "images")
    if os.path.exists(meta_dir) and not overwrite:
        raise FileExistsError("%s already holds a dataset; pass overwrite=True" % root)
    os.makedirs(meta_dir, exist_ok=True)
    # float32 so that cv2.add saturates image + noise straight into uint8
    noise = np.random.default_rng([seed, 999]).integers(-10, 11, (max_side + 64, max_side + 64, 3)).astype(np.float32)
    split_lines = {"train": [], "test": []}
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    for ci, cls in enumerate(classes):
        os.makedirs(os.path.join(images_dir, cls), exist_ok=True)
        id_rng = np.random.default_rng([seed, ci, 0])
        ids = _unique_ids(id_rng, train_per_class + test_per_class)
        # Which ids are test is random, as in Food-101 (ids are not ordered by split).
        test_ids = set(id_rng.choice(ids, size=test_per_class, replace=False).tolist()) if test_per_class else set()
        for k, image_id in enumerate(ids):
            rng = np.random.default_rng([seed, ci, k + 1])
            img = render_image(cls, rng, max_side, noise)
            ok, buf = cv2.imencode(".jpg", img, params)
            assert ok
            buf.tofile(os.path.join(images_dir, cls, image_id + ".jpg"))
            split_lines["test" if image_id in test_ids else "train"].append("%s/%s" % (cls, image_id))
    broken = {}
    if with_broken:
        broken = _write_broken_files(images_dir, classes, seed, max_side, noise)
        split_lines["train"].extend(sorted(broken))
    _write_lines(os.path.join(meta_dir, "classes.txt"), classes)
    _write_lines(os.path.join(meta_dir, "labels.txt"), [_human(c) for c in classes])
    for split, lines in split_lines.items():
        _write_lines(os.path.join(meta_dir, split + ".txt"), lines)
    return DemoDataset(root=os.path.abspath(root), classes=classes,
                       counts={"train": train_per_class, "test": test_per_class}, broken=broken)


def _write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def _write_broken_files(images_dir, classes, seed, max_side, noise):
    broken = {}
    for kind, cls, image_id, handling in BROKEN_FILES:
        if cls not in classes:
            cls = classes[len(broken) % len(classes)]
        rng = np.random.default_rng([seed, 777, int(image_id)])
        path = os.path.join(images_dir, cls, image_id + ".jpg")
        if kind == "zero_byte":
            data = b""
        elif kind == "truncated_jpeg":
            ok, buf = cv2.imencode(".jpg", render_image(cls, rng, max_side, noise))
            data = buf.tobytes()[: buf.size * 2 // 5]
        elif kind == "text_as_jpeg":
            data = b"<html><body>404 Not Found</body></html>\n"
        elif kind == "grayscale_jpeg":
            gray = cv2.cvtColor(render_image(cls, rng, max_side, noise), cv2.COLOR_BGR2GRAY)
            ok, buf = cv2.imencode(".jpg", gray)
            data = buf.tobytes()
        elif kind == "cmyk_jpeg":
            blocks = rng.integers(0, 256, (max(4, max_side // 32), max(4, max_side // 24), 4)).astype(np.uint8)
            data = encode_cmyk_jpeg(blocks)
        else:  # pragma: no cover - BROKEN_FILES and this function change together
            raise AssertionError(kind)
        with open(path, "wb") as f:
            f.write(data)
        broken["%s/%s" % (cls, image_id)] = (kind, handling)
    return broken
