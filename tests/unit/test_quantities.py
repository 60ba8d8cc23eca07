"""Kubernetes quantities and capacity arithmetic (https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/)."""

import pytest

from rackmesh.quantities import Resources, parse_quantity


@pytest.mark.parametrize(("text", "value"), [
    ("32", 32), ("500m", 0.5), ("8Gi", 8 * 2**30), ("128Gi", 128 * 2**30), ("512Mi", 512 * 2**20),
    ("1k", 1000), ("1M", 10**6), ("1e3", 1000), (4, 4),
])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1Xi", "Gi"])
def test_bad_quantities_are_refused(text):
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


def test_fits_times_is_bounded_by_the_scarcest_dimension():
    node = Resources.parse("32", "128Gi")
    large = Resources.parse(2, "8Gi")
    assert node.fits_times(large) == 16
    assert Resources.parse("32", "20Gi").fits_times(large) == 2
    assert (node - large * 16).fits_times(large) == 0
    assert Resources.parse("1", "1Gi").fits_times(large) == 0
