"""Training augmentation, as TensorFlow ops inside tf.data, set by the recipe.

It only changes what training sees: the camera, evaluation and calibration feed
the model through edge_signs/preprocess.py and never pass through here.
"""

from __future__ import annotations

import math

from edge_signs import config
from edge_signs.config import Recipe
from edge_signs.trainer import keras, tf
from edge_signs.trainer.framing import CLOSE_UP_MARGIN, HAND_AREA, close_up, resize_hand


def augmenter(seed: int, recipe: Recipe, ramp: AugmentationRamp | None = None):
    """Augmentation for float images in [0, 1], batched (B, 64, 64, C) -> (B, 64, 64, 3), with their one-hot labels (B, 6).

    C = 4 where the recipe needs the hand (``Recipe.needs_masks``): the 4th channel is its mask (segment.py).

    Always: mirrored hands, a hand off-centre, tilted, nearer or farther (the recipe's
    ranges; ``upright``: that share also turned from its own lean to upright; ``close_up`` and
    ``hand_size``: that share framed on the hand, framing.py), and on about
    half of the images other light, white balance, contrast, sensor noise and defocus. Each
    of the recipe's further switches adds one step: ``hand_surface`` (a 0-3's hand takes its surface from
    another training image's hand), ``hand_tone`` (the hand alone lighter or
    darker, and tinted), ``background_swap`` (the wall is replaced by a random colour field),
    ``hue`` (skin tone and tint), ``grayscale``, ``vignette`` (lens shading) and ``erase`` (a
    random patch covered). Labels are untouched.

    ``ramp`` (the recipe's ``augment_ramp`` and ``augment_cooldown``): its strength, read at each batch, scales every
    switch's share, the tilt and the colour ranges; the mirror, shift and zoom stay as they are.
    """
    gen = tf.random.Generator.from_seed(seed + 4)
    strength = 1.0 if ramp is None else ramp.strength
    geometry = _geometry(seed, recipe, None if ramp is None else ramp.strength)
    photometric = _photometric(gen)

    def augment(images, labels):
        images = geometry(images, training=True)
        if recipe.hand_surface > 0:
            takes = tf.reduce_any(tf.equal(tf.argmax(labels, axis=-1)[:, None], SIGNS_SHOWING_THE_BACK), axis=1)
            images = hand_surface(gen, images, recipe.hand_surface * strength, takes)
        if recipe.hand_tone > 0:
            images = hand_tone(gen, images, recipe.hand_tone * strength)
        if recipe.background_swap > 0:
            images = swap_background(gen, images, recipe.background_swap * strength)
        images = images[..., :3]  # the mask, where it rode along, has done its work
        # Half of the images keep their colours: the camera is often fine, and clean
        # images keep learning fast.
        keep = gen.uniform((tf.shape(images)[0], 1, 1, 1)) < 1.0 - 0.5 * strength
        images = tf.where(keep, images, photometric(images))
        if recipe.hue > 0:
            images = _shift_hue(gen, tf.clip_by_value(images, 0.0, 1.0), recipe.hue * strength, 0.4 * strength)
        if recipe.grayscale > 0:
            images = _grayscale(gen, images, recipe.grayscale * strength)
        if recipe.vignette > 0:
            images = _vignette(gen, images, recipe.vignette * strength)
        if recipe.erase > 0:
            images = _erase(gen, images, recipe.erase * strength)
        return tf.clip_by_value(images, 0.0, 1.0), labels

    return augment


class AugmentationRamp(keras.callbacks.Callback):
    """Augmentation that grows from none at the first epoch to full after ``epochs`` (progressive learning),
    and, with ``cooldown`` epochs, falls again over the last of them to ``floor``.

    Heavy augmentation from the first step holds a network from scratch near chance for its first epochs
    (the default recipe on SIGNS: 0.2-0.3 training accuracy after four epochs, 0.95 without augmentation); easy
    images first let it learn the signs, and the harder ones then teach it other walls, light and framing.
    The cool-down, lighter batches at the end (as detectors stop their mosaic for the last epochs), is meant to let
    the weights settle on images nearer the ones they are scored on; on the default it lost strangers' hands and
    gained nothing on SIGNS (docs/training.md, "Fifteen minutes"), so it is off there.
    The strength is a variable the tf.data augmentation reads, set at each epoch's start, so a resumed run goes on
    where it was.
    """

    def __init__(self, epochs: int, *, total_epochs: int = 0, cooldown: int = 0, floor: float = 1.0):
        super().__init__()
        self.epochs, self.total_epochs, self.cooldown, self.floor = epochs, total_epochs, cooldown, floor
        # The last epoch's strength until an epoch begins: Keras makes the first batch after on_epoch_begin, and what
        # runs without fitting (batch-norm statistics of a resumed run whose epochs were all done) sees the batches
        # the model ended on.
        self.strength = tf.Variable(self.final_strength, trainable=False, dtype=tf.float32, name="augment_strength")

    def strength_at(self, epoch: int) -> float:
        grown = min(1.0, epoch / self.epochs) if self.epochs > 0 else 1.0
        left = self.total_epochs - epoch  # this epoch and those after it
        if self.cooldown <= 0 or left > self.cooldown:
            return grown
        return min(grown, self.floor + (1.0 - self.floor) * (left - 1) / self.cooldown)

    @property
    def final_strength(self) -> float:
        return self.strength_at(self.total_epochs - 1) if self.cooldown > 0 else 1.0

    def on_epoch_begin(self, epoch, logs=None):
        self.strength.assign(self.strength_at(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # the callbacks after this one (the checkpoint's history.json) see the epoch's strength
            logs["augment_strength"] = float(self.strength.numpy())

    def on_train_end(self, logs=None):
        self.strength.assign(self.final_strength)  # what follows training (batch-norm statistics) sees the last epoch's batches


def augmentation_ramp(recipe: Recipe) -> AugmentationRamp | None:
    """The ramp of a recipe with ``augment_ramp`` or ``augment_cooldown`` (shares of the epochs, at least one each), else None."""
    if not recipe.augment or (recipe.augment_ramp <= 0 and recipe.augment_cooldown <= 0):
        return None
    grow = max(1, round(recipe.augment_ramp * recipe.epochs)) if recipe.augment_ramp > 0 else 0
    cooldown = max(1, round(recipe.augment_cooldown * recipe.epochs)) if recipe.augment_cooldown > 0 else 0
    return AugmentationRamp(grow, total_epochs=recipe.epochs, cooldown=cooldown, floor=recipe.cooldown_strength)


# A turn to upright is only trusted for a hand that leans at most this far: a fist or an O seen from the side
# has no long axis to speak of, and a mask that is all ones (no wall found) none at all.
MAX_LEAN_DEGREES = 45.0


def _geometry(seed: int, recipe: Recipe, strength=None):
    """``strength`` (a variable, None where nothing ramps) scales the tilt and the shares turned upright, framed close and rescaled."""
    flip = [keras.layers.RandomFlip("horizontal", seed=seed)]
    shift_zoom = [
        keras.layers.RandomTranslation(recipe.shift, recipe.shift, fill_mode="nearest", seed=seed + 2),
        keras.layers.RandomZoom((-recipe.zoom_in, recipe.zoom_out), fill_mode="nearest", seed=seed + 3),
    ]
    if recipe.upright == 0 and recipe.close_up == 0 and recipe.hand_size == 0 and strength is None:
        return keras.Sequential([*flip, keras.layers.RandomRotation(recipe.rotation / 360, fill_mode="nearest", seed=seed + 1), *shift_zoom],
                                name="augment_geometry")
    gen = tf.random.Generator.from_seed(seed + 1)
    flip, shift_zoom = keras.Sequential(flip, name="augment_flip"), keras.Sequential(shift_zoom, name="augment_shift_zoom")

    def geometry(images, training=True):
        """RGB + the hand's mask (B, H, W, 4): mirrored, turned (``upright`` of them from their own lean to upright),
        ``close_up`` of them framed on the hand, ``hand_size`` of them with the hand rescaled, moved, zoomed."""
        images = flip(images, training=training)
        batch = tf.shape(images)[0]
        scale = 1.0 if strength is None else strength
        turn = tf.where(gen.uniform((batch,)) < recipe.upright * scale, to_upright(images[..., 3]), 0.0) if recipe.upright > 0 else 0.0
        images = rotate(images, turn + gen.uniform((batch,), -recipe.rotation * scale, recipe.rotation * scale))
        if recipe.close_up > 0:
            images = close_up(images, gen.uniform((batch,)) < recipe.close_up * scale, gen.uniform((batch,), *CLOSE_UP_MARGIN))
        if recipe.hand_size > 0:
            images = resize_hand(images, gen.uniform((batch,)) < recipe.hand_size * scale, gen.uniform((batch,), *HAND_AREA))
        return shift_zoom(images, training=training)

    return geometry


def to_upright(masks):
    """Degrees (counter-clockwise as seen) that turn each mask's hand and forearm upright (B, H, W) -> (B,).

    The long axis of the mask (its second moments) is the forearm's and the hand's direction. SIGNS'
    hands lean up to the left, about 30 degrees (or to the right, mirrored); people facing a camera hold
    them upright. 0 where the mask has no trusted long axis.
    """
    size_y, size_x = tf.shape(masks)[1], tf.shape(masks)[2]
    y = tf.cast(tf.range(size_y), tf.float32)[None, :, None]
    x = tf.cast(tf.range(size_x), tf.float32)[None, None, :]
    area = tf.reduce_sum(masks, axis=[1, 2])
    safe = tf.maximum(area, 1.0)[:, None, None]
    cx, cy = tf.reduce_sum(masks * x, axis=[1, 2])[:, None, None] / safe, tf.reduce_sum(masks * y, axis=[1, 2])[:, None, None] / safe
    mu20, mu02 = tf.reduce_sum(masks * (x - cx) ** 2, axis=[1, 2]), tf.reduce_sum(masks * (y - cy) ** 2, axis=[1, 2])
    mu11 = tf.reduce_sum(masks * (x - cx) * (y - cy), axis=[1, 2])
    # The axis's angle from the image's x axis, toward +y (down): clockwise as seen, in (-90, 90].
    axis = 0.5 * tf.atan2(2.0 * mu11, mu20 - mu02) * (180.0 / math.pi)
    lean = 90.0 - tf.abs(axis)
    trusted = (lean <= MAX_LEAN_DEGREES) & (area < tf.cast(size_x * size_y, tf.float32))
    return tf.where(trusted, -tf.sign(axis) * lean, 0.0)


def rotate(images, degrees):
    """Each image (B, H, W, C) turned about its centre by its angle, counter-clockwise as seen; edge pixels fill the corners."""
    theta = degrees * (math.pi / 180.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    cy = (tf.cast(tf.shape(images)[1], tf.float32) - 1) / 2
    cx = (tf.cast(tf.shape(images)[2], tf.float32) - 1) / 2
    # Output pixel (x, y) reads the input at (a0 x + a1 y + a2, b0 x + b1 y + b2): Keras' RandomRotation's matrix.
    zeros = tf.zeros_like(theta)
    transform = tf.stack([cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos, zeros, zeros], axis=1)
    return keras.ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="nearest")


def _per_image(images):
    return (tf.shape(images)[0], 1, 1, 1)


def _photometric(gen):
    def blur(images, sigma):
        # Separable Gaussian blur with a per-batch sigma; 5 taps cover sigma <= 1.5 px.
        taps = tf.range(-2.0, 3.0)
        k = tf.exp(-0.5 * tf.square(taps / sigma))
        k = k / tf.reduce_sum(k)
        kx = tf.tile(tf.reshape(k, (1, 5, 1, 1)), (1, 1, 3, 1))
        ky = tf.tile(tf.reshape(k, (5, 1, 1, 1)), (1, 1, 3, 1))
        images = tf.nn.depthwise_conv2d(images, kx, (1, 1, 1, 1), "SAME")
        return tf.nn.depthwise_conv2d(images, ky, (1, 1, 1, 1), "SAME")

    def photometric(images):
        ones = _per_image(images)
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        # Ranges a little wider than the robustness report's perturbations, not much more:
        # stronger colour changes slowed learning without helping accuracy.
        images = (images - mean) * gen.uniform(ones, 0.65, 1.35) + mean  # contrast
        gain = gen.uniform(ones, 0.65, 1.3)  # exposure
        cast = gen.uniform((tf.shape(images)[0], 1, 1, 3), 0.87, 1.15)  # white balance
        offset = gen.uniform(ones, -0.08, 0.16)  # brightness (the report adds up to +40 levels)
        images = images * gain * cast + offset
        images = images + gen.normal(tf.shape(images)) * gen.uniform(ones, 0.0, 0.04)  # sensor noise
        return tf.cond(gen.uniform(()) < 0.5, lambda: blur(images, gen.uniform((), 0.5, 1.3)), lambda: images)

    return photometric


def colour_fields(gen, batch, size: int = config.IMAGE_SIZE):
    """Random backgrounds (B, size, size, 3) in [0, 1]: a plain colour blended with a smooth
    field of 2x2 to 8x8 random colours (walls, furniture, light falloff) and fine noise."""
    cells = tf.gather([2, 3, 4, 8], gen.uniform((), 0, 4, dtype=tf.int32))
    field = tf.image.resize(gen.uniform((batch, cells, cells, 3)), (size, size), method="bilinear")
    plain = gen.uniform((batch, 1, 1, 3))
    blend = gen.uniform((batch, 1, 1, 1))
    noise = gen.normal((batch, size, size, 3)) * gen.uniform((batch, 1, 1, 1), 0.0, 0.04)
    return tf.clip_by_value(plain * (1 - blend) + field * blend + noise, 0.0, 1.0)


def _soft_edges(mask):
    """The hand's mask (B, H, W, 1) with its edge blurred over a pixel, so nothing blended along it shows a hard cut-out."""
    return tf.nn.avg_pool2d(tf.clip_by_value(mask, 0.0, 1.0), 3, 1, "SAME")


def swap_background(gen, rgba, probability: float):
    """The hand (mask channel) over a random colour field on ``probability`` of the images; RGB out."""
    rgb, mask = rgba[..., :3], rgba[..., 3:]
    soft = _soft_edges(mask)
    swapped = rgb * soft + colour_fields(gen, tf.shape(rgb)[0]) * (1 - soft)
    chosen = gen.uniform(_per_image(rgb)) < probability
    return tf.where(chosen, swapped, rgb)


# SIGNS shows the palm only in its 4s and 5s; a stranger facing a camera shows it in every sign, and the default's
# models read such hands as 5s. Given the surface of a 4's or a 5's hand, outline kept, three of them read 8-18 % of
# SIGNS test's 0-3s as 4s or 5s, against 3-10 % with another 0-3's surface (tools/probe_surface.py, docs/training.md).
# So the hands of those signs take their surface from another hand (any sign's), and keep their outline.
# 4s and 5s keep theirs: they already show the palm, and a 4 is told from a 5 by the thumb folded across it.
SIGNS_SHOWING_THE_BACK = tf.constant([0, 1, 2, 3], tf.int64)


def hand_surface(gen, rgba, probability: float, takes=None):
    """On ``probability`` of the images (both masks trusted; where ``takes`` (B,) is given, only where it is true), the
    hand's surface taken from the previous image's hand in the batch: that hand's box stretched onto this one's, pasted
    where both masks are hand. The outline, the wall and the mask are kept, and with them the sign."""
    mask = rgba[..., 3:]
    donors = tf.roll(rgba, 1, axis=0)
    own, theirs = hand_boxes(mask), hand_boxes(donors[..., 3:])
    scale = (theirs[:, 2:] - theirs[:, :2]) / tf.maximum(own[:, 2:] - own[:, :2], 1e-3)
    start = theirs[:, :2] - own[:, :2] * scale  # where this image's corners fall in the donor's
    warped = tf.image.crop_and_resize(donors, tf.concat([start, start + scale], axis=1), tf.range(tf.shape(rgba)[0]),
                                      tf.shape(rgba)[1:3], extrapolation_value=0.0)
    # segment.py grew each mask by a pixel onto its wall: both are shrunk by one, so none of the donor's wall comes
    # along and nothing is pasted beyond this hand's mask.
    region = _soft_edges(_shrink(mask)) * _soft_edges(_shrink(warped[..., 3:]))
    pasted = rgba[..., :3] * (1 - region) + warped[..., :3] * region
    share = tf.reduce_mean(mask, axis=[1, 2, 3])
    trusted = (share > 0.0) & (share < 0.9)  # an untrusted mask is all ones (segment.py): no hand to take or to give
    chosen = (gen.uniform((tf.shape(rgba)[0],)) < probability) & trusted & tf.roll(trusted, 1, axis=0)
    if takes is not None:
        chosen &= takes
    return tf.concat([tf.where(chosen[:, None, None, None], pasted, rgba[..., :3]), mask], axis=-1)


def _shrink(mask):
    """The mask (B, H, W, 1) less its outer pixel (a 3x3 erosion)."""
    return -tf.nn.max_pool2d(-tf.clip_by_value(mask, 0.0, 1.0), 3, 1, "SAME")


def hand_boxes(masks):
    """Each mask's (B, H, W, 1) bounding box (B, 4): y0, x0, y1, x1 as crop_and_resize reads them (pixel i at i / (side - 1))."""
    hand = masks[..., 0] > 0.5

    def span(any_hand, size):
        index = tf.cast(tf.range(size), tf.float32)[None]
        first = tf.reduce_min(tf.where(any_hand, index, tf.cast(size, tf.float32)), axis=1)
        last = tf.reduce_max(tf.where(any_hand, index, 0.0), axis=1)
        return tf.minimum(first, last) / tf.cast(size - 1, tf.float32), last / tf.cast(size - 1, tf.float32)

    y0, y1 = span(tf.reduce_any(hand, axis=2), tf.shape(hand)[1])
    x0, x1 = span(tf.reduce_any(hand, axis=1), tf.shape(hand)[2])
    return tf.stack([y0, x0, y1, x1], axis=1)


# A model trained on SIGNS alone reads the hand's brightness against the wall as part of the sign: on sld-dev,
# the hand alone made 25 % lighter cost three default models 0.10-0.13 of their accuracy, 40 % darker 0.21-0.25,
# with most signs then read as 5 (docs/training.md). So the hand's own exposure varies over that range and more.
HAND_GAIN = (0.55, 1.45)
HAND_TINT = (0.9, 1.1)  # per channel: paler, redder, yellower skin


def hand_tone(gen, rgba, probability: float):
    """On ``probability`` of the images, the hand (the mask channel, edges softened) alone made lighter or darker
    by a gain in HAND_GAIN and tinted per channel within HAND_TINT; the wall and the mask are kept."""
    rgb, mask = rgba[..., :3], rgba[..., 3:]
    batch = tf.shape(rgb)[0]
    soft = _soft_edges(mask)
    gain = gen.uniform(_per_image(rgb), *HAND_GAIN) * gen.uniform((batch, 1, 1, 3), *HAND_TINT)
    toned = rgb * (1 - soft) + tf.clip_by_value(rgb * gain, 0.0, 1.0) * soft
    chosen = gen.uniform(_per_image(rgb)) < probability
    return tf.concat([tf.where(chosen, toned, rgb), mask], axis=-1)


def _shift_hue(gen, images, max_shift, saturation_range=0.4):
    """Hue turned by up to +-max_shift of the wheel and saturation scaled by 1 +- saturation_range, per image."""
    hsv = tf.image.rgb_to_hsv(images)
    ones = _per_image(images)
    hue = tf.math.floormod(hsv[..., :1] + gen.uniform(ones, -max_shift, max_shift), 1.0)
    saturation = tf.clip_by_value(hsv[..., 1:2] * gen.uniform(ones, 1.0 - saturation_range, 1.0 + saturation_range), 0.0, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue, saturation, hsv[..., 2:]], axis=-1))


def _grayscale(gen, images, probability: float):
    gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(images))
    return tf.where(gen.uniform(_per_image(images)) < probability, gray, images)


def _vignette(gen, images, probability: float):
    """Lens shading and a lamp's spot: brightness falling off from a point near the centre toward the corners
    (by 15-50 % at a corner), the frame's middle brighter to match, on ``probability`` of the images."""
    batch, size = tf.shape(images)[0], tf.shape(images)[1]
    ones = (batch, 1, 1, 1)
    coords = (tf.cast(tf.range(size), tf.float32) + 0.5) / tf.cast(size, tf.float32) * 2.0 - 1.0  # -1 .. 1 across
    cy, cx = gen.uniform(ones, -0.3, 0.3), gen.uniform(ones, -0.3, 0.3)
    r2 = (tf.reshape(coords, (1, -1, 1, 1)) - cy) ** 2 + (tf.reshape(coords, (1, 1, -1, 1)) - cx) ** 2  # 2 at a corner
    strength = gen.uniform(ones, 0.15, 0.5)
    shaded = images * (1.0 - strength * tf.minimum(r2, 2.0) / 2.0) * (1.0 + strength / 2.0)
    return tf.where(gen.uniform(ones) < probability, shaded, images)


def _erase(gen, images, probability: float):
    """One rectangle of 8-20 % of each side, in a random colour, on ``probability`` of the images.
    Small on purpose: a patch the size of a finger would change the sign."""
    batch, size = tf.shape(images)[0], tf.cast(tf.shape(images)[1], tf.float32)
    ones = (batch, 1, 1)
    h, w = gen.uniform(ones, 0.08, 0.2) * size, gen.uniform(ones, 0.08, 0.2) * size
    y0, x0 = gen.uniform(ones) * (size - h), gen.uniform(ones) * (size - w)
    coords = tf.range(size)
    inside = ((coords[None, :, None] >= y0) & (coords[None, :, None] < y0 + h)
              & (coords[None, None, :] >= x0) & (coords[None, None, :] < x0 + w))
    chosen = gen.uniform(ones) < probability
    patch = (inside & chosen)[..., None]
    return tf.where(patch, gen.uniform((batch, 1, 1, 3)), images)
