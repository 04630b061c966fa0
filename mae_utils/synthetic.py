"""Built-in synthetic faces: the default data when no photo folder is given.

A procedural generator of cartoon faces, drawn with vectorised numpy on a coordinate grid at the
requested size (no upsampling, so edges stay crisp and antialiased at any resolution). Every face
is a fixed function of ``(seed, index)``: its random numbers come from
``numpy.random.default_rng([seed, index])``, so the same face comes out at 64 px or 256 px, in any
batch, on any machine. Faces vary in head shape, skin tone, pose (roll, shift, scale, a little yaw),
lighting, eyes (whites, irises of several colours, pupils, highlights, lids), brows, nose shading,
mouth (smile, open/closed), ears, hair style and colour, and optionally glasses, beards and blush;
both eyes share iris colour and gaze, so a hidden eye is predictable from the visible one.

Speed: faces are rendered in batches; features that occupy a small part of the face (eyes, nose,
mouth) are drawn only inside a window that bounds them for the whole batch.

Command line: ``python -m mae_utils synth --out DIR --n N --size S --seed SEED`` writes PNG files.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .util.errors import UserError, check_seed
from .util.progress import tqdm

#: How many uniform random numbers each face draws (a fixed budget keeps faces reproducible).
N_DRAWS = 160

# Palettes (linear-ish RGB in [0, 1]).
_SKIN = np.array(
    [
        [0.30, 0.18, 0.12],
        [0.45, 0.29, 0.20],
        [0.62, 0.43, 0.31],
        [0.78, 0.59, 0.46],
        [0.90, 0.73, 0.62],
        [0.97, 0.84, 0.76],
    ],
    dtype=np.float32,
)
_HAIR = np.array(
    [
        [0.07, 0.06, 0.05],  # black
        [0.20, 0.13, 0.08],  # dark brown
        [0.40, 0.26, 0.14],  # brown
        [0.66, 0.50, 0.28],  # dark blonde
        [0.88, 0.76, 0.48],  # blonde
        [0.58, 0.24, 0.10],  # auburn
        [0.52, 0.52, 0.52],  # grey
        [0.86, 0.86, 0.84],  # white
    ],
    dtype=np.float32,
)
_HAIR_WEIGHTS = [3, 3, 3, 2, 2, 1, 1, 0.6]
_IRIS = np.array(
    [
        [0.30, 0.17, 0.07],  # brown
        [0.16, 0.09, 0.04],  # dark brown
        [0.45, 0.35, 0.14],  # hazel
        [0.24, 0.46, 0.26],  # green
        [0.22, 0.44, 0.72],  # blue
        [0.44, 0.52, 0.58],  # grey
    ],
    dtype=np.float32,
)
_IRIS_WEIGHTS = [4, 3, 2, 1.5, 2, 1]
_FRAMES = np.array(
    [
        [0.05, 0.05, 0.05],
        [0.30, 0.18, 0.10],
        [0.80, 0.65, 0.25],
        [0.72, 0.72, 0.75],
        [0.65, 0.10, 0.12],
        [0.10, 0.16, 0.40],
    ],
    dtype=np.float32,
)
# Hair styles.
_BALD, _SHORT, _FRINGE, _BOB, _LONG, _CURLY, _BUN = range(7)
_STYLE_WEIGHTS = [0.5, 3, 1.5, 1.5, 2.5, 1, 0.8]


class _Draws:
    """Hands out the columns of an (N, N_DRAWS) uniform matrix as per-face parameters."""

    def __init__(self, uniforms: np.ndarray) -> None:
        self.u01 = uniforms
        self.k = 0

    def _next(self) -> np.ndarray:
        if self.k >= self.u01.shape[1]:
            raise RuntimeError("synthetic face generator ran out of random draws; raise N_DRAWS")
        col = self.u01[:, self.k]
        self.k += 1
        return col

    def u(self, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
        """A uniform value per face, shaped (N, 1, 1) to broadcast over images."""
        return (lo + (hi - lo) * self._next()).astype(np.float32).reshape(-1, 1, 1)

    def flag(self, p: float) -> np.ndarray:
        """1.0 with probability p, else 0.0, shaped (N, 1, 1)."""
        return (self._next() < p).astype(np.float32).reshape(-1, 1, 1)

    def choice(self, weights: Sequence[float]) -> np.ndarray:
        """An index per face, drawn with the given weights, shaped (N,)."""
        cum = np.cumsum(np.asarray(weights, dtype=np.float64))
        picked = np.searchsorted(cum / cum[-1], self._next(), side="right")
        return np.minimum(picked, len(weights) - 1)

    def color(
        self, palette: np.ndarray, weights: Sequence[float] | None = None, jitter: float = 0.0
    ) -> np.ndarray:
        """A palette colour per face (optionally jittered), shaped (3, N, 1, 1)."""
        weights = weights if weights is not None else [1.0] * len(palette)
        return self.tint(palette, self.choice(weights), jitter)

    def tint(self, palette: np.ndarray, idx: np.ndarray, jitter: float = 0.0) -> np.ndarray:
        """Palette entries ``idx`` (optionally jittered) as (3, N, 1, 1): :meth:`color`, no draw."""
        col = palette[idx]
        if jitter:
            factors = [self.u(1 - jitter, 1 + jitter).reshape(-1) for _ in range(3)]
            col = col * np.stack(factors, axis=1)
        channels_first = np.clip(col, 0.0, 1.0).astype(np.float32).T
        return np.ascontiguousarray(channels_first).reshape(3, -1, 1, 1)

    def hsv(self, s: tuple[float, float], v: tuple[float, float]) -> np.ndarray:
        """A random-hue colour per face with saturation
        and value in the given ranges, (3, N, 1, 1)."""
        h = self.u().reshape(-1)
        sat = self.u(*s).reshape(-1)
        val = self.u(*v).reshape(-1)
        return np.ascontiguousarray(_hsv_to_rgb(h, sat, val).T).reshape(3, -1, 1, 1)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    k = np.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], axis=1)
    f = np.clip(np.minimum(k, 4 - k), 0, 1)
    return (v[:, None] * (1 - s[:, None] * f)).astype(np.float32)


def face_uniforms(seed: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """The random numbers behind faces ``indices`` of generator ``seed``: (len(indices), N_DRAWS).

    Each row comes from its own ``default_rng([seed, index])``, so a face never depends on which
    other faces are generated with it.
    """
    rows = [np.random.default_rng([int(seed), int(i)]).random(N_DRAWS) for i in indices]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), N_DRAWS)


def _soft(d: np.ndarray, width: np.ndarray | float) -> np.ndarray:
    """Antialiased coverage from a signed distance (negative inside) and the edge width."""
    out = 0.5 - d / width
    return np.clip(out, 0.0, 1.0, out=out)


def _rgb(r: float, g: float, b: float) -> np.ndarray:
    """A constant colour shaped (3, 1, 1, 1) to broadcast over (3, N, h, w) canvases."""
    return np.array([r, g, b], dtype=np.float32).reshape(3, 1, 1, 1)


def _ellipse_r(X: np.ndarray, Y: np.ndarray, cx: Any, cy: Any, a: Any, b: Any) -> np.ndarray:
    return np.sqrt(((X - cx) / a) ** 2 + ((Y - cy) / b) ** 2)


def _ellipse(
    X: np.ndarray, Y: np.ndarray, cx: Any, cy: Any, a: Any, b: Any, width: Any
) -> np.ndarray:
    """Coverage of an ellipse, edge softness ``width`` (local units)."""
    return _soft((_ellipse_r(X, Y, cx, cy, a, b) - 1.0) * np.minimum(a, b), width)


def _paint(canvas: np.ndarray, alpha: np.ndarray, color: Any) -> None:
    """Alpha-composite ``color`` (3,N,1,1 or 3,N,h,w
    or a scalar) over ``canvas`` (3,N,h,w) in place.

    Channels come first so that every numpy loop runs over contiguous image rows.
    """
    tmp = color - canvas
    tmp *= alpha
    canvas += tmp


class _Frame:
    """Local face coordinates and the canvas inside one pixel window of a batch.

    Without ``sel`` it holds views of every face. With ``sel`` (indices of some faces, for features
    only some faces have) it holds copies for those faces: pick their parameters with :meth:`p`
    and write the drawing back with :meth:`commit`.
    """

    def __init__(
        self, ctx: "_Batch", rows: slice, cols: slice, sel: np.ndarray | None = None
    ) -> None:
        self.ctx, self.rows, self.cols, self.sel = ctx, rows, cols, sel
        if sel is None:
            self.X = ctx.X[:, rows, cols]
            self.Y = ctx.Y[:, rows, cols]
            self.canvas = ctx.canvas[:, :, rows, cols]
            self.pw = ctx.pw
        else:
            self.X = ctx.X[sel, rows, cols]
            self.Y = ctx.Y[sel, rows, cols]
            self.canvas = ctx.canvas[:, sel, rows, cols]
            self.pw = ctx.pw[sel]

    def p(self, v: Any) -> Any:
        """A per-face parameter ((N,1,1) or colour (3,N,1,1)) restricted to this frame's faces."""
        if self.sel is None or np.ndim(v) < 3:
            return v
        return v[self.sel] if np.ndim(v) == 3 else v[:, self.sel]

    def skin(self, factor: Any = 1.0) -> np.ndarray:
        if self.sel is None:
            return self.ctx.skin_field[:, :, self.rows, self.cols] * factor
        return self.ctx.skin_field[:, self.sel, self.rows, self.cols] * factor

    def commit(self) -> None:
        if self.sel is not None:
            self.ctx.canvas[:, self.sel, self.rows, self.cols] = self.canvas


class _Batch:
    def __init__(
        self, size: int, cx: np.ndarray, cy: np.ndarray, scale: np.ndarray, roll: np.ndarray
    ) -> None:
        self.size = size
        g = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
        self.x = g[None, None, :]
        self.y = g[None, :, None]
        self.cx, self.cy, self.scale = cx, cy, scale
        self.cos, self.sin = np.cos(roll), np.sin(roll)
        dx, dy = self.x - cx, self.y - cy
        self.X = ((self.cos * dx + self.sin * dy) / scale).astype(np.float32)
        self.Y = ((-self.sin * dx + self.cos * dy) / scale).astype(np.float32)
        self.pw = (2.0 / size) / scale  # one pixel in local units, (N,1,1)
        self.canvas = np.zeros((3,) + self.X.shape, dtype=np.float32)
        self.skin_field: np.ndarray | None = None

    def full(self) -> _Frame:
        return _Frame(self, slice(None), slice(None))

    def window(
        self, x0: float, x1: float, y0: float, y1: float, sel: np.ndarray | None = None
    ) -> _Frame:
        """The pixel window holding the local box
        [x0,x1]x[y0,y1] for every face (or faces ``sel``)."""
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float32)
        k = slice(None) if sel is None else sel
        cos, sin = self.cos[k].reshape(-1, 1), self.sin[k].reshape(-1, 1)
        s = self.scale[k].reshape(-1, 1)
        X, Y = corners[None, :, 0], corners[None, :, 1]
        xs = self.cx[k].reshape(-1, 1) + s * (cos * X - sin * Y)
        ys = self.cy[k].reshape(-1, 1) + s * (sin * X + cos * Y)
        S = self.size

        def span(lo: float, hi: float) -> slice:
            a = int(math.floor((lo + 1.0) * 0.5 * S)) - 2
            b = int(math.ceil((hi + 1.0) * 0.5 * S)) + 2
            return slice(max(a, 0), max(min(b, S), 0))

        rows = span(float(ys.min()), float(ys.max()))
        cols = span(float(xs.min()), float(xs.max()))
        return _Frame(self, rows, cols, sel)


def _hair_texture(X: np.ndarray, Y: np.ndarray, freq: np.ndarray, curly: Any) -> np.ndarray:
    """A multiplicative strand pattern: wavy vertical strands, or blobs where ``curly`` is 1."""
    if np.ndim(curly) == 0:  # one kind for all faces: compute only that one
        if curly:
            return 1.0 + 0.06 * (np.sin(freq * X) * np.sin(freq * Y))
        return 1.0 + 0.06 * np.sin(freq * X + 4.0 * np.sin(7.0 * Y))
    straight = np.sin(freq * X + 4.0 * np.sin(7.0 * Y))
    curls = np.sin(freq * X) * np.sin(freq * Y)
    return 1.0 + 0.06 * (straight + curly * (curls - straight))


def _pose_and_colours(d: _Draws, size: int) -> SimpleNamespace:
    """Draws shared by every feature: pose, head shape, skin, hair colour and style, light."""
    cx, cy = d.u(-0.07, 0.07), d.u(-0.02, 0.09)
    scale, roll = d.u(0.80, 1.0), d.u(-0.13, 0.13)
    yaw = d.u(-1.0, 1.0)
    b = _Batch(size, cx, cy, scale, roll)
    F = b.full()
    X, Y, pw = F.X, F.Y, F.pw
    a_head, b_head = d.u(0.40, 0.49), d.u(0.53, 0.62)
    hc = np.float32(-0.03)
    jaw, square = d.u(0.0, 0.35), d.u(0.0, 0.8)
    skin_t = d.u().reshape(-1) * (len(_SKIN) - 1)
    i0 = np.floor(skin_t).astype(int)
    i1 = np.minimum(i0 + 1, len(_SKIN) - 1)
    w = (skin_t - i0)[:, None]
    skin = ((1 - w) * _SKIN[i0] + w * _SKIN[i1]).astype(np.float32)
    shades = [d.u(0.95, 1.05).reshape(-1), d.u(0.96, 1.04).reshape(-1)]
    shades.append(d.u(0.94, 1.06).reshape(-1))
    skin = skin * np.stack(shades, 1)
    skin = np.ascontiguousarray(skin.T).reshape(3, -1, 1, 1).astype(np.float32)
    hair_idx = d.choice(_HAIR_WEIGHTS)
    hair = d.tint(_HAIR, hair_idx, jitter=0.08)
    style = d.choice(_STYLE_WEIGHTS).reshape(-1, 1, 1)
    light_angle = d.u(0, 2 * math.pi)
    light_k = d.u(0.05, 0.22)
    lx, ly = np.cos(light_angle), np.sin(light_angle) * 0.6 - 0.4  # mostly from above
    yaw_off = yaw * np.float32(0.05)
    return SimpleNamespace(
        X=X, Y=Y, a_head=a_head, b=b, b_head=b_head, hair=hair,
        hc=hc, jaw=jaw, light_k=light_k, lx=lx, ly=ly, pw=pw,
        skin=skin, square=square, style=style, yaw=yaw, yaw_off=yaw_off,
        drawn=dict(
            skin_tone=skin_t, yaw=yaw, roll=roll, head_scale=scale, hair_colour=hair_idx,
            hair_style=style,
        ),
    )


def _background(d: _Draws, f: SimpleNamespace) -> None:
    """A two-colour gradient, sometimes striped."""
    b = f.b
    bg1, bg2 = d.hsv((0.05, 0.55), (0.35, 0.95)), d.hsv((0.05, 0.55), (0.25, 0.9))
    bg_angle = d.u(0, 2 * math.pi)
    stripes, stripe_f, stripe_amt = d.flag(0.25), d.u(6, 18), d.u(0.05, 0.25)
    t = np.clip(0.5 + 0.5 * (b.x * np.cos(bg_angle) + b.y * np.sin(bg_angle)), 0, 1)
    across = b.x * np.sin(bg_angle) - b.y * np.cos(bg_angle)
    t = t + stripes * stripe_amt * np.sin(stripe_f * across)
    b.canvas[:] = bg1 + t[None] * (bg2 - bg1)


def _back_hair(d: _Draws, f: SimpleNamespace) -> None:
    """Hair behind the head: long or bob curtains, curly
    volume, a bun (each style only where drawn)."""
    a_head, b, b_head, hair, hc = f.a_head, f.b, f.b_head, f.hair, f.hc
    style = f.style
    hair_freq = d.u(70, 120)
    curly = (style == _CURLY).astype(np.float32)
    long_draw, bob_draw = d.u(0.45, 0.95), d.u(0.18, 0.34)
    long_len = np.where(style == _LONG, long_draw, np.where(style == _BOB, bob_draw, -10.0))
    long_len = long_len.astype(np.float32)
    bulk = d.u(0.05, 0.14)
    bun_r = d.u(0.13, 0.19)
    # each style is drawn only for the faces that have it
    groups = (
        (style.reshape(-1) == _LONG) | (style.reshape(-1) == _BOB),
        style.reshape(-1) == _CURLY,
        style.reshape(-1) == _BUN,
    )
    for kind, mask in enumerate(groups):
        if not mask.any():
            continue
        G = b.window(-1.6, 1.6, -1.6, 1.6, sel=np.nonzero(mask)[0])
        gX, gY, gpw, ga, gb, gbulk = G.X, G.Y, G.pw, G.p(a_head), G.p(b_head), G.p(bulk)
        if kind == 0:
            wide = ga + gbulk + 0.04
            dome = _ellipse(gX, gY, 0, hc - 0.02, wide, gb + gbulk, gpw)
            flare = wide * (1.0 - 0.25 * np.clip(gY - hc, 0, None))
            curtain = _soft(np.abs(gX) - flare, gpw) * _soft(hc - gY, gpw)
            curtain *= _soft(gY - G.p(long_len) - 0.04 * np.sin(20 * gX), gpw * 1.5)
            back = np.maximum(dome, curtain)
        elif kind == 1:
            rad = ga + gbulk + 0.14
            bumps = 0.025 * np.sin(23 * gX) * np.sin(23 * gY)
            ring = _ellipse_r(gX, gY, 0, hc - 0.12, rad, rad * 1.05)
            back = _soft((ring - 1.0) * rad + bumps, gpw)
        else:
            r = G.p(bun_r)
            back = _ellipse(gX, gY, 0, hc - gb - r * 0.4, r, r * 0.9, gpw)
        tex = _hair_texture(gX, gY, G.p(hair_freq), np.float32(kind == 1))
        _paint(G.canvas, back, G.p(hair) * tex[None] * 0.85)
        G.commit()
    f.bulk, f.curly, f.hair_freq = bulk, curly, hair_freq


def _neck_and_clothes(d: _Draws, f: SimpleNamespace) -> None:
    """The shading field of the skin, the neck and the clothes with their collar."""
    X, Y, a_head, b, b_head = f.X, f.Y, f.a_head, f.b, f.b_head
    hc, light_k, lx, ly, skin = f.hc, f.light_k, f.lx, f.ly, f.skin
    shade = 1.0 + light_k * ((X / a_head) * lx + ((Y - hc) / b_head) * ly)
    shade = shade - 0.16 * (((X / a_head) ** 2 + ((Y - hc) / b_head) ** 2) * 0.8)
    shade = np.maximum(shade, 0.35)
    b.skin_field = skin * shade[None]
    neck_w = d.u(0.14, 0.21)
    L = b.window(-0.3, 0.3, 0.05, 1.6)
    neck = _soft(np.abs(L.X) - neck_w, L.pw) * _soft(0.1 - L.Y, L.pw)
    _paint(L.canvas, neck, L.skin(0.78))
    cloth = d.hsv((0.15, 0.85), (0.15, 0.85))
    cloth_w, cloth_top = d.u(0.78, 1.05), d.u(0.62, 0.78)
    collar_depth = d.u(0.03, 0.2)
    L = b.window(-1.6, 1.6, 0.55, 1.6)
    clothes = _ellipse(L.X, L.Y, 0, cloth_top + 0.5, cloth_w, 0.5, L.pw)
    body = _soft(np.abs(L.X) - cloth_w, L.pw) * _soft(cloth_top + 0.5 - L.Y, L.pw)
    clothes = np.maximum(clothes, body)
    clothes *= 1.0 - _ellipse(L.X, L.Y, 0, cloth_top, neck_w * 1.25, collar_depth + 0.02, L.pw)
    _paint(L.canvas, clothes, cloth * (1.0 + 0.15 * light_k / 0.22 * (L.X * lx))[None])
    f.neck_w, f.shade = neck_w, shade


def _ears(d: _Draws, f: SimpleNamespace) -> None:
    """Both ears, hidden by long or curly hair."""
    a_head, b, style, yaw, yaw_off = f.a_head, f.b, f.style, f.yaw, f.yaw_off
    ear_y, ear_w, ear_h = d.u(-0.07, 0.03), d.u(0.055, 0.08), d.u(0.10, 0.14)
    ear_show = 1.0 - (style == _LONG) * d.flag(0.7) - (style == _CURLY) * 1.0
    for side in (-1.0, 1.0):
        E = b.window(min(side * 0.25, side * 0.68), max(side * 0.25, side * 0.68), -0.3, 0.25)
        ex = side * (a_head * 0.97) + yaw_off * 0.3 - side * yaw * side * 0.02
        outer = _ellipse(E.X, E.Y, ex, ear_y, ear_w, ear_h, E.pw)
        inner = _ellipse(E.X, E.Y, ex + side * 0.012, ear_y, ear_w * 0.5, ear_h * 0.6, E.pw * 2)
        _paint(E.canvas, outer * ear_show, E.skin(0.9))
        _paint(E.canvas, inner * ear_show * 0.5, E.skin(0.62))


def _head(d: _Draws, f: SimpleNamespace) -> None:
    """The head (an ellipse between round and square,
    narrowing to the jaw) and the chin's shadow."""
    X, Y, a_head, b, b_head = f.X, f.Y, f.a_head, f.b, f.b_head
    hc, jaw, neck_w, pw, square = f.hc, f.jaw, f.neck_w, f.pw, f.square
    dy = Y - hc
    aa = a_head * (1.0 - jaw * np.clip(dy / b_head, 0, 1) ** 2)
    u2, v2 = (X / aa) ** 2, (dy / b_head) ** 2
    r_head = (1 - square) * np.sqrt(u2 + v2) + square * np.sqrt(np.sqrt(u2 * u2 + v2 * v2))
    head = _soft((r_head - 1.0) * np.minimum(aa, b_head), pw)
    _paint(b.canvas, head, b.skin_field)
    # soft shadow under the chin onto the neck
    L = b.window(-0.3, 0.3, 0.2, 0.8)
    r_l = r_head[:, L.rows, L.cols]
    chin_shadow = np.clip(1.0 - np.abs(r_l - 1.0) / 0.12, 0, 1) * (1 - head[:, L.rows, L.cols])
    chin_shadow *= _soft(hc + b_head * 0.6 - L.Y, 0.05) * _soft(np.abs(L.X) - neck_w - 0.03, L.pw)
    _paint(L.canvas, chin_shadow * 0.35, L.skin(0.55))
    f.r_head = r_head


def _eyes(d: _Draws, f: SimpleNamespace) -> None:
    """Sockets, creases, almond-shaped whites, irises
    with pupils and highlights, lids and lashes."""
    b, lx, shade, yaw, yaw_off = f.b, f.lx, f.shade, f.yaw, f.yaw_off
    eye_x, eye_y = d.u(0.16, 0.21), d.u(-0.11, -0.03)
    eye_w, eye_open = d.u(0.075, 0.105), d.u(0.42, 0.68)
    eye_h = eye_w * eye_open
    iris_idx = d.choice(_IRIS_WEIGHTS)
    iris = d.tint(_IRIS, iris_idx, jitter=0.1)
    f.drawn["eye_colour"] = iris_idx
    iris_r = eye_w * d.u(0.44, 0.52)
    gaze_x, gaze_y = d.u(-0.35, 0.35), d.u(-0.2, 0.15)
    liner = d.u(0.4, 1.0)
    sclera = _rgb(0.95, 0.94, 0.91)
    for side in (-1.0, 1.0):
        W = b.window(min(side * -0.08, side * 0.46), max(side * -0.08, side * 0.46), -0.32, 0.16)
        ecx = side * eye_x + yaw_off
        ew = eye_w * (1.0 + side * 0.12 * yaw)
        eh = eye_h * (1.0 + side * 0.06 * yaw)
        socket = np.clip(1.0 - _ellipse_r(W.X, W.Y, ecx, eye_y - 0.01, ew * 1.45, eh * 2.3), 0, 1)
        _paint(W.canvas, socket * 0.35, W.skin(0.72))
        r_crease = _ellipse_r(W.X, W.Y, ecx, eye_y + eh * 0.15, ew * 1.08, eh * 1.9)
        crease = _soft(np.abs(r_crease - 1.0) * eh * 1.9 - 0.004, W.pw)
        _paint(W.canvas, crease * _soft(W.Y - eye_y, W.pw) * 0.35, W.skin(0.6))
        # almond eye: an ellipse pinched towards the corners
        tx = (W.X - ecx) / ew
        eh_x = eh * (1.0 - 0.25 * tx * tx)
        r_eye = np.sqrt(tx * tx + ((W.Y - eye_y) / eh_x) ** 2)
        d_eye = (r_eye - 1.0) * eh
        white = _soft(d_eye, W.pw)
        _paint(W.canvas, white, sclera * (0.88 + 0.12 * shade[:, W.rows, W.cols])[None])
        icx, icy = ecx + gaze_x * ew * 0.45, eye_y + gaze_y * eh * 0.5
        ri = _ellipse_r(W.X, W.Y, icx, icy, iris_r, iris_r)
        iris_col = iris * (1.25 - 0.55 * np.minimum(ri, 1.0) ** 2)[None]
        _paint(W.canvas, _soft((ri - 1.0) * iris_r, W.pw) * white, iris_col)
        _paint(W.canvas, _soft((ri - 0.45) * iris_r, W.pw) * white, np.float32(0.03))
        hx, hy = icx - iris_r * 0.35 * (lx + 0.3), icy - iris_r * 0.4
        hl = _ellipse(W.X, W.Y, hx, hy, iris_r * 0.22, iris_r * 0.22, W.pw)
        _paint(W.canvas, hl * white * 0.9, np.float32(1.0))
        # upper-lid shadow on the eyeball and the lash line
        lid = white * np.clip((eye_y - eh * 0.45 - W.Y) / (eh * 0.6), 0, 1)
        _paint(W.canvas, lid * 0.45, W.skin(0.45))
        line = _soft(np.abs(d_eye) - 0.006 - 0.25 * W.pw, W.pw)
        line = line * _soft(W.Y - (eye_y + eh * 0.25), W.pw)
        _paint(W.canvas, line * liner, np.float32(0.08))
        lower = _soft(np.abs(d_eye) - 0.003, W.pw) * _soft(eye_y + eh * 0.3 - W.Y, W.pw)
        _paint(W.canvas, lower * 0.3, W.skin(0.6))
    f.eye_h, f.eye_w, f.eye_x, f.eye_y = eye_h, eye_w, eye_x, eye_y


def _brows(d: _Draws, f: SimpleNamespace) -> None:
    """Both brows: arched and tilted, hair-coloured (dark skin-toned on bald heads)."""
    b, eye_h, eye_x, eye_y, hair = f.b, f.eye_h, f.eye_x, f.eye_y, f.hair
    skin, style, yaw_off = f.skin, f.style, f.yaw_off
    brow_gap, brow_w, brow_t = d.u(0.07, 0.12), d.u(0.08, 0.12), d.u(0.014, 0.034)
    arch, tilt = d.u(0.0, 0.04), d.u(-0.25, 0.3)
    brow_col = np.where(style == _BALD, np.float32(0.25) * skin, hair * 0.75)
    for side in (-1.0, 1.0):
        W = b.window(min(side * -0.06, side * 0.43), max(side * -0.06, side * 0.43), -0.43, -0.04)
        bcx = side * (eye_x + 0.01) + yaw_off
        t_b = (W.X - bcx) / brow_w
        yb = eye_y - eye_h - brow_gap - arch * (1.0 - t_b * t_b) - tilt * side * (W.X - bcx)
        thick = brow_t * (1.0 - 0.45 * np.clip(side * t_b, 0, 1))
        brow = _soft(np.abs(W.Y - yb) - thick * 0.5, W.pw) * _soft(np.abs(W.X - bcx) - brow_w, W.pw)
        _paint(W.canvas, brow * 0.9, brow_col)


def _nose(d: _Draws, f: SimpleNamespace) -> None:
    """The nose by its shading: bridge, tip, the shadow under it, alae and nostrils."""
    b, eye_y, lx, yaw_off = f.b, f.eye_y, f.lx, f.yaw_off
    nose_y, nose_w = d.u(0.08, 0.17), d.u(0.05, 0.085)
    ncx = yaw_off * 1.6
    M = b.window(-0.21, 0.21, -0.17, 0.27)
    side_dark = np.where(lx > 0, -1.0, 1.0).astype(np.float32)
    bridge_x = ncx + side_dark * nose_w * 0.55
    bridge = np.clip(1.0 - np.abs(M.X - bridge_x) / 0.03, 0, 1)
    bridge *= _soft(eye_y + 0.02 - M.Y, 0.03) * _soft(M.Y - nose_y, 0.02)
    _paint(M.canvas, bridge * 0.35, M.skin(0.72))
    tip_r = _ellipse_r(M.X, M.Y, ncx - lx * 0.01, nose_y - 0.02, nose_w * 0.55, 0.04)
    tip = np.clip(1.0 - tip_r, 0, 1)
    _paint(M.canvas, tip * 0.5, M.skin(1.12))
    under = np.clip(1.0 - _ellipse_r(M.X, M.Y, ncx, nose_y + 0.035, nose_w * 1.1, 0.028), 0, 1)
    _paint(M.canvas, under * 0.5, M.skin(0.68))
    for side in (-1.0, 1.0):
        r_ala = _ellipse_r(M.X, M.Y, ncx + side * nose_w * 0.72, nose_y, 0.026, 0.032)
        ala = _soft(np.abs(r_ala - 1.0) * 0.026 - 0.003, M.pw)
        _paint(M.canvas, ala * _soft(M.Y - nose_y - 0.02, M.pw) * 0.3, M.skin(0.6))
        nostril = _ellipse(M.X, M.Y, ncx + side * nose_w * 0.42, nose_y + 0.022, 0.02, 0.011, M.pw)
        _paint(M.canvas, nostril * 0.85, M.skin(0.4))
    f.nose_y = nose_y


def _blush(d: _Draws, f: SimpleNamespace) -> None:
    """Blush on some cheeks."""
    b, nose_y, yaw_off = f.b, f.nose_y, f.yaw_off
    blush = d.flag(0.3) * d.u(0.12, 0.3)
    f.drawn["blush"] = blush > 0
    if (blush > 0).any():
        for side in (-1.0, 1.0):
            x0, x1 = min(side * 0.07, side * 0.43), max(side * 0.07, side * 0.43)
            B = b.window(x0, x1, -0.01, 0.29, sel=np.nonzero(blush.reshape(-1) > 0)[0])
            r_spot = _ellipse_r(B.X, B.Y, side * 0.25 + B.p(yaw_off), B.p(nose_y) + 0.02, 0.1, 0.07)
            _paint(B.canvas, np.clip(1.0 - r_spot, 0, 1) ** 2 * B.p(blush), _rgb(0.9, 0.45, 0.45))
            B.commit()


def _beard(d: _Draws, f: SimpleNamespace) -> None:
    """A beard under the mouth on some faces (drawn before the mouth, which sits on it)."""
    a_head, b, b_head, hair, hair_freq = f.a_head, f.b, f.b_head, f.hair, f.hair_freq
    r_head = f.r_head
    beard, beard_len = d.flag(0.18), d.u(0.0, 0.12)
    f.drawn["beard"] = beard
    mouth_y, mouth_w = d.u(0.27, 0.35), d.u(0.095, 0.155)
    if (beard > 0).any():
        sel = np.nonzero(beard.reshape(-1) > 0)[0]
        L = b.window(-0.65, 0.65, -0.4, 0.9, sel=sel)
        beard_field = L.p(hair) * _hair_texture(L.X, L.Y, L.p(hair_freq), np.float32(1.0))[None]
        top = L.p(mouth_y) - 0.08 - 0.4 * (L.X / L.p(a_head)) ** 4
        region = _soft((r_head[sel, L.rows, L.cols] - 1.0 - L.p(beard_len)) * L.p(b_head), L.pw)
        region *= _soft(top - L.Y, L.pw * 2)
        _paint(L.canvas, region * 0.95, beard_field * 0.75)
        L.commit()
    f.beard, f.mouth_w, f.mouth_y = beard, mouth_w, mouth_y


def _mouth(d: _Draws, f: SimpleNamespace) -> None:
    """Lips (smiling or not, some open with teeth, some
    lipstick) and a moustache on bearded faces."""
    b, beard, curly, hair, hair_freq = f.b, f.beard, f.curly, f.hair, f.hair_freq
    mouth_w, mouth_y, skin, yaw_off = f.mouth_w, f.mouth_y, f.skin, f.yaw_off
    smile, open_m = d.u(-0.4, 1.0), d.flag(0.25) * d.u(0.015, 0.05)
    upper_t, lower_t = d.u(0.011, 0.024), d.u(0.016, 0.034)
    lipstick = d.flag(0.2)
    mcx = yaw_off * 1.2

    def mouth_shape(M: _Frame) -> tuple[np.ndarray, ...]:
        """Mouth coordinates in frame M: (t across the
        mouth, lip taper, mid line, opening top/bottom)."""
        tm = (M.X - M.p(mcx)) / M.p(mouth_w)
        taper = np.sqrt(np.clip(1.0 - tm * tm, 0, 1))
        ym = M.p(mouth_y) - M.p(smile) * 0.045 * tm * tm + M.p(smile) * 0.012
        return tm, taper, ym, ym - M.p(open_m) * 0.4 * taper, ym + M.p(open_m) * 0.6 * taper

    M = b.window(-0.28, 0.28, 0.09, 0.51)
    tm, taper, ym, o_up, o_lo = mouth_shape(M)
    inside = _soft(np.abs(M.X - mcx) - mouth_w, M.pw)
    lip_col = skin * _rgb(0.82, 0.55, 0.55) + _rgb(0.1, 0.02, 0.02)
    lip_col = np.where(lipstick > 0, _rgb(0.7, 0.08, 0.15), lip_col)
    upper = inside * _soft(o_up - upper_t * taper - M.Y, M.pw) * _soft(M.Y - o_up, M.pw)
    lower = inside * _soft(M.Y - o_lo - lower_t * taper, M.pw) * _soft(o_lo - M.Y, M.pw)
    _paint(M.canvas, upper, lip_col * 0.88)
    _paint(M.canvas, lower, lip_col * 1.06)
    hollow = inside * _soft(o_up - M.Y, M.pw) * _soft(M.Y - o_lo, M.pw)
    _paint(M.canvas, hollow, _rgb(0.28, 0.06, 0.06))
    teeth = hollow * _soft(M.Y - (o_up + open_m * 0.45), M.pw)
    _paint(M.canvas, teeth, _rgb(0.93, 0.91, 0.86))
    seam = inside * _soft(np.abs(M.Y - ym) - 0.004, M.pw) * (open_m <= 0)
    _paint(M.canvas, seam * 0.8, lip_col * 0.45)
    moustache = np.maximum(beard, d.flag(0.06))
    f.drawn.update(smile=smile, mouth_open=open_m > 0, lipstick=lipstick, moustache=moustache)
    if (moustache > 0).any():
        M = b.window(-0.28, 0.28, 0.09, 0.51, sel=np.nonzero(moustache.reshape(-1) > 0)[0])
        tm, taper, ym, o_up, o_lo = mouth_shape(M)
        hf = M.p(hair) * _hair_texture(M.X, M.Y, M.p(hair_freq), M.p(curly))[None]
        must = _soft(np.abs(M.X - M.p(mcx)) - M.p(mouth_w) * 1.15, M.pw)
        must *= _soft(M.Y - (o_up - M.p(upper_t) * taper * 0.6), M.pw)
        must *= _soft(o_up - 0.055 + 0.02 * tm * tm - M.Y, M.pw)
        _paint(M.canvas, must, hf * 0.8)
        M.commit()


def _top_hair(d: _Draws, f: SimpleNamespace) -> None:
    """Hair on top of the head, with a hairline, temples and a parting."""
    b, b_head, bulk, curly, hair = f.b, f.b_head, f.bulk, f.curly, f.hair
    hair_freq, hc, r_head, style = f.hair_freq, f.hc, f.r_head, f.style
    hairline0 = np.where(style == _FRINGE, d.u(-0.3, -0.18), d.u(-0.44, -0.3)).astype(np.float32)
    temple_k, part = d.u(0.6, 1.8), d.u(-0.25, 0.25)
    if (style != _BALD).any():
        L = b.window(-0.75, 0.75, -1.0, 0.5)
        hf = hair * _hair_texture(L.X, L.Y, hair_freq, curly)[None]
        hl = hc + hairline0 + temple_k * L.X * L.X + part * L.X
        r_l = r_head[:, L.rows, L.cols]
        # short hair hugs the head; other styles keep their bulk
        reach = np.where(style == _SHORT, bulk * 0.4, bulk)
        cap = _soft((r_l - 1.0 - reach) * b_head, L.pw) * _soft(L.Y - hl, L.pw)
        _paint(L.canvas, cap * (style != _BALD), hf)


def _glasses(d: _Draws, f: SimpleNamespace) -> None:
    """Glasses on some faces: frames, tinted lenses (some sunglasses), arms and bridge."""
    a_head, b, eye_w, eye_x, eye_y = f.a_head, f.b, f.eye_w, f.eye_x, f.eye_y
    yaw_off = f.yaw_off
    glasses = d.flag(0.22)
    frame = d.color(_FRAMES)
    g_w, g_h, g_t, g_sq = d.u(1.35, 1.75), d.u(0.65, 0.95), d.u(0.010, 0.022), d.u(0.0, 1.0)
    sun = d.flag(0.12)
    f.drawn.update(glasses=glasses, sunglasses=glasses * sun)
    if (glasses > 0).any():
        G = b.window(-0.6, 0.6, -0.32, 0.18, sel=np.nonzero(glasses.reshape(-1) > 0)[0])
        g_frame, g_thick, g_ex, g_yaw = G.p(frame), G.p(g_t), G.p(eye_x), G.p(yaw_off)
        gw = G.p(eye_w) * G.p(g_w)
        gh = gw * G.p(g_h)
        gy = G.p(eye_y) + 0.005
        sq = G.p(g_sq)
        for side in (-1.0, 1.0):
            gcx = side * g_ex + g_yaw
            u2g, v2g = ((G.X - gcx) / gw) ** 2, ((G.Y - gy) / gh) ** 2
            rg = (1 - sq) * np.sqrt(u2g + v2g) + sq * np.sqrt(np.sqrt(u2g * u2g + v2g * v2g))
            dg = (rg - 1.0) * gh
            lens = _soft(dg, G.pw) * (0.1 + 0.75 * G.p(sun))
            _paint(G.canvas, lens, np.float32(0.05) + g_frame * 0.3)
            _paint(G.canvas, _soft(np.abs(dg) - g_thick * 0.5, G.pw), g_frame)
            arm = _soft(np.abs(G.Y - (gy - gh * 0.45)) - g_thick * 0.4, G.pw)
            outer = _soft(side * (gcx + side * gw - G.X), G.pw)
            arm *= outer * _soft(side * (G.X - side * G.p(a_head) * 1.02), G.pw)
            _paint(G.canvas, arm, g_frame)
        bridge_g = _soft(np.abs(G.Y - (gy - gh * 0.3)) - g_thick * 0.45, G.pw)
        bridge_g *= _soft(np.abs(G.X - g_yaw) - (g_ex - gw), G.pw)
        _paint(G.canvas, bridge_g, g_frame)
        G.commit()


def _light_and_exposure(d: _Draws, f: SimpleNamespace) -> np.ndarray:
    """The scene's light gradient and exposure, then uint8 (N, size, size, 3)."""
    b, lx, ly = f.b, f.lx, f.ly
    gain = d.u(0.85, 1.12)
    out = b.canvas * (gain * (1.0 + 0.08 * (b.x * lx + b.y * ly)) * 255.0)[None]
    np.clip(out, 0.0, 255.0, out=out)
    out += 0.5
    return out.astype(np.uint8).transpose(1, 2, 3, 0).copy()


# Back to front: each feature paints over the ones before it, and draws its numbers in this order.
_FEATURES = (
    _background, _back_hair, _neck_and_clothes, _ears, _head,
    _eyes, _brows, _nose, _blush, _beard,
    _mouth, _top_hair, _glasses,
)


def render_faces(
    uniforms: np.ndarray, size: int, record: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """Draw one face per row of ``uniforms`` (see :func:`face_uniforms`): uint8 (N, size, size, 3).

    ``record``: a dict that receives what was drawn for each face (see :data:`ATTRIBUTES`).
    """
    d = _Draws(uniforms)
    f = _pose_and_colours(d, size)
    for feature in _FEATURES:
        feature(d, f)
    if record is not None:
        record.update({k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in f.drawn.items()})
    return _light_and_exposure(d, f)


#: The largest synthetic face: a 4096 px face renders in about 1 GB of float arrays.
MAX_SIZE = 4096


def _chunk_for(size: int) -> int:
    return max(1, min(64, (1 << 18) // (size * size)))


def generate_faces(
    n: int | None = None,
    size: int = 64,
    seed: int = 0,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    progress: bool = False,
    desc: str = "synthetic faces",
) -> np.ndarray:
    """Faces ``indices`` (default ``range(n)``) of generator
    ``seed`` at ``size`` px: uint8 (N, S, S, 3)."""
    if indices is None:
        if n is None:
            raise UserError("generate_faces needs n or indices")
        indices = np.arange(n)
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if not 8 <= size <= MAX_SIZE:
        raise UserError(f"synthetic face size must be from 8 to {MAX_SIZE} px, got {size}")
    check_seed(seed)
    if (indices < 0).any():
        raise UserError("synthetic face indices must be non-negative")
    out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
    chunk = _chunk_for(size)
    bar = None
    if progress:
        bar = tqdm(total=len(indices), desc=desc, unit="img")
    for start in range(0, len(indices), chunk):
        sel = indices[start : start + chunk]
        out[start : start + len(sel)] = render_faces(face_uniforms(seed, sel), size)
        if bar is not None:
            bar.update(len(sel))
    if bar is not None:
        bar.close()
    return out


#: What :func:`face_attributes` reports for each face: name -> (kind, description). Kind ``class``:
#: a category (names in :data:`ATTRIBUTE_CLASSES`, or 0/1 for yes/no); ``number``: a measurement.
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "glasses": ("class", "wears glasses (1) or not (0); 22% do"),
    "sunglasses": ("class", "dark lenses (1) or not (0); about 3% of faces"),
    "beard": ("class", "a beard (1) or not (0); 18% have one"),
    "moustache": ("class", "a moustache (1, every beard has one) or not (0)"),
    "hair_colour": ("class", "one of 8 colours; a bald face shows it only in a beard or moustache"),
    "hair_style": ("class", "bald, short, fringe, bob, long, curly or bun"),
    "eye_colour": ("class", "iris colour, one of 6 (a few pixels at 64 px)"),
    "skin_tone": ("number", "0 (darkest) .. 5 (lightest), before lighting"),
    "yaw": ("number", "head turn, -1 .. 1 (shifts eyes, nose and mouth sideways)"),
    "roll": ("number", "head tilt in radians, -0.13 .. 0.13"),
    "head_scale": ("number", "head size, 0.8 .. 1.0"),
    "smile": ("number", "mouth curve, -0.4 (frown) .. 1 (smile)"),
    "mouth_open": ("class", "mouth open (1) or closed (0); 25% open"),
    "lipstick": ("class", "red lips (1) or not (0)"),
    "blush": ("class", "rosy cheeks (1) or not (0)"),
}
ATTRIBUTE_CLASSES: dict[str, tuple[str, ...]] = {
    "hair_colour": (
        "black", "dark brown", "brown", "dark blonde", "blonde", "auburn", "grey", "white"
    ),
    "hair_style": ("bald", "short", "fringe", "bob", "long", "curly", "bun"),
    "eye_colour": ("brown", "dark brown", "hazel", "green", "blue", "grey"),
}


def face_attributes(seed: int, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
    """What was drawn for faces ``indices`` of generator
    ``seed``: {name: (N,) array} (see :data:`ATTRIBUTES`).

    Class attributes come as strings (``"blonde"``, or ``"0"``/``"1"``), numbers as floats. Like the
    faces, they are a fixed function of ``(seed, index)``; they are read off a tiny (8 px)
    rendering.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(indices), 256):
        record: dict[str, np.ndarray] = {}
        render_faces(face_uniforms(seed, indices[start : start + 256]), 8, record=record)
        parts.append(record)
    out: dict[str, np.ndarray] = {}
    for name, (kind, _) in ATTRIBUTES.items():
        values = np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)
        if kind == "number":
            out[name] = values.astype(np.float64)
        elif name in ATTRIBUTE_CLASSES:
            classes = np.asarray(ATTRIBUTE_CLASSES[name], dtype=object)
            out[name] = classes[values.astype(int)].astype(str)
        else:
            out[name] = values.astype(int).astype(str)
    return out


def face_grid(images: np.ndarray, cols: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile (N, S, S, 3) uint8 images into one (rows*(S+pad)+pad, ...) uint8 grid."""
    n, s = images.shape[0], images.shape[1]
    rows = -(-n // cols)
    grid = np.full((rows * (s + pad) + pad, cols * (s + pad) + pad, 3), pad_value, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (s + pad), pad + c * (s + pad)
        grid[top : top + s, left : left + s] = images[i]
    return grid


# --- command line ---------------------------------------------------------------------------------


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``python -m mae_utils synth``."""
    parser.add_argument(
        "--out", required=True, help="folder to write PNG files into (created if missing)"
    )
    parser.add_argument("--n", type=int, default=500, help="how many faces (default 500)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")


def run_cli(args: argparse.Namespace) -> int:
    """Write ``args.n`` synthetic faces as ``face_000000.png`` ... into ``args.out``."""
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    if args.size < 8:
        raise UserError(f"--size must be at least 8, got {args.size}")
    if args.size > MAX_SIZE:
        raise UserError(
            f"--size {args.size} is too large: synthetic faces are at most {MAX_SIZE} px (each "
            "is rendered in memory); resize them afterwards if you need more"
        )
    check_seed(args.seed, "--seed")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(args.n - 1)))
    chunk = _chunk_for(args.size)
    with tqdm(total=args.n, desc=f"writing faces to {out}", unit="img") as bar:
        for start in range(0, args.n, chunk):
            idx = np.arange(start, min(start + chunk, args.n))
            imgs = generate_faces(size=args.size, seed=args.seed, indices=idx)
            for i, img in zip(idx, imgs):
                Image.fromarray(img).save(out / f"face_{i:0{width}d}.png")
            bar.update(len(idx))
    print(f"wrote {args.n} faces ({args.size}x{args.size}, seed {args.seed}) to {out}")
    return 0
