"""Simulate synaptic inputs on a dendritic neuron (Brian2) and fit the bilinear rule.

Modules: morphology (cells), sites, protocols (trial plans), model (equations),
simulate (Brian2 runs), stages (the workflow's steps), dataset (NetCDF I/O).
Importing the package itself loads nothing heavy; import the module you need.
"""
