"""Camera-like augmentation for training, as TensorFlow ops inside tf.data."""

from __future__ import annotations

from edge_signs.trainer import keras, tf


def augmenter(seed: int):
    """Camera-like augmentation for float images in [0, 1], batched (B, 64, 64, 3).

    Mirrored hands, a hand a little off-centre, tilted or nearer/farther, and, on
    about half of the images, other light, white balance, contrast, sensor noise
    and defocus. Geometry stays mild on purpose: SIGNS fingertips reach the top
    edge, and a crop that cuts a finger off changes the true label. All
    TensorFlow ops, so it runs inside tf.data (and on a GPU when there is one);
    labels are untouched.
    """
    geometry = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(15 / 360, fill_mode="nearest", seed=seed + 1),
            keras.layers.RandomTranslation(0.06, 0.06, fill_mode="nearest", seed=seed + 2),
            keras.layers.RandomZoom((-0.08, 0.12), fill_mode="nearest", seed=seed + 3),
        ],
        name="augment_geometry",
    )
    gen = tf.random.Generator.from_seed(seed + 4)

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
        batch = tf.shape(images)[0]
        ones = (batch, 1, 1, 1)
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        # Ranges a little wider than the robustness report's perturbations, not much more:
        # stronger colour changes slowed learning without helping accuracy.
        images = (images - mean) * gen.uniform(ones, 0.65, 1.35) + mean  # contrast
        gain = gen.uniform(ones, 0.65, 1.3)  # exposure
        cast = gen.uniform((batch, 1, 1, 3), 0.87, 1.15)  # white balance
        offset = gen.uniform(ones, -0.08, 0.16)  # brightness (the report adds up to +40 levels)
        images = images * gain * cast + offset
        images = images + gen.normal(tf.shape(images)) * gen.uniform(ones, 0.0, 0.04)  # sensor noise
        return tf.cond(gen.uniform(()) < 0.5, lambda: blur(images, gen.uniform((), 0.5, 1.3)), lambda: images)

    def augment(images, labels):
        images = geometry(images, training=True)
        # Half of the images keep their colours: the camera is often fine, and clean
        # images keep learning fast.
        keep = gen.uniform((tf.shape(images)[0], 1, 1, 1)) < 0.5
        images = tf.where(keep, images, photometric(images))
        return tf.clip_by_value(images, 0.0, 1.0), labels

    return augment
