"""Deterministic synthetic knee MRI volumes and chest radiographs.

No public dataset can be downloaded where this library is tested, yet every
model needs data with the structure of the real thing.  The phantoms are
analytic: every structure is an implicit shape evaluated on the voxel grid,
so a case of any size is generated in milliseconds and is fully determined by
its seed.

Knee (:func:`knee_phantom`): a sagittal PD-like volume ``(slices, rows, cols)``
(slices medial-lateral, rows superior-inferior, columns anterior-posterior)
with femur, tibia and patella, femoral/tibial/patellar cartilage as curved
shells of varying thickness, medial and lateral menisci as wedge-shaped rings,
Rician-like noise, a smooth bias field, random anatomy pose and size and
anisotropic spacing; a mask with :data:`KNEE_CLASSES`; a meniscus-tear label
(tears are thin bright clefts through a meniscus).

Chest (:func:`chest_xray_phantom`): a frontal radiograph with body, lungs with
vascular markings, heart, mediastinum, ribs and diaphragm, and any subset of
the 14 ChestX-ray14 findings (:data:`CHEST_LABELS`) drawn as their visual
patterns, with realistic prevalences by default.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..errors import ConfigError

__all__ = ["KNEE_CLASSES", "CHEST_LABELS", "CHEST_PREVALENCE", "KneeCase", "ChestCase", "knee_phantom",
           "chest_xray_phantom", "sample_chest_labels"]

KNEE_CLASSES = ("background", "femoral_cartilage", "tibial_cartilage", "patellar_cartilage", "meniscus")

#: The 14 findings in ChestX-ray14's order.
CHEST_LABELS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")

#: Approximate label prevalences in ChestX-ray14 (fraction of all images).
CHEST_PREVALENCE = dict(zip(CHEST_LABELS, (0.103, 0.025, 0.119, 0.177, 0.052, 0.056, 0.013, 0.047, 0.042,
                                           0.021, 0.022, 0.015, 0.030, 0.002)))


@dataclass
class KneeCase:
    """One knee phantom: image, mask (uint8, :data:`KNEE_CLASSES`), RAS affine and labels.

    ``bones`` labels the bones (0 none, 1 femur, 2 tibia, 3 patella) for layouts
    such as OAI-ZIB that segment bone too.
    """

    image: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    tear: int
    seed: int
    info: dict = field(default_factory=dict)
    bones: np.ndarray | None = None


@dataclass
class ChestCase:
    """One chest radiograph phantom: image (uint16 or uint8), labels (14 x 0/1), pixel spacing."""

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float]
    seed: int
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------ knee ---

def _rot(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def knee_phantom(seed: int, shape: tuple[int, int, int] = (24, 96, 96),
                 spacing: tuple[float, float, float] | None = None, tear: int | None = None,
                 oblique: bool | None = None, noise: float = 0.04) -> KneeCase:
    """Generate one knee MRI phantom.

    Parameters
    ----------
    seed : int
        Everything (anatomy, pose, noise, tear) follows from it.
    shape : (slices, rows, cols)
        Voxel grid; slices run medial-lateral (sagittal acquisition).
    spacing : (3,) floats, optional
        Voxel spacing in mm; default anisotropic, ~(4.0, 1.25, 1.25) mm scaled to
        cover a ~120 mm field of view whatever ``shape`` is.
    tear : {0, 1}, optional
        Force the meniscus-tear label; random (about 50 %) by default.
    oblique : bool, optional
        Rotate the acquisition in the affine (as oblique scan planes are);
        random (one case in three) by default.
    noise : float
        Noise level relative to the brightest tissue.

    Returns
    -------
    KneeCase
    """
    if len(shape) != 3 or min(shape) < 8:
        raise ConfigError(f"knee phantom shape must be 3 sizes >= 8, got {shape}")
    rng = np.random.default_rng(seed)
    ns, nr, nc = shape
    if spacing is None:
        spacing = (min(4.0, 100.0 / ns), 120.0 / nr, 120.0 / nc)
    sp = np.asarray(spacing, dtype=np.float64)
    if np.any(sp <= 0):
        raise ConfigError(f"spacing must be positive, got {spacing}")
    # voxel centres in mm, centred on the grid; x medial-lateral, y superior(-)/inferior(+), z anterior-posterior
    xs = (np.arange(ns) - (ns - 1) / 2) * sp[0]
    ys = (np.arange(nr) - (nr - 1) / 2) * sp[1]
    zs = (np.arange(nc) - (nc - 1) / 2) * sp[2]
    X, Y, Z = np.meshgrid(xs, ys, zs, indexing="ij")
    # random anatomical pose inside the field of view (small rotation, shift, size)
    scale = rng.uniform(0.85, 1.15)
    R = _rot(*rng.uniform(-0.12, 0.12, 3))
    shift = rng.uniform(-6, 6, 3)
    P = np.stack([X, Y, Z], -1).reshape(-1, 3) @ R.T - shift
    x, y, z = (P[:, i].reshape(shape) / scale for i in range(3))
    half_width = min(40.0, ns * sp[0] / 2 / scale * 0.9)

    # femur: condyles (an elliptic cylinder along x) + shaft going superior (negative y)
    fa, fb = 24.0 * rng.uniform(0.95, 1.05), 20.0 * rng.uniform(0.95, 1.05)   # z and y semi-axes
    fy0 = -14.0
    r_fem = np.sqrt((z / fa) ** 2 + ((y - fy0) / fb) ** 2)
    in_x = np.abs(x) < half_width
    femur = in_x & ((r_fem < 1) | ((y < fy0) & (np.abs(z + 2) < 15)))
    theta = np.arctan2(z, y - fy0)
    t_fem = (2.4 + 0.8 * np.sin(2 * theta + rng.uniform(0, np.pi))) / fb
    fem_cart = in_x & (r_fem >= 1) & (r_fem < 1 + t_fem) & (y > fy0 - 4) & ~femur
    # tibia: plateau below the joint space, shaft going inferior
    joint = fy0 + fb + 2.4 + 1.5          # bottom of femoral cartilage + joint space
    t_tib = 2.0 + 0.6 * np.cos(z / 9.0 + rng.uniform(0, np.pi))
    plateau = joint + t_tib
    tib_w = 27.0 * rng.uniform(0.95, 1.05)
    tibia = in_x & (y >= plateau) & (np.abs(z) < tib_w - np.clip((y - plateau) * 0.35, 0, 10))
    tib_cart = in_x & (y >= joint) & (y < plateau) & (np.abs(z) < tib_w - 3)
    # patella: ellipsoid anterior (negative z) to the femur, cartilage on its posterior face
    pc = np.array([0.0, fy0 - 6, -fa - 9.0])
    pa = np.array([min(18.0, half_width), 16.0, 6.0])
    r_pat = np.sqrt(((x - pc[0]) / pa[0]) ** 2 + ((y - pc[1]) / pa[1]) ** 2 + ((z - pc[2]) / pa[2]) ** 2)
    patella = r_pat < 1
    pat_cart = (r_pat >= 1) & (r_pat < 1.38) & (z > pc[2]) & ~fem_cart & ~femur
    # menisci: wedge-shaped rings around each compartment's centre, in the joint space
    meniscus = np.zeros(shape, bool)
    cleft = np.zeros(shape, bool)
    has_tear = int(rng.random() < 0.5) if tear is None else int(bool(tear))
    comps = [(-half_width / 2, "medial"), (half_width / 2, "lateral")]
    torn = comps[rng.integers(0, 2)][1] if has_tear else None
    for cx, name in comps:
        rr = np.sqrt(((x - cx) / (half_width / 2)) ** 2 + (z / (tib_w - 2)) ** 2)
        height = np.clip((rr - 0.55) / 0.4, 0, 1) * 5.0       # thick at the rim, thin inside
        wedge = (rr < 1.0) & (rr > 0.55) & (y < joint + 0.5) & (y > joint - height) & in_x
        meniscus |= wedge
        if torn == name:
            # a thin planar cleft through the meniscus (horizontal or oblique tear)
            nrm = rng.normal(size=3)
            nrm[1] += 2.0
            nrm /= np.linalg.norm(nrm)
            point = np.array([cx, joint - 1.5, rng.uniform(-0.7, 0.7) * (tib_w - 2)])
            d = (x - point[0]) * nrm[0] + (y - point[1]) * nrm[1] + (z - point[2]) * nrm[2]
            cleft |= wedge & (np.abs(d) < 0.55 + 0.25 * rng.random())
    meniscus &= ~fem_cart & ~tib_cart & ~femur & ~tibia

    mask = np.zeros(shape, np.uint8)
    mask[fem_cart] = 1
    mask[tib_cart] = 2
    mask[pat_cart] = 3
    mask[meniscus] = 4
    # proton-density-like contrast
    leg = (np.abs(x) < half_width + 8) & (np.sqrt((z / 55.0) ** 2) < 1)
    img = np.where(leg, 0.38, 0.0)
    img = np.where(femur | tibia | patella, 0.62, img)                  # fatty marrow
    cortex = (femur & ~ndi.binary_erosion(femur, iterations=1)) | (tibia & ~ndi.binary_erosion(tibia, iterations=1))
    img = np.where(cortex, 0.08, img)
    img = np.where(mask == 1, 0.85, img)
    img = np.where(mask == 2, 0.85, img)
    img = np.where(mask == 3, 0.82, img)
    img = np.where(mask == 4, 0.10, img)                                 # menisci are dark
    img = np.where(cleft & meniscus, 0.95, img)                          # fluid in the tear
    img = img + rng.uniform(-0.03, 0.03) * np.sin(X / 7 + Z / 11)       # soft texture
    # bias field: smooth multiplicative gradient
    g = rng.normal(size=3) * 0.004
    bias = np.exp(g[0] * X + g[1] * Y + g[2] * Z)
    img = img * bias
    n1, n2 = rng.normal(0, noise, shape), rng.normal(0, noise, shape)
    img = np.sqrt((img + n1) ** 2 + n2 ** 2)                           # Rician-like
    image = np.clip(img * 2000, 0, 32767).astype(np.int16)
    # affine: sagittal acquisition; array (slice, row, col) -> RAS
    axes = np.array([[1.0, 0, 0], [0, 0, -1], [0, -1, 0]]).T   # slice->R, row->-S (down), col->-A (posterior)
    oblique = bool(rng.random() < 1 / 3) if oblique is None else bool(oblique)
    A = axes @ np.diag(sp)
    if oblique:
        A = _rot(*rng.uniform(-0.25, 0.25, 3)) @ A
    aff = np.eye(4)
    aff[:3, :3] = A
    aff[:3, 3] = -A @ ((np.asarray(shape) - 1) / 2)
    bones = np.zeros(shape, np.uint8)
    bones[femur] = 1
    bones[tibia] = 2
    bones[patella] = 3
    return KneeCase(image, mask, aff, has_tear, seed,
                    info={"oblique": oblique, "torn_compartment": torn, "scale": scale,
                          "tear_voxels": int(np.count_nonzero(cleft & meniscus))}, bones=bones)


# ----------------------------------------------------------------- chest ---

def sample_chest_labels(rng: np.random.Generator, prevalence: dict[str, float] | float | None = None) -> np.ndarray:
    """Draw a 14-label 0/1 vector: per-label prevalences (dict), one rate for all (float) or ChestX-ray14's."""
    if prevalence is None:
        p = np.array([CHEST_PREVALENCE[k] for k in CHEST_LABELS])
    elif isinstance(prevalence, dict):
        unknown = set(prevalence) - set(CHEST_LABELS)
        if unknown:
            raise ConfigError(f"unknown chest labels {sorted(unknown)}; expected names from {CHEST_LABELS}")
        p = np.array([prevalence.get(k, CHEST_PREVALENCE[k]) for k in CHEST_LABELS])
    else:
        p = np.full(len(CHEST_LABELS), float(prevalence))
    if np.any((p < 0) | (p > 1)):
        raise ConfigError("prevalences must be in [0, 1]")
    return (rng.random(len(CHEST_LABELS)) < p).astype(np.uint8)


def _ellipse(Y, X, cy, cx, ry, rx, ang=0.0):
    c, s = np.cos(ang), np.sin(ang)
    u = ((X - cx) * c + (Y - cy) * s) / rx
    v = (-(X - cx) * s + (Y - cy) * c) / ry
    return u * u + v * v


def _smooth_noise(rng, shape, sigma):
    return ndi.gaussian_filter(rng.normal(size=shape), sigma)


def chest_xray_phantom(seed: int, size: int = 256, labels=None, prevalence=None,
                       bits: int = 16) -> ChestCase:
    """Generate one frontal chest radiograph phantom.

    Parameters
    ----------
    seed : int
    size : int
        Image is ``size x size`` pixels covering ~430 mm (pixel spacing follows).
    labels : sequence of 14 ints or names, optional
        Findings to draw; drawn from ``prevalence`` when omitted.
    prevalence : dict, float or None
        See :func:`sample_chest_labels`.
    bits : {8, 16}
        Output ``uint8`` or ``uint16`` (12-bit range, as detectors store).

    Returns
    -------
    ChestCase
    """
    if size < 64:
        raise ConfigError(f"chest phantom size must be >= 64, got {size}")
    if bits not in (8, 16):
        raise ConfigError(f"bits must be 8 or 16, got {bits}")
    # independent streams, so a case with and without a finding share anatomy and noise
    rng = np.random.default_rng([seed, 0])
    frng = np.random.default_rng([seed, 1])
    nrng = np.random.default_rng([seed, 2])
    if labels is None:
        lab = sample_chest_labels(np.random.default_rng([seed, 3]), prevalence)
    elif all(isinstance(v, str) for v in labels):
        unknown = set(labels) - set(CHEST_LABELS)
        if unknown:
            raise ConfigError(f"unknown chest labels {sorted(unknown)}")
        lab = np.array([int(k in labels) for k in CHEST_LABELS], np.uint8)
    else:
        lab = np.asarray(labels, np.uint8)
        if lab.shape != (14,):
            raise ConfigError(f"labels must have 14 entries, got {lab.shape}")
    on = dict(zip(CHEST_LABELS, lab.astype(bool)))
    n = size
    Y, X = np.mgrid[0:n, 0:n].astype(np.float64) / n          # unit square, y down
    # attenuation map: higher = brighter on the radiograph
    body = _ellipse(Y, X, 0.55, 0.5, 0.55, 0.44) < 1
    att = np.where(body, 0.55, 0.05)
    emph = on["Emphysema"]
    lung_ry = 0.30 * (1.12 if emph else 1.0) * rng.uniform(0.95, 1.05)
    lung_rx = 0.15 * rng.uniform(0.95, 1.05)
    cy = 0.45 + rng.uniform(-0.02, 0.02)
    dome = 0.08 if not emph else 0.02                          # flattened diaphragm in emphysema
    lungs = np.zeros((n, n), bool)
    lung_side = []
    for side, cx in (("right", 0.30), ("left", 0.70)):          # patient's right on image left
        cx = cx + rng.uniform(-0.015, 0.015)
        e = _ellipse(Y, X, cy, cx, lung_ry, lung_rx, ang=0.08 if side == "right" else -0.08)
        base = cy + lung_ry * 0.85 - dome * (1 - ((X - cx) / lung_rx) ** 2)
        lung = (e < 1) & (Y < base)
        lungs |= lung
        lung_side.append((side, cx, lung))
    att = np.where(lungs, 0.16 if not emph else 0.10, att)
    # vascular markings in the lungs (needed so that pneumothorax is visible as their absence)
    vessels = np.clip(_smooth_noise(rng, (n, n), n / 128) * 3, 0, None) * 0.08
    markings = np.where(lungs, vessels, 0.0)
    # mediastinum + spine
    att = np.where((np.abs(X - 0.5) < 0.06) & body, np.maximum(att, 0.7), att)
    # heart
    heart_scale = 1.38 if on["Cardiomegaly"] else rng.uniform(0.95, 1.05)
    heart = _ellipse(Y, X, cy + 0.15, 0.54, 0.12, 0.11 * heart_scale, ang=-0.4) < 1
    att = np.where(heart, np.maximum(att, 0.68), att)
    # ribs: bright curved bands across each hemithorax
    ribs = np.zeros((n, n))
    for k in range(9):
        yk = cy - lung_ry * 0.95 + k * (2 * lung_ry / 9) + rng.uniform(-0.005, 0.005)
        curve = yk + 0.06 * np.cos((X - 0.5) * np.pi * 1.6)
        ribs += np.exp(-((Y - curve) / 0.006) ** 2)
    att = att + np.where(body, ribs * 0.12, 0)
    att = att + markings

    def blob(cy_, cx_, r, strength, soft=0.3):
        d = np.sqrt((Y - cy_) ** 2 + (X - cx_) ** 2) / r
        return strength / (1 + np.exp(np.clip((d - 1) / soft * 4, -50, 50)))

    def in_lung(rng_, side=None):
        choices = [l for l in lung_side if side is None or l[0] == side]
        _s, _cx, lung = choices[rng_.integers(0, len(choices))]
        ys, xs = np.nonzero(lung)
        i = rng_.integers(0, len(ys))
        return ys[i] / n, xs[i] / n, lung

    extra = np.zeros((n, n))
    if on["Atelectasis"]:  # plate-like linear opacity in a lower zone
        y0, x0, lung = in_lung(frng)
        yy = cy + lung_ry * frng.uniform(0.3, 0.6)
        band = np.exp(-((Y - yy - 0.05 * (X - x0)) / 0.012) ** 2) * lung
        extra += 0.25 * band
    if on["Effusion"]:  # basal opacity with a meniscus-shaped upper border, blunted angle
        side, cxs, lung = lung_side[frng.integers(0, 2)]
        level = cy + lung_ry * frng.uniform(0.35, 0.6)
        menisc = level - 0.05 * ((X - cxs) / lung_rx) ** 2
        extra += np.where(lung & (Y > menisc), 0.38, 0) + np.where(body & (Y > menisc) & (np.abs(X - cxs) < lung_rx * 1.1)
                                                                   & (Y < cy + lung_ry), 0.05, 0)
    if on["Infiltration"]:  # patchy irregular opacities
        y0, x0, lung = in_lung(frng)
        patch = (_smooth_noise(frng, (n, n), n / 40) > 0.01) & (np.hypot(Y - y0, X - x0) < 0.12) & lung
        extra += 0.18 * ndi.gaussian_filter(patch.astype(float), n / 128)
    if on["Mass"]:
        y0, x0, _ = in_lung(frng)
        extra += blob(y0, x0, frng.uniform(0.05, 0.08), 0.45, soft=0.15)
    if on["Nodule"]:
        for _ in range(frng.integers(1, 3)):
            y0, x0, _ = in_lung(frng)
            extra += blob(y0, x0, frng.uniform(0.012, 0.025), 0.4, soft=0.15)
    if on["Pneumonia"]:  # fuzzy lobar opacity
        y0, x0, lung = in_lung(frng)
        extra += lung * blob(y0, x0, 0.11, 0.3, soft=0.6) * (1 + 0.5 * _smooth_noise(frng, (n, n), n / 30))
    if on["Consolidation"]:  # dense homogeneous opacity with air bronchograms
        y0, x0, lung = in_lung(frng)
        region = lung * blob(y0, x0, 0.09, 1.0, soft=0.2)
        bronch = np.abs(np.sin((X - x0) * 90 + (Y - y0) * 40)) < 0.12
        extra += 0.42 * region * np.where(bronch, 0.35, 1.0)
    if on["Edema"]:  # bilateral perihilar haze + Kerley B lines
        haze = np.exp(-(((X - 0.5) / 0.2) ** 2 + ((Y - cy) / 0.18) ** 2))
        kerley = (np.abs(np.sin(Y * n / 3.0)) < 0.15) & (np.abs(np.abs(X - 0.5) - 0.27) < 0.04) & (Y > cy)
        extra += lungs * (0.22 * haze + 0.12 * kerley)
    if on["Fibrosis"]:  # peripheral reticular net
        net = (np.abs(np.sin(X * n / 4.0)) < 0.18) | (np.abs(np.sin(Y * n / 4.5)) < 0.18)
        periph = np.clip((np.abs(X - 0.5) - 0.15) / 0.15, 0, 1)
        extra += lungs * net * periph * 0.14
    if on["Pleural_Thickening"]:  # bright band along a lateral lung border
        side, cxs, lung = lung_side[frng.integers(0, 2)]
        edge = lung & ~ndi.binary_erosion(lung, iterations=max(2, n // 60))
        lateral = (X < 0.5) if side == "right" else (X > 0.5)
        extra += 0.3 * (edge & lateral)
    if on["Hernia"]:  # retrocardiac gas bubble with an air-fluid level
        hy, hx = cy + 0.22, 0.5 + frng.uniform(-0.04, 0.04)
        bubble = _ellipse(Y, X, hy, hx, 0.045, 0.06) < 1
        extra += np.where(bubble & (Y < hy), -0.35, 0) + np.where(bubble & (Y >= hy), 0.15, 0)
    att = att + extra
    if on["Pneumothorax"]:  # lung collapsed from the apex/lateral edge: no markings, dark, visible pleural line
        side, cxs, lung = lung_side[frng.integers(0, 2)]
        sign = -1 if side == "right" else 1
        rim = _ellipse(Y, X, cy - 0.03, cxs - sign * 0.02, lung_ry * 0.82, lung_rx * 0.72) >= 1
        ptx = lung & rim
        att = np.where(ptx, 0.07, att)
        line = ptx & ~ndi.binary_erosion(ptx, iterations=2) & ~(lung & ~ndi.binary_erosion(lung, iterations=2))
        att = att + 0.12 * line
    att = ndi.gaussian_filter(att, n / 400)
    att = att + nrng.normal(0, 0.015, (n, n))                  # quantum noise
    att = att * nrng.uniform(0.9, 1.1) + nrng.uniform(-0.03, 0.03)
    img = np.clip(att, 0, 1)
    out = (img * 4095).astype(np.uint16) if bits == 16 else (img * 255).astype(np.uint8)
    spacing = (430.0 / n, 430.0 / n)
    return ChestCase(out, lab, spacing, seed, info={"labels": [k for k in CHEST_LABELS if on[k]]})
