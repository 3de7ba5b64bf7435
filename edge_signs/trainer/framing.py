"""Framing a SIGNS photo on its hand, from the hand's mask (segment.py): training augmentation only.

SIGNS shows a hand and forearm in the upper middle of a plain wall, and the more fingers, the more of the
frame they cover: a 1's mask 0.25, a 5's 0.40 (medians of the 180 training photos of each; segment.py).
Strangers' hands at a wall (sld-dev) cover 0.39-0.46 whatever the sign, so to a model that learnt the
size as a cue each of them is a 4 or a 5. ``resize_hand`` takes that cue away: the hand is brought
nearer, to a size drawn the same way for every sign. ``close_up`` frames the hand so that it fills the
frame, as a webcam crop does.
"""

from __future__ import annotations

from edge_signs.trainer import keras, tf

# A close-up's square side, as a multiple of the hand's larger side: from filling the frame to a little room around it.
CLOSE_UP_MARGIN = (1.05, 1.45)
# resize_hand: the share of the frame the hand and forearm cover afterwards, drawn alike whatever the sign: SIGNS' 1s
# cover 0.25 (the median), its 5s 0.40, strangers' hands at a wall 0.39-0.46. It chooses among this many views.
HAND_AREA = (0.3, 0.5)
RESIZE_STEPS = 13
# The hand is the top of its mask (SIGNS' forearm comes in from below, and more so once turned upright): this share of
# the mask's height from its top. A mask of less than MIN or more than MAX of the frame is not trusted.
HAND_SHARE_OF_MASK = 0.6
MIN_AREA, MAX_AREA = 0.02, 0.9


def close_up(images, chosen, margin):
    """The chosen images (B, H, W, C; the last channel the hand's mask) framed on the hand: a square ``margin`` times
    its larger side, centred on it, the wrist cut by the bottom edge. Strangers and webcams show a hand that fills the
    frame, where SIGNS' hand and forearm fill a quarter of it. Images with no trusted mask, or not chosen, stay as they are.
    """
    w = tf.cast(tf.shape(images)[2], tf.float32)
    box = _hand_box(images[..., -1])
    side = tf.clip_by_value(box["side"] * margin, 0.25 * w, w)
    return _frame_on(images, chosen & box["trusted"], box["x"], box["y"], side)


def resize_hand(images, chosen, area):
    """The chosen images (as ``close_up``'s) framed on the hand, nearer, so that the hand and forearm cover about
    ``area`` of the frame: of the squares from 0.4 to 1 times the frame's side, centred on the hand, the one whose
    share of mask is nearest. A photo never zooms out (that would smear its edges), so a hand already larger than
    ``area`` stays as large. Others stay as they are."""
    w = tf.cast(tf.shape(images)[2], tf.float32)
    box = _hand_box(images[..., -1])
    sides = w * tf.linspace(0.4, 1.0, RESIZE_STEPS)  # (S,)
    # Centred on the hand, but never above its top: a 1 whose finger left the frame would be a fist.
    centre_y = tf.minimum(box["y"][:, None], box["top"][:, None] - 2 + sides[None, :] / 2)  # (B, S)
    shares = _mask_share_in_squares(images[..., -1], box["x"], centre_y, sides)  # (B, S)
    best = tf.argmin(tf.abs(shares - area[:, None]), axis=1)
    return _frame_on(images, chosen & box["trusted"], box["x"], tf.gather(centre_y, best, batch_dims=1), tf.gather(sides, best))


def _mask_share_in_squares(masks, centre_x, centre_y, sides):
    """The share of each square (centre_x per image, centre_y per image and side) that the mask covers, (B, H, W) -> (B, S),
    from the mask's summed-area table; what lies outside the photo counts as no mask."""
    h, w = tf.shape(masks)[1], tf.shape(masks)[2]
    table = tf.pad(tf.cumsum(tf.cumsum(tf.cast(masks > 0.5, tf.float32), axis=1), axis=2), [[0, 0], [1, 0], [1, 0]])

    def corner(ys, xs):
        ys = tf.clip_by_value(tf.cast(tf.round(ys), tf.int32), 0, h)
        xs = tf.clip_by_value(tf.cast(tf.round(xs), tf.int32), 0, w)
        return tf.gather_nd(table, tf.stack([tf.broadcast_to(tf.range(tf.shape(masks)[0])[:, None], tf.shape(ys)), ys, xs], -1))

    half = sides[None, :] / 2
    y0, y1 = centre_y + 0.5 - half, centre_y + 0.5 + half
    x0, x1 = centre_x[:, None] + 0.5 - half, centre_x[:, None] + 0.5 + half
    inside = corner(y1, x1) - corner(y0, x1) - corner(y1, x0) + corner(y0, x0)
    return inside / tf.square(sides)[None, :]


def _hand_box(masks):
    """Each mask's hand (B, H, W) -> its centre, larger side and top (pixels), and whether the mask is trusted."""
    size_y, size_x = tf.shape(masks)[1], tf.shape(masks)[2]
    h, w = tf.cast(size_y, tf.float32), tf.cast(size_x, tf.float32)
    mask = tf.cast(masks > 0.5, tf.float32)
    rows = tf.reduce_max(mask, axis=2) > 0  # (B, H): rows the mask reaches
    top = tf.cast(tf.argmax(tf.cast(rows, tf.int32), axis=1), tf.float32)
    bottom = h - 1 - tf.cast(tf.argmax(tf.cast(tf.reverse(rows, [1]), tf.int32), axis=1), tf.float32)
    band_end = top + HAND_SHARE_OF_MASK * (bottom - top + 1)
    y = tf.cast(tf.range(size_y), tf.float32)
    hand = mask * tf.cast(y[None, :, None] < band_end[:, None, None], tf.float32)
    cols = tf.reduce_max(hand, axis=1) > 0  # (B, W)
    left = tf.cast(tf.argmax(tf.cast(cols, tf.int32), axis=1), tf.float32)
    right = w - 1 - tf.cast(tf.argmax(tf.cast(tf.reverse(cols, [1]), tf.int32), axis=1), tf.float32)
    area = tf.reduce_sum(mask, axis=[1, 2]) / (h * w)
    return {"x": (left + right) / 2, "y": (top + band_end) / 2, "side": tf.maximum(right - left + 1, band_end - top),
            "top": top, "trusted": (area > MIN_AREA) & (area < MAX_AREA)}


def _frame_on(images, chosen, centre_x, centre_y, side):
    """The chosen images' view: a square of ``side`` pixels centred on (centre_x, centre_y), stretched to the frame;
    edge pixels fill what lies outside the photo."""
    h, w = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
    k = side / w
    # Output pixel (x, y) reads the input at (k x + x0, k y + y0): the square's corner pixel to the output's.
    x0, y0 = centre_x - (w - 1) / 2 * k, centre_y - (h - 1) / 2 * k
    zeros, ones = tf.zeros_like(k), tf.ones_like(k)
    view = tf.stack([k, zeros, x0, zeros, k, y0, zeros, zeros], axis=1)
    identity = tf.stack([ones, zeros, zeros, zeros, ones, zeros, zeros, zeros], axis=1)
    transform = tf.where(chosen[:, None], view, identity)
    return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest")
