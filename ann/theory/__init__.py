"""The theory experiments of the Dit-CNN talk, apart from the training of the model zoo.

Gaussian classes (Theorem 5 of Liu et al. 2024: a quadratic neuron per class reaches the
Bayes classifier): problems (the classes and samples), bayes (Bayes accuracy), fit (the
critical point, the trained quadratic neurons and MLP, their similarity), gaussian (the
experiment and its config section), figures. The derivation is in docs/theory.md.

Few-shot Fashion-MNIST (do quadratic terms need less data?): fewshot (the experiment and
its config section; its models are in ann.models.fewshot).

Importing the package loads nothing; import the module you need.
"""
