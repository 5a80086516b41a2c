"""Model families and their front-ends.  Importing this package registers every family and custom layer."""

from mirzoo.nn import cnn, crnn, dense_frame, random_cnn, tcn  # noqa: F401  (registration)
from mirzoo.nn.base import FAMILIES, get_family, seeded_weights, weights_sha256

__all__ = ["FAMILIES", "get_family", "seeded_weights", "weights_sha256"]
