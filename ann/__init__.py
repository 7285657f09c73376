"""Dit-CNNs: the quadratic layer, the model zoo, kappa priors, data, training and theory.

ann.layers holds the layers (the Dit term and its kernels, the Dit branches, the baselines'
quadratic convolutions), ann.models the models, ann.engine the training engine
(`python -m ann.train`). Importing the package registers every model in timm's registry, so
that after `import ann` both `ann.create_model("dit_resnet20")` and
`timm.create_model("dit_convnext_tiny")` work.
"""

from .models import MODEL_NAMES, create_model

__all__ = ["MODEL_NAMES", "create_model"]
