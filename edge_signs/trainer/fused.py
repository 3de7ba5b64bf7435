"""TensorFlow's fused training kernels behind Keras' own layer and optimizers: the same model, faster steps.

Keras 3 computes batch normalisation and Adam from generic operations: a batch norm in
training is a cast, two reductions, the normalisation and a cast back, each a pass over
the activations, and Adam is about ten element-wise passes over all 23.6 million weights.
On a 2-core CPU, with the convolutions in bfloat16 on AMX, those passes were most of a
step: one ResNet50 step (batch 32) took 0.46 s with Keras' batch norm and 0.27 s with none
at all (docs/training.md). TensorFlow has one kernel for each (``FusedBatchNormV3``,
oneDNN's on a CPU, and ``ResourceApplyAdam``), and Keras 2, which the course used, called
the first by default.

  FusedBatchNormalization  keras.layers.BatchNormalization whose training step is
                           FusedBatchNormV3; inference and the saved weights are Keras'
                           own, and model.keras is written with the plain layer. One
                           difference: the moving variance takes the batch variance with
                           Bessel's correction (n / (n - 1), as Keras 2's fused layer did).
  FusedAdam, FusedAdamW    Adam's update in one pass per variable: the same arithmetic
                           (epsilon outside the square root, bias correction folded into
                           the step size). Decoupled weight decay stays Keras' own.

Under a tf.distribute strategy Keras routes each update to every copy of a variable;
there the inherited update runs, so distributed training is unchanged.
"""

from __future__ import annotations

from edge_signs.trainer import keras, tf


def _fused_update(optimizer, gradient, variable, learning_rate) -> bool:
    """Apply Adam to one variable with the fused kernel; False where it does not apply."""
    if tf.distribute.has_strategy() or optimizer.amsgrad or not hasattr(variable, "handle"):
        return False
    dtype = variable.dtype
    index = optimizer._get_variable_index(variable)
    m, v = optimizer._momentums[index].value, optimizer._velocities[index].value
    step = tf.cast(optimizer.iterations + 1, dtype)
    beta_1, beta_2 = tf.cast(optimizer.beta_1, dtype), tf.cast(optimizer.beta_2, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=m.handle, v=v.handle,
        beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
        lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
        epsilon=tf.cast(optimizer.epsilon, dtype), grad=tf.cast(gradient, dtype),
    )
    return True


@keras.utils.register_keras_serializable(package="edge_signs")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization, trained by TensorFlow's fused kernel (4-D inputs, channels last)."""

    def call(self, inputs, training=None, mask=None):
        plain = (not (training and self.trainable) or mask is not None or len(inputs.shape) != 4
                 or self.axis not in (3, -1) or self.renorm or self.synchronized or not (self.scale and self.center))
        if plain:
            return super().call(inputs, training=training, mask=mask)
        # Keras has already cast the inputs to the layer's compute dtype (float32, bfloat16 or float16).
        outputs, moving_mean, moving_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=self.gamma.value, offset=self.beta.value,
            mean=self.moving_mean.value, variance=self.moving_variance.value,
            epsilon=self.epsilon, exponential_avg_factor=1.0 - self.momentum,
            data_format="NHWC", is_training=True,
        )
        # With exponential_avg_factor the kernel returns the updated moving statistics.
        self.moving_mean.assign(moving_mean)
        self.moving_variance.assign(moving_variance)
        return tf.cast(outputs, self.compute_dtype)


@keras.utils.register_keras_serializable(package="edge_signs")
class FusedAdam(keras.optimizers.Adam):
    """keras.optimizers.Adam, updated by TensorFlow's fused Adam kernel where it can be."""

    def update_step(self, gradient, variable, learning_rate):
        if not _fused_update(self, gradient, variable, learning_rate):
            super().update_step(gradient, variable, learning_rate)


@keras.utils.register_keras_serializable(package="edge_signs")
class FusedAdamW(keras.optimizers.AdamW):
    """keras.optimizers.AdamW, its Adam update done by TensorFlow's fused kernel where it can be."""

    def update_step(self, gradient, variable, learning_rate):
        if not _fused_update(self, gradient, variable, learning_rate):
            super().update_step(gradient, variable, learning_rate)
