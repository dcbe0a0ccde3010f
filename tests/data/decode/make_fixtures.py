#!/usr/bin/python3
"""Fixtures for tests/unit/test_decode.c: small PNG/JPEG files, hostile ones, and the pixels PIL
decodes from each (expected/NAME.pgm or .ppm: what Image.open(f).convert('L' or 'RGB') gives,
after ImageOps.exif_transpose).

Run with Debian's Python (python3-pil): /usr/bin/python3 tests/data/decode/make_fixtures.py
The outputs are committed, so the C tests need no Python. The script is deterministic: running
it again rewrites the same bytes (PIL's encoders and zlib are deterministic for fixed settings).

PNGs PIL cannot write (16-bit RGB/RGBA/LA, 2-bit gray, Adam7 interlacing, hostile headers) are
built here chunk by chunk with zlib; PIL still decodes them for the expected pixels, so the
reference stays independent of libpng. The one exception is 16-bit grayscale: PIL 9.4 clips it
(mode I -> L saturates every value over 255), which explaind deliberately does not copy, so its
expected pixels are the high bytes computed here (and the script checks that PIL really differs).
"""
import io
import os
import random
import struct
import warnings
import zlib

from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected")


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def write_expected(name, im):
    """im: a PIL image in mode L or RGB -> expected/NAME.pgm|.ppm (binary PNM: self-describing)."""
    assert im.mode in ("L", "RGB"), im.mode
    magic, ext = (b"P5", ".pgm") if im.mode == "L" else (b"P6", ".ppm")
    data = magic + b"\n%d %d\n255\n" % im.size + im.tobytes()
    with open(os.path.join(EXPECTED, name + ext), "wb") as f:
        f.write(data)


def expect_pil(name, mode):
    """Expected pixels for fixture NAME as PIL decodes it."""
    with Image.open(os.path.join(HERE, name)) as im:
        im = ImageOps.exif_transpose(im)
        write_expected(name, im.convert(mode))


# ---- PNG by hand -------------------------------------------------------------------------------

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(pixels, depth):
    """pixels: list of tuples of samples -> scanline bytes (no filter byte)."""
    samples = [s for p in pixels for s in p]
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, nbits = bytearray(), 0, 0
    for s in samples:
        acc = acc << depth | s
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def make_png(img, depth, color, interlace=0, before_idat=b""):
    """img: list of rows, each a list of sample tuples. Filter type 0 on every row."""
    h, w = len(img), len(img[0])
    raw = bytearray()
    if interlace:
        for xs, ys, dx, dy in ADAM7:
            cols, rows = range(xs, w, dx), range(ys, h, dy)
            if not cols or not rows:
                continue  # empty passes have no scanlines at all
            for y in rows:
                raw += b"\0" + pack_row([img[y][x] for x in cols], depth)
    else:
        for row in img:
            raw += b"\0" + pack_row(row, depth)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + before_idat +
            chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def png_chunks(data):
    """[(offset, kind, length)] of a PNG's chunks."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((pos, kind, length))
        pos += 12 + length
    return out


def random_image(rng, w, h, channels, maxval):
    return [[tuple(rng.randint(0, maxval) for _ in range(channels)) for _ in range(w)] for _ in range(h)]


def pil_from_samples(img, mode):
    h, w = len(img), len(img[0])
    im = Image.new(mode, (w, h))
    im.putdata([p if len(p) > 1 else p[0] for row in img for p in row])
    return im


def make_pngs(rng):
    # PIL-written: gray, RGB, RGBA (alpha incl. 0 and 255), gray+alpha, palette+tRNS, gray+tRNS, 1-bit
    for name, mode, size in [("gray8.png", "L", (17, 13)), ("rgb8.png", "RGB", (17, 13)),
                             ("rgba8.png", "RGBA", (17, 13)), ("gray_alpha8.png", "LA", (17, 13))]:
        im = Image.frombytes(mode, size, bytes(rng.randint(0, 255) for _ in range(size[0] * size[1] * len(mode))))
        im.save(os.path.join(HERE, name))
        expect_pil(name, "L" if mode in ("L", "LA") else "RGB")

    pal = Image.frombytes("P", (19, 7), bytes(rng.randint(0, 15) for _ in range(19 * 7)))
    pal.putpalette([rng.randint(0, 255) for _ in range(16 * 3)])
    pal.save(os.path.join(HERE, "palette4_trns.png"), bits=4, transparency=bytes([0, 128] + [255] * 14))
    expect_pil("palette4_trns.png", "RGB")

    g = Image.frombytes("L", (11, 9), bytes(rng.randint(0, 255) for _ in range(99)))
    g.save(os.path.join(HERE, "gray_trns.png"), transparency=int(g.getpixel((0, 0))))
    expect_pil("gray_trns.png", "L")

    one = Image.frombytes("L", (21, 5), bytes(rng.choice((0, 255)) for _ in range(105))).convert("1")
    one.save(os.path.join(HERE, "gray1.png"))
    expect_pil("gray1.png", "L")

    # By hand: 16-bit RGB, RGBA, gray+alpha, 2-bit gray, Adam7 interlaced (8-bit RGB, 2-bit gray, 16-bit RGBA)
    hand = [("rgb16.png", 16, 2, 3, 65535, 0, "RGB"), ("rgba16.png", 16, 6, 4, 65535, 0, "RGB"),
            ("gray_alpha16.png", 16, 4, 2, 65535, 0, "L"), ("gray2.png", 2, 0, 1, 3, 0, "L"),
            ("interlaced_rgb8.png", 8, 2, 3, 255, 1, "RGB"), ("interlaced_gray2.png", 2, 0, 1, 3, 1, "L"),
            ("interlaced_rgba16.png", 16, 6, 4, 65535, 1, "RGB")]
    for name, depth, color, ch, maxval, interlace, mode in hand:
        img = random_image(rng, 19, 11, ch, maxval)
        write(name, make_png(img, depth, color, interlace))
        expect_pil(name, mode)
        if depth == 16:  # PIL keeps the high byte for these: check it so the claim in decode.c holds
            with Image.open(os.path.join(HERE, name)) as im:
                got = im.convert(mode).tobytes()
            hi = bytes(p[c] >> 8 for row in img for p in row for c in range(3 if mode == "RGB" else 1))
            assert got == hi, name

    # 2-bit gray with a tRNS key: expanding to 8 bits must not turn the key into an alpha channel
    img = random_image(rng, 13, 7, 1, 3)
    write("gray2_trns.png", make_png(img, 2, 0, 0, chunk(b"tRNS", struct.pack(">H", 2))))
    expect_pil("gray2_trns.png", "L")

    # 16-bit gray: expected is the high byte; PIL 9.4 clips instead (checked, so the note stays true)
    img = random_image(rng, 19, 11, 1, 65535)
    write("gray16.png", make_png(img, 16, 0))
    write_expected("gray16.png", pil_from_samples([[(v[0] >> 8,) for v in row] for row in img], "L"))
    with Image.open(os.path.join(HERE, "gray16.png")) as im:
        clipped = im.convert("L").tobytes()
    assert clipped == bytes(min(v[0], 255) for row in img for v in row), "PIL no longer clips 16-bit gray"

    # eXIf before IDAT, orientation 6: PNG photos exported from phones carry it too
    img = [[(255, 0, 0)] * 8 + [(0, 255, 0)] * 8] * 4 + [[(0, 0, 255)] * 8 + [(255, 255, 255)] * 8] * 4
    write("exif6.png", make_png(img, 8, 2, 0, chunk(b"eXIf", exif_tiff(6, little_endian=True))))
    expect_pil("exif6.png", "RGB")

    # Broken: truncated inside IDAT, and a bad IDAT CRC
    good = open(os.path.join(HERE, "rgb8.png"), "rb").read()
    idat = [c for c in png_chunks(good) if c[1] == b"IDAT"][0]
    write("truncated.png", good[:idat[0] + 8 + idat[2] // 2])
    bad = bytearray(good)
    bad[idat[0] + 8 + idat[2]] ^= 0xFF  # first CRC byte
    write("bad_crc.png", bytes(bad))

    # Hostile headers: nothing but the signature and IHDR, so a decoder that reads on gets a
    # truncation error instead of ETOOBIG (the test can tell "refused from the header" apart).
    sig = b"\x89PNG\r\n\x1a\n"
    write("huge_header.png", sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)))
    write("wide_header.png", sig + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 8, 8, 2, 0, 0, 0)))

    # A real bomb: 20000x20000 1-bit zeros. 50 MB of scanlines, ~49 KB deflated (deflate tops out
    # near 1032:1); decoded to 8 bits it would be 400 MB.
    w = h = 20000
    row = b"\0" * (1 + (w + 7) // 8)
    z = zlib.compressobj(9)
    comp = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    d = zlib.decompressobj()
    total = len(d.decompress(comp)) + len(d.flush())
    assert total == h * len(row)
    write("bomb.png", sig + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)) +
          chunk(b"IDAT", comp) + chunk(b"IEND", b""))


# ---- JPEG --------------------------------------------------------------------------------------

def exif_tiff(orientation, little_endian):
    """A TIFF block with IFD0 = ImageWidth, Make, Orientation (sorted, as writers emit them)."""
    e = "<" if little_endian else ">"
    head = (b"II" if little_endian else b"MM") + struct.pack(e + "HI", 42, 8)
    entries = [struct.pack(e + "HHII", 0x0100, 4, 1, 24),
               struct.pack(e + "HHI", 0x010F, 2, 4) + b"abc\0",
               struct.pack(e + "HHIH", 0x0112, 3, 1, orientation) + b"\0\0"]
    return head + struct.pack(e + "H", len(entries)) + b"".join(entries) + struct.pack(e + "I", 0)


def jpeg_segments(data):
    """[(marker, bytes)] with each SOS carrying its entropy-coded data."""
    assert data[:2] == b"\xff\xd8"
    segs, pos = [(0xD8, data[:2])], 2
    while pos < len(data):
        assert data[pos] == 0xFF, pos
        marker = data[pos + 1]
        if marker == 0xD9:
            segs.append((marker, data[pos:pos + 2]))
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        end = pos + 2 + length
        if marker == 0xDA:  # entropy data runs to the next marker that is not FF00 or RSTn
            while not (data[end] == 0xFF and data[end + 1] != 0x00 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
        segs.append((marker, data[pos:end]))
        pos = end
    return segs


def jpeg_bytes(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def smooth_rgb(rng, w, h):
    """Gradients plus noise: realistic enough for JPEG, with detail in every block."""
    px = bytearray()
    for y in range(h):
        for x in range(w):
            px += bytes(((x * 255 // w + rng.randint(0, 40)) % 256, (y * 255 // h + rng.randint(0, 40)) % 256,
                         ((x + y) * 4 + rng.randint(0, 40)) % 256))
    return Image.frombytes("RGB", (w, h), bytes(px))


def make_jpegs(rng):
    color = smooth_rgb(rng, 33, 21)
    write("color.jpg", jpeg_bytes(color, quality=90))
    expect_pil("color.jpg", "RGB")
    write("gray.jpg", jpeg_bytes(color.convert("L"), quality=90))
    expect_pil("gray.jpg", "L")
    write("progressive.jpg", jpeg_bytes(smooth_rgb(rng, 40, 24), quality=85, progressive=True))
    expect_pil("progressive.jpg", "RGB")

    # Large enough (320x240) that libjpeg-turbo must hold its coefficient buffers in
    # max_memory_to_use (small ones fit in one "minimum height" and are never refused)
    grad = Image.frombytes("RGB", (320, 240), bytes((x % 256, y % 256, (x + y) % 256)[c]
                                                     for y in range(240) for x in range(320) for c in range(3)))
    write("progressive_large.jpg", jpeg_bytes(grad, quality=75, progressive=True))

    # CMYK: PIL writes it inverted with an Adobe APP14 marker, as Photoshop does
    cmyk = Image.frombytes("CMYK", (16, 16), bytes(rng.randint(0, 255) for _ in range(16 * 16 * 4)))
    data = jpeg_bytes(cmyk, quality=95)
    assert b"\xff\xee\x00\x0eAdobe" in data, "expected an Adobe APP14 marker"
    write("cmyk.jpg", data)
    expect_pil("cmyk.jpg", "RGB")

    # Truncated: a baseline and a progressive file cut in their entropy-coded data
    big = smooth_rgb(rng, 64, 64)
    for name, kw in [("truncated.jpg", {}), ("truncated_progressive.jpg", {"progressive": True})]:
        data = jpeg_bytes(big, quality=90, **kw)
        write(name, data[:len(data) * 6 // 10])

    # EXIF orientations 1..8: four solid quadrants (red, green / blue, white), 4:4:4 so each stays
    # its color; even orientations big-endian ("MM"), odd ones little-endian ("II").
    quad = Image.new("RGB", (32, 16))
    for box, c in [((0, 0, 16, 8), (255, 0, 0)), ((16, 0, 32, 8), (0, 255, 0)),
                   ((0, 8, 16, 16), (0, 0, 255)), ((16, 8, 32, 16), (255, 255, 255))]:
        quad.paste(c, box)
    for o in range(1, 9):
        name = "exif%d.jpg" % o
        write(name, jpeg_bytes(quad, quality=95, subsampling=0, exif=b"Exif\0\0" + exif_tiff(o, o % 2 == 1)))
        expect_pil(name, "RGB")
    # Broken EXIF must be ignored, not crash or misread: IFD offset past the end; an IFD that
    # claims 500 entries and ends inside the Orientation entry.
    write("exif_bad_offset.jpg", jpeg_bytes(quad, quality=95, subsampling=0,
                                            exif=b"Exif\0\0MM\0*" + struct.pack(">I", 0x7FFFFFF0)))
    t = exif_tiff(6, False)
    t = t[:8] + struct.pack(">H", 500) + t[10:10 + 24 + 8]  # two entries, then 8 of Orientation's 12 bytes
    write("exif_truncated_ifd.jpg", jpeg_bytes(quad, quality=95, subsampling=0, exif=b"Exif\0\0" + t))
    with Image.open(os.path.join(HERE, "exif1.jpg")) as im:  # same pixels, upright
        write_expected("exif_unrotated.jpg", im.convert("RGB"))

    # Over the limits from the header: SOF says 60000x60000 (the scan data is the real 33x21's)
    data = bytearray(open(os.path.join(HERE, "color.jpg"), "rb").read())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    write("huge_sof.jpg", bytes(data))

    # Hostile DHT segments (stb_image's out-of-bounds write came in through one)
    data = open(os.path.join(HERE, "color.jpg"), "rb").read()
    segs = jpeg_segments(data)
    sos = [i for i, (m, _) in enumerate(segs) if m == 0xDA][0]

    def with_segment_before_sos(seg):
        return b"".join(s for _, s in segs[:sos]) + seg + b"".join(s for _, s in segs[sos:])
    # code counts summing to 4080 (> 256 symbols) in a 19-byte segment
    write("dht_bad_counts.jpg", with_segment_before_sos(b"\xff\xc4" + struct.pack(">HB", 19, 0x00) + b"\xff" * 16))
    # over-subscribed: 3 codes of length 1 (only 2 exist), redefining the DC table the scan uses
    table = bytes([3] + [0] * 15) + bytes([0, 1, 2])
    write("dht_oversubscribed.jpg", with_segment_before_sos(b"\xff\xc4" + struct.pack(">HB", 2 + 1 + 16 + 3, 0x00) + table))
    # a DHT whose length runs 65 KB past the end of the file
    write("dht_overlong.jpg", with_segment_before_sos(b"\xff\xc4\xff\xff\x00" + bytes([1] + [0] * 15) + b"\x00"))

    # Thousands of scans: a small progressive gray JPEG whose first AC scan is repeated 2500 times
    # before EOI (the DHT it needs once, then SOS + data each time). Each repeat is a legal scan
    # libjpeg decodes (it only warns about the progression), so the scan cap is what must stop it.
    g = jpeg_bytes(smooth_rgb(rng, 8, 8).convert("L"), quality=90, progressive=True)
    segs = jpeg_segments(g)
    first_ac = [i for i, (m, s) in enumerate(segs) if m == 0xDA and s[5 + 2 * s[4]] > 0][0]  # Ss > 0
    start = first_ac
    while segs[start - 1][0] == 0xC4:
        start -= 1
    tables = b"".join(s for _, s in segs[start:first_ac])
    assert segs[-1][0] == 0xD9
    scans = sum(1 for m, _ in segs if m == 0xDA)
    write("many_scans.jpg", b"".join(s for _, s in segs[:-1]) + tables + segs[first_ac][1] * 2500 + segs[-1][1])
    expect_pil("many_scans.jpg", "L")
    print("many_scans.jpg: %d scans" % (scans + 2500))


# ---- formats we refuse -------------------------------------------------------------------------

def make_unsupported(rng):
    im = smooth_rgb(rng, 8, 8)
    for name, fmt in [("tiny.gif", "GIF"), ("tiny.tif", "TIFF"), ("tiny.webp", "WEBP"), ("tiny.bmp", "BMP")]:
        b = io.BytesIO()
        im.save(b, fmt)
        write(name, b.getvalue())


def main():
    # PIL suggests RGBA for palette+tRNS on convert('RGB'); dropping alpha is the point here
    warnings.filterwarnings("ignore", message="Palette images with Transparency")
    os.makedirs(EXPECTED, exist_ok=True)
    rng = random.Random(20240611)
    make_pngs(rng)
    make_jpegs(rng)
    make_unsupported(rng)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(HERE) for f in fs)
    print("fixtures: %d bytes in total" % total)


if __name__ == "__main__":
    main()
