"""Dit-CNNs: the quadratic layer, the model zoo, kappa priors, data, training and theory.

ann.layers holds the layers (the Dit term and its kernels, the Dit branches, the baselines'
quadratic convolutions), ann.models the models, ann.engine the training engine
(`python -m ann.train`), ann.settings the config sections the workflow checks while planning.

Importing ann.models registers every model in timm's registry and the operator
`torch.ops.ann.dit_quadratic` (ann.layers), so that after `import ann.models` both
`ann.create_model("dit_resnet20")` and `timm.create_model("dit_convnext_tiny")` work.
`ann.create_model` and `ann.MODEL_NAMES` import it on first use. `import ann` alone imports
neither torch nor timm (about 4 s per process), so that code that only reads ann's settings
and errors, such as every Snakemake process planning the workflow, stays light.
"""

from typing import TYPE_CHECKING, Any

__all__ = ["MODEL_NAMES", "create_model"]

if TYPE_CHECKING:
    from .models import MODEL_NAMES, create_model


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'ann' has no attribute {name!r}")
