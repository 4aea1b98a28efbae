"""Classification losses for noisy labels.

Every loss subclasses `keras.losses.Loss`, returns one value per example from
`call()`, accepts integer or one-hot labels, and is registered for
serialisation under the package name "tfrobust".
"""

from tfrobust.losses.taylor import TaylorLoss

__all__ = ["TaylorLoss"]
