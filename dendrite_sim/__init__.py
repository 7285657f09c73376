"""Simulate synaptic inputs on a dendritic neuron (Brian2) and fit the bilinear rule.

Modules: morphology (cells), sites, protocols (trial plans), model (equations),
simulate (Brian2 runs), kappa (the fits), figures, dataset (the NetCDF layout).
The workflow's steps that read and write files are in workflow/pipeline/dendrite.py.
Importing the package itself loads nothing heavy; import the module you need.
"""
