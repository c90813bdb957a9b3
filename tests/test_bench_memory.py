"""bench's CPU peak memory measures the steps, not what the process did before them."""
import sys

import numpy as np
import pytest

from pspnet_lite import bench


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset is Linux-only")
def test_peak_rss_resets_and_sees_a_new_allocation():
    big = np.ones(150 * 2**20 // 8)  # 150 MB, touched
    del big
    assert bench._reset_peak_rss()
    before = bench._rss_mb()
    assert bench._peak_rss_mb() - before < 100  # the earlier 150 MB peak is forgotten
    block = np.ones(80 * 2**20 // 8)  # 80 MB
    assert bench._peak_rss_mb() - before >= 70
    del block
