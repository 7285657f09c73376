"""Self-describing datasets (issue 26): trials.nc, psp.nc and kappa.nc of a small simulation
are CF-1.8-clean by IOOS's compliance-checker (no errors; the warnings are the ones named in
docs/biophysics.md), and every variable and coordinate has long_name and units."""

import numpy as np
import pytest
import xarray as xr
from cf_check import cf_report

from dendrite_sim.cf import describe, missing_labels

# The warnings CF-1.8 leaves (docs/biophysics.md, "Self-describing datasets").
ALLOWED_WARNINGS = ()


@pytest.fixture(scope="module")
def small_files(small_cell_files):
    return small_cell_files[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["trials.nc", "psp.nc", "kappa.nc"])
def test_files_are_cf_clean(small_files, name):
    path = small_files / name
    with xr.open_dataset(path) as ds:
        assert missing_labels(ds) == []
        assert ds.attrs["Conventions"] == "CF-1.8"
        for var in ds.variables.values():
            assert var.dtype != np.int64
        for coord in ds.coords.values():
            assert "_FillValue" not in coord.encoding or coord.encoding["_FillValue"] is None
    failed = cf_report(path, small_files)
    assert failed["errors"] == [], failed["errors"]
    assert [w for w in failed["warnings"] if not w.startswith(ALLOWED_WARNINGS)] == []


def test_describe_labels_and_narrows_types():
    ds = xr.Dataset(
        {"multi_response": (("multi_trial",), np.array([True, False]))},
        coords={"multi_trial": np.array([3, 4], dtype=np.int64), "site_x": ("site_x", [1.0])},
    )
    out = describe(ds, "a test")
    assert out.multi_response.dtype == np.int8 and out.multi_trial.dtype == np.int32
    assert out.multi_trial.attrs["units"] == "1" and out.site_x.attrs["units"] == "um"
    assert missing_labels(out) == [] and out.attrs["history"] == "a test"
